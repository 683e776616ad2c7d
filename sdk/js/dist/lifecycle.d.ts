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
export declare function attachBrowserLifecycle(client: HeraldClient, opts?: BrowserLifecycleOptions): () => void;
