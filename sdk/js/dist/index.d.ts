/**
 * @herald/client: the Herald real-time client for browsers and React Native.
 *
 * ```ts
 * const herald = new HeraldClient({ url: 'https://herald.example.com', token: () => fetchToken() });
 * herald.subscribe('incidents', (m) => render(m.data));
 * ```
 */
export { HeraldClient, HeraldError, Subscription } from './client.js';
export type { ClientOptions, ConnectionState, HeraldMessage, Presence, Published, StateChange, SubscribeOptions } from './client.js';
export { attachBrowserLifecycle } from './lifecycle.js';
export type { BrowserLifecycleOptions } from './lifecycle.js';
export { Backoff } from './backoff.js';
export type { BackoffOptions } from './backoff.js';
export { Cursors, Dedupe } from './dedupe.js';
export { parseBatch } from './frames.js';
export type { Batch, PresenceMember, ServerFrame } from './frames.js';
export type { Environment, TransportKind } from './transport.js';
