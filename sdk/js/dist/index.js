/**
 * @herald/client: the Herald real-time client for browsers and React Native.
 *
 * ```ts
 * const herald = new HeraldClient({ url: 'https://herald.example.com', token: () => fetchToken() });
 * herald.subscribe('incidents', (m) => render(m.data));
 * ```
 */
export { HeraldClient, HeraldError, Subscription } from './client.js';
export { attachBrowserLifecycle } from './lifecycle.js';
export { Backoff } from './backoff.js';
export { Cursors, Dedupe } from './dedupe.js';
export { parseBatch } from './frames.js';
