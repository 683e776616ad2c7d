/** App lifecycle: close in the background or offline, reopen in the foreground and resume. */
import type { HeraldClient } from './client.js';

export interface BrowserLifecycleOptions {
  /**
   * What a hidden page does: `close` the connection (mobile browsers, to let the radio sleep;
   * the default) or `keep` it (desktop dashboards).
   */
  background?: 'close' | 'keep';
  /** How long a page stays hidden before the connection closes, ms (default 10000). */
  backgroundDelayMs?: number;
}

/**
 * Wires a browser page's lifecycle to the client: offline closes the connection and online
 * reopens it; a hidden page (tab switched, phone locked) closes it after a short delay, and a
 * visible one reopens it. Every reopen resumes each channel from its cursor, so nothing is lost
 * and nothing is shown twice. Returns a function that unwires it.
 */
export function attachBrowserLifecycle(client: HeraldClient, opts: BrowserLifecycleOptions = {}): () => void {
  const w = globalThis as unknown as Window & typeof globalThis;
  const doc = w.document;
  let hiddenTimer: ReturnType<typeof setTimeout> | undefined;
  let offline = w.navigator?.onLine === false;
  let hidden = false;
  const update = () => {
    if (offline) client.pause('offline');
    else if (hidden && opts.background !== 'keep') client.pause('in the background');
    else client.resume();
  };
  const onVisibility = () => {
    if (hiddenTimer) clearTimeout(hiddenTimer);
    if (doc.visibilityState === 'hidden') {
      hiddenTimer = setTimeout(() => {
        hidden = true;
        update();
      }, opts.backgroundDelayMs ?? 10_000);
    } else {
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
  if (offline) update();
  return () => {
    if (hiddenTimer) clearTimeout(hiddenTimer);
    doc?.removeEventListener('visibilitychange', onVisibility);
    w.removeEventListener?.('online', onOnline);
    w.removeEventListener?.('offline', onOffline);
  };
}
