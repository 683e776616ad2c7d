/**
 * `@herald/client`: the Herald real-time client for browsers and React Native (docs/sdk-js.md).
 *
 * ```ts
 * import { HeraldClient } from '@herald/client';
 * const herald = new HeraldClient({ url: 'https://herald.example.com', token: fetchToken });
 * herald.on('state', ({ state, reason }) => console.log(state, reason));
 * herald.subscribe('incidents', (m) => render(m.data));
 * ```
 */
export { HeraldClient } from './client.js';
export type { HeraldEvents, Presence, PublishOptions } from './client.js';
export type { HistoryOptions, HistoryPage } from './history.js';
export type { DeviceOptions, DeviceRef, DeviceRegistration } from './devices.js';
export type { ClientOptions } from './options.js';
export type { Published } from './publish.js';
export type { ConnectionState, ServerDisconnect, StateChange } from './state.js';
export type { HeraldMessage, PresenceEvent, Subscription, SubscribeOptions } from './subscription.js';
export { HeraldError } from './requests.js';
export { personalChannel } from './personal.js';
export { attachBrowserLifecycle } from './lifecycle.js';
export type { BrowserLifecycleOptions } from './lifecycle.js';
export type { BackoffOptions } from './backoff.js';
export type { PresenceMember } from './frames.js';
export type { TokenProvider } from './token.js';
export type { Environment, EventSourceLike, FetchLike, ResponseLike, TransportKind, WebSocketLike } from './transport.js';
export type { EventSink, Listener } from './events.js';

// The building blocks, for tests and for anyone writing another transport.
export { Connection } from './connection.js';
export type { ConnectionChannels } from './connection.js';
export type { ConnectionEvents } from './state.js';
export type { ConnectionOptions } from './options.js';
export { ChannelTable } from './channels.js';
export type { ChannelEvents, ChannelCarrier } from './channels.js';
export { Backoff } from './backoff.js';
export { CursorStore } from './cursors.js';
export { Dedupe } from './dedupe.js';
export { parseFrames } from './frames.js';
export { CompactReader, encodeCompact } from './compact.js';
export type { CompactFrames } from './compact.js';
export type { Encoding } from './websocket.js';
export type { ParsedFrames, ServerFrame } from './frames.js';
