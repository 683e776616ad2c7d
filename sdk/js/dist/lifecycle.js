/**
 * Wires a browser page's lifecycle to the client: offline closes the connection and online
 * reopens it; a hidden page (tab switched, phone locked) closes it after a short delay, and a
 * visible one reopens it. Every reopen resumes each channel from its cursor, so nothing is lost
 * and nothing is shown twice. Returns a function that unwires it.
 */
export function attachBrowserLifecycle(client, opts = {}) {
    const w = globalThis;
    const doc = w.document;
    let hiddenTimer;
    let offline = w.navigator?.onLine === false;
    let hidden = false;
    const update = () => {
        if (offline)
            client.pause('offline');
        else if (hidden && opts.background !== 'keep')
            client.pause('in the background');
        else
            client.resume();
    };
    const onVisibility = () => {
        if (hiddenTimer)
            clearTimeout(hiddenTimer);
        if (doc.visibilityState === 'hidden') {
            hiddenTimer = setTimeout(() => {
                hidden = true;
                update();
            }, opts.backgroundDelayMs ?? 10000);
        }
        else {
            hidden = false;
            update();
        }
    };
    const onOnline = () => {
        offline = false;
        update();
    };
    const onOffline = () => {
        offline = true;
        update();
    };
    doc?.addEventListener('visibilitychange', onVisibility);
    w.addEventListener?.('online', onOnline);
    w.addEventListener?.('offline', onOffline);
    if (offline)
        update();
    return () => {
        if (hiddenTimer)
            clearTimeout(hiddenTimer);
        doc?.removeEventListener('visibilitychange', onVisibility);
        w.removeEventListener?.('online', onOnline);
        w.removeEventListener?.('offline', onOffline);
    };
}
