/**
 * The Herald client: one connection, many channels. It resumes every channel from its cursor
 * after any cut, drops what it has already delivered, reconnects with backoff, and falls back
 * from WebSocket to SSE to long-poll (and back) where WebSockets are blocked.
 *
 * It is a façade over two parts: the `Connection` (connection.ts, with link.ts for each open
 * transport: transports, reconnects, heartbeats, tokens, state) and the `ChannelTable`
 * (channels.ts: subscriptions, cursors, dedupe, delivery), which rides on the connection.
 */
import { type ChannelEvents } from './channels.js';
import { type Listener } from './events.js';
import { type DeviceOptions, type DeviceRef, type DeviceRegistration } from './devices.js';
import { type PresenceMember } from './frames.js';
import { type HistoryOptions, type HistoryPage } from './history.js';
import type { ClientOptions } from './options.js';
import { type Published } from './publish.js';
import type { ConnectionEvents, ConnectionState } from './state.js';
import type { HeraldMessage, Subscription, SubscribeOptions } from './subscription.js';
import type { TransportKind } from './transport.js';
/** A channel's presence. */
export interface Presence {
    channel: string;
    occupancy: number;
    members: PresenceMember[];
}
/** The client's events. */
export interface HeraldEvents extends ConnectionEvents, ChannelEvents {
}
/** Publish options. */
export interface PublishOptions {
    /** Per account, within the server's idempotency window, one key makes one record. */
    idempotencyKey?: string;
}
/**
 * A Herald client.
 *
 * ```ts
 * const herald = new HeraldClient({ url: 'https://herald.example.com', token: fetchToken });
 * herald.subscribe('incidents', (m) => render(m.data));
 * ```
 */
export declare class HeraldClient {
    private readonly events;
    private readonly connection;
    private readonly channels;
    constructor(opts: ClientOptions);
    /** The connection state. */
    get state(): ConnectionState;
    /** The transport in use (or about to be tried). */
    get transportKind(): TransportKind;
    /** The WebSocket's frame encoding on this connection: `proto` once the server accepted it, else `json`. */
    get encoding(): 'json' | 'proto';
    /** Listens for an event; returns a function that stops listening. */
    on<K extends keyof HeraldEvents>(event: K, listener: Listener<HeraldEvents[K]>): () => void;
    /**
     * Subscribes `handler` to `channel`. Each record reaches it once, in publish order, across
     * reconnects and transport changes. One handler per channel.
     */
    subscribe<T = unknown>(channel: string, handler: (message: HeraldMessage<T>) => void, opts?: SubscribeOptions): Subscription;
    /**
     * Publishes `data` on `channel`: over the WebSocket when connected on one, else over
     * `POST /v1/publish` with the client token. Not retried by itself: a publish that failed with
     * `disconnected` or `timeout` may or may not have been written; retry with the same
     * `idempotencyKey` to be sure of one record.
     */
    publish(channel: string, data: unknown, opts?: PublishOptions): Promise<Published>;
    /**
     * A page of `channel`'s history over `GET /v1/history` with the client token: the newest
     * `limit` records, or those `before` a page, or `since` a cursor or `sinceMs` a time; oldest
     * first. `page.next` asks for the next page; subscribing with `since: page.cursor` after the
     * newest page continues live with nothing missed or repeated.
     */
    history<T = unknown>(channel: string, opts?: HistoryOptions): Promise<HistoryPage<T>>;
    /** Every page of `channel`'s history from `opts` on: backward from the newest (or `before`), forward from `since`/`sinceMs`. */
    historyPages<T = unknown>(channel: string, opts?: HistoryOptions): AsyncGenerator<HistoryPage<T>, void, undefined>;
    /**
     * Registers this device for push notifications to its user (docs/push.md): over the WebSocket
     * when connected on one, else over `POST /v1/devices`. Register again on every app start.
     */
    registerDevice(device: DeviceOptions): Promise<DeviceRegistration>;
    /** Removes this device's registration: over the WebSocket when connected on one, else over `DELETE /v1/devices`. */
    unregisterDevice(device: DeviceRef): Promise<DeviceRegistration>;
    private device;
    /** Who is on `channel` now. Needs the WebSocket: on SSE or long-poll it rejects with `not_supported`. */
    presence(channel: string): Promise<Presence>;
    /**
     * Closes the connection and stays disconnected (the app went to the background, or offline),
     * keeping every channel and its cursor; `resume()` reconnects and continues each channel exactly.
     */
    pause(reason?: string): void;
    /**
     * Reconnects after `pause()` (foreground, back online) and resumes every channel from its
     * cursor. While waiting to reconnect after a cut, it reconnects now instead of after the backoff.
     */
    resume(): void;
    /**
     * Connects again after the server ended the connection and said not to reconnect (the
     * `disconnected` event; after `revoked` with a new token from the token function), or after
     * `pause()`. Every channel resumes from its cursor.
     */
    connect(): void;
    /** Closes for good. */
    close(): void;
    /** Cuts the connection as a network fault would, and reconnects at once (tests, "retry now" buttons). */
    dropConnection(): void;
}
