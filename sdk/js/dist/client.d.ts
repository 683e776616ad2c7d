/**
 * The Herald client: one connection, many channels; resumes every channel from its cursor after
 * any cut, drops what it has already delivered, reconnects with backoff, and falls back from
 * WebSocket to SSE to long-poll (and back) where WebSockets are blocked.
 */
import { BackoffOptions } from './backoff.js';
import { PresenceMember } from './frames.js';
import { Environment, TransportKind } from './transport.js';
/** Connection states, as the `state` event reports them. */
export type ConnectionState = 'connecting' | 'connected' | 'disconnected' | 'recovering' | 'failed';
/** A `state` event. */
export interface StateChange {
    state: ConnectionState;
    /** Why (a close reason, an error code, `paused by the app`, …). */
    reason: string;
    /** The transport in use or being tried. */
    transport: TransportKind;
}
/** A record as the application sees it. */
export interface HeraldMessage<T = unknown> {
    channel: string;
    /** Stable message id (dedupe key). */
    id: string;
    /** Position after this record; the SDK resumes from it. */
    cursor: string;
    /** Publish time, ms since the Unix epoch. */
    ts: number;
    data: T;
}
/** What `publish` resolves to. */
export interface Published {
    cursor: string;
    messageId: string;
    duplicate: boolean;
}
/** A channel's presence. */
export interface Presence {
    occupancy: number;
    members: PresenceMember[];
}
/** A request the server refused, with its protocol error code. */
export declare class HeraldError extends Error {
    readonly code: string;
    constructor(code: string, message: string);
}
/** Client options. */
export interface ClientOptions {
    /** `https://herald.example.com` (or `http://127.0.0.1:8080`). */
    url: string;
    /** A token, or a function that fetches one (called at connect, before expiry, and after a refused token). */
    token: string | (() => Promise<string>);
    /** Reconnect backoff (full jitter; default base 500 ms, cap 30 s). */
    backoff?: BackoffOptions;
    /** Message ids remembered per channel for dedupe (default 1000). */
    dedupeWindow?: number;
    /** Transports to use, in order of preference (default all three). */
    transports?: TransportKind[];
    /** Consecutive failures to open a transport before falling back to the next (default 2). */
    fallbackAfter?: number;
    /** While on a fallback, how often to try the WebSocket again, ms (default 60000). */
    upgradeEveryMs?: number;
    /** How long a request (publish, presence, …) may wait for its reply, ms (default 10000). */
    requestTimeoutMs?: number;
    /** Constructors to use instead of the environment's (tests, React Native polyfills). */
    environment?: Environment;
}
/** Subscription options. */
export interface SubscribeOptions {
    /** Resume after this cursor (e.g. one stored across app restarts) instead of starting now. */
    since?: string;
    /** Also receive join/leave events (`onPresence`). */
    presence?: boolean;
    /** Deliver at most this many times per second (records in between arrive together). */
    maxRate?: number;
    /** Join/leave events, when `presence` is set. */
    onPresence?: (event: {
        type: 'join' | 'leave';
        member: PresenceMember;
    }) => void;
    /** The server ended the subscription (e.g. `forbidden` after a token refresh narrowed it). */
    onEnd?: (code: string) => void;
}
type Listener<T> = (value: T) => void;
interface EventMap {
    state: StateChange;
    /** A channel's history after its cursor was past retention: refetch its state from your backend. */
    recovery_failed: {
        channel: string;
    };
    /** Something went wrong that the SDK handled (a bad frame, a refused refresh, …). */
    error: HeraldError;
    /** The token expires soon; emitted whether or not a token function refreshes it. */
    token_expiring: {
        expiresAt: number;
    };
}
/** A subscription handle. */
export declare class Subscription {
    private readonly client;
    readonly channel: string;
    constructor(client: HeraldClient, channel: string);
    /** Stops delivery (the screen is hidden); presence stays, and `resume` continues exactly. */
    pause(): void;
    /** Continues after `pause`: what was published meanwhile arrives first, in order, then live records. */
    resume(): void;
    /** Ends the subscription. */
    unsubscribe(): void;
    /** The cursor to resume from (store it to resume across app restarts). */
    get cursor(): string | undefined;
}
export declare class HeraldClient {
    private readonly opts;
    private readonly baseUrl;
    private readonly env;
    private readonly backoff;
    private readonly kinds;
    private readonly cursors;
    private readonly channels;
    private readonly pending;
    private readonly listeners;
    private transport;
    private kindIndex;
    private failures;
    private upgradeTimer;
    /** While trying the WebSocket again from a fallback: the fallback to return to if it fails. */
    private probingFrom;
    private reconnectTimer;
    private watchdog;
    private stableTimer;
    private heartbeatMs;
    private welcomed;
    private stopped;
    private refusedTokens;
    private currentToken;
    private nextId;
    private stateNow;
    private nextDelayMs;
    constructor(opts: ClientOptions);
    /** The current connection state. */
    get state(): ConnectionState;
    /** The transport in use (or being tried). */
    get transportKind(): TransportKind;
    /** Listens for an event; returns a function that stops listening. */
    on<K extends keyof EventMap>(event: K, listener: Listener<EventMap[K]>): () => void;
    /** Subscribes `handler` to `channel`. Each record reaches it once, in publish order, across reconnects. */
    subscribe<T = unknown>(channel: string, handler: (message: HeraldMessage<T>) => void, opts?: SubscribeOptions): Subscription;
    /** Ends a subscription. */
    unsubscribe(channel: string): void;
    /** Publishes `data` on `channel` (over the WebSocket, or over HTTP on the fallbacks). */
    publish(channel: string, data: unknown, opts?: {
        idempotencyKey?: string;
    }): Promise<Published>;
    /** Who is on `channel` now (WebSocket only). */
    presence(channel: string): Promise<Presence>;
    /**
     * Closes the connection and stays closed (the app went to the background, or offline), keeping
     * every channel's cursor; `resume()` reconnects and continues each channel exactly.
     */
    pause(reason?: string): void;
    /** Reconnects after `pause()` (foreground, back online). */
    resume(): void;
    /** Closes for good. */
    close(): void;
    /** The cursor `channel` would resume from. */
    cursorOf(channel: string): string | undefined;
    /** Drops the current connection as a network cut would (tests, and "retry now" buttons). */
    dropConnection(): void;
    /** @internal */
    pauseChannel(channel: string): void;
    /** @internal */
    resumeChannel(channel: string): void;
    private available;
    private token;
    private connect;
    private liveChannels;
    private cursorsKnown;
    /** SSE and long-poll carry a fixed channel set: a change reopens the stream from the cursors. */
    private restartStream;
    private teardown;
    private armWatchdog;
    private onClosed;
    private fail;
    private scheduleReconnect;
    /** On a fallback, try the WebSocket again now and then. */
    private scheduleUpgrade;
    private onFrame;
    private onWelcome;
    private sendSubscribe;
    private onSubscribed;
    /** `connected` once every channel is subscribed again (until then, `recovering`). */
    private settle;
    private onMessage;
    private onUnsubscribed;
    private onTokenExpiring;
    private id;
    private request;
    private reply;
    private setState;
    private emit;
}
export {};
