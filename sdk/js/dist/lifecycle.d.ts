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
/**
 * Wires a page's lifecycle to `client`: `offline` closes the connection and `online` reopens it;
 * a page hidden for `backgroundDelayMs` (tab switched, phone locked) closes it and a visible one
 * reopens it; `pagehide` (the page is unloaded or goes into the back-forward cache) closes it
 * and `pageshow` reopens it. Every reopen resumes each channel from its cursor, so nothing is
 * lost and nothing is delivered twice. Returns a function that unwires it.
 */
export declare function attachBrowserLifecycle(client: HeraldClient, opts?: BrowserLifecycleOptions): () => void;
