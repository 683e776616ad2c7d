/** App lifecycle in a browser: close in the background or offline, reopen in the foreground or online. */
import type { HeraldClient } from './client.js';

/** Browser lifecycle options. */
export interface BrowserLifecycleOptions {
  /**
   * What a hidden page does: `close` the connection (the default: phones, where the radio should
   * sleep) or `keep` it (dashboards on a second screen).
   */
  background?: 'close' | 'keep';
  /** With `close`: how long a page stays hidden before the connection closes, ms (default 10000; a quick tab switch keeps it). */
  backgroundDelayMs?: number;
}

/** The part of `window` this uses. */
interface BrowserWindow {
  document?: { visibilityState: string; addEventListener(type: string, f: () => void): void; removeEventListener(type: string, f: () => void): void };
  navigator?: { onLine?: boolean };
  addEventListener?(type: string, f: (e: { persisted?: boolean }) => void): void;
  removeEventListener?(type: string, f: (e: { persisted?: boolean }) => void): void;
}

/**
 * Wires a page's lifecycle to `client`: `offline` closes the connection and `online` reopens it;
 * a page hidden for `backgroundDelayMs` (tab switched, phone locked) closes it and a visible one
 * reopens it; `pagehide` (the page is unloaded or goes into the back-forward cache) closes it
 * and `pageshow` reopens it. Every reopen resumes each channel from its cursor, so nothing is
 * lost and nothing is delivered twice. Returns a function that unwires it.
 */
export function attachBrowserLifecycle(client: HeraldClient, opts: BrowserLifecycleOptions = {}): () => void {
  const w = globalThis as unknown as BrowserWindow;
  const doc = w.document;
  let hiddenTimer: ReturnType<typeof setTimeout> | undefined;
  let offline = w.navigator?.onLine === false;
  let hidden = false;
  let gone = false;
  const update = () => {
    if (gone) client.pause('the page was hidden (pagehide)');
    else if (offline) client.pause('offline');
    else if (hidden && opts.background !== 'keep') client.pause('in the background');
    else client.resume();
  };
  const onVisibility = () => {
    if (hiddenTimer) clearTimeout(hiddenTimer);
    hiddenTimer = undefined;
    if (doc?.visibilityState === 'hidden') {
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
  const onPageHide = () => {
    gone = true;
    update();
  };
  const onPageShow = () => {
    gone = false;
    update();
  };
  doc?.addEventListener('visibilitychange', onVisibility);
  w.addEventListener?.('online', onOnline);
  w.addEventListener?.('offline', onOffline);
  w.addEventListener?.('pagehide', onPageHide);
  w.addEventListener?.('pageshow', onPageShow);
  if (offline) update();
  return () => {
    if (hiddenTimer) clearTimeout(hiddenTimer);
    doc?.removeEventListener('visibilitychange', onVisibility);
    w.removeEventListener?.('online', onOnline);
    w.removeEventListener?.('offline', onOffline);
    w.removeEventListener?.('pagehide', onPageHide);
    w.removeEventListener?.('pageshow', onPageShow);
  };
}
