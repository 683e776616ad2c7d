/**
 * The Herald client: one connection, many channels. It resumes every channel from its cursor
 * after any cut, drops what it has already delivered, reconnects with backoff, and falls back
 * from WebSocket to SSE to long-poll (and back) where WebSockets are blocked.
 */
import { type BackoffOptions } from './backoff.js';
import { type Listener } from './events.js';
import { type PresenceMember } from './frames.js';
import { HeraldError } from './requests.js';
import { type TokenProvider } from './token.js';
import { type Environment, type TransportKind } from './transport.js';
/**
 * Connection states: `connecting` (the first connection), `connected`, `disconnected` (cut, or
 * paused by the app; a reconnect is scheduled unless paused), `recovering` (connected again and
 * resuming every channel from its cursor), `failed` (final: the origin is not allowed, or the
 * token was refused twice).
 */
export type ConnectionState = 'connecting' | 'connected' | 'disconnected' | 'recovering' | 'failed';
/** A `state` event. */
export interface StateChange {
    state: ConnectionState;
    /** Why: a close reason, an error code's meaning, `offline`, … */
    reason: string;
    /** The transport in use (or about to be tried). */
    transport: TransportKind;
}
/** A record, as a subscription handler receives it. */
export interface HeraldMessage<T = unknown> {
    channel: string;
    /** The stable message id (the dedupe key). */
    id: string;
    /** The position just after this record; the client resumes the channel from it. */
    cursor: string;
    /** Publish time, ms since the Unix epoch. */
    ts: number;
    data: T;
}
/** What `publish` resolves to. */
export interface Published {
    cursor: string;
    messageId: string;
    /** The idempotency key had been used already: this is the first record's cursor and id. */
    duplicate: boolean;
}
/** A channel's presence. */
export interface Presence {
    channel: string;
    occupancy: number;
    members: PresenceMember[];
}
/** A join or leave on a channel subscribed with `presence: true`. */
export interface PresenceEvent {
    type: 'join' | 'leave';
    channel: string;
    member: PresenceMember;
}
/** The client's events. */
export interface HeraldEvents {
    /** The connection state changed. */
    state: StateChange;
    /** Something went wrong that the client handled or cannot fix: a refused request, a bad frame, a failing token function. */
    error: HeraldError;
    /** A channel's history after its cursor is gone (past retention): refetch that state from your backend. */
    recovery_failed: {
        channel: string;
    };
    /** The token expires soon (seconds since the Unix epoch); a token function is called for a new one. */
    token_expiring: {
        expiresAt: number;
    };
}
/** Client options. */
export interface ClientOptions {
    /** Herald's address: `https://herald.example.com` (`wss://` works too). */
    url: string;
    /**
     * A token, or a function that fetches one: called at connect, when the token is about to expire,
     * and after the server refused it (once; a second refusal ends in `failed`).
     */
    token: TokenProvider;
    /** Reconnect backoff: full jitter, base 500 ms, cap 30 s. */
    backoff?: BackoffOptions;
    /** A connection up this long resets the backoff, ms (default 10000). */
    stableAfterMs?: number;
    /** Message ids remembered per channel for dedupe (default 1000). */
    dedupeWindow?: number;
    /** Transports in order of preference (default `['websocket', 'sse', 'poll']`; those the environment lacks are skipped). */
    transports?: TransportKind[];
    /** Consecutive failures to open a transport before the next is tried (default 2). */
    fallbackAfter?: number;
    /** On a fallback, how often to try the WebSocket again, ms (default 60000). */
    upgradeEveryMs?: number;
    /** How long opening a connection may take until its `welcome`, ms (default 15000). */
    connectTimeoutMs?: number;
    /** How long a request (publish, presence, subscribe, refresh) may wait for its reply, ms (default 10000). */
    requestTimeoutMs?: number;
    /** How long one long-poll request waits for records, ms (default 25000, at most 60000). */
    pollTimeoutMs?: number;
    /** Send the WebSocket's token in `?token=` instead of the `auth` frame (only where a proxy needs it; it shows in logs). */
    tokenInQuery?: boolean;
    /** Constructors to use instead of the environment's (tests, polyfills). */
    environment?: Environment;
}
/** Subscription options. */
export interface SubscribeOptions {
    /** Resume after this cursor (one stored across app restarts, say) instead of starting now. */
    since?: string;
    /** Also receive join/leave events, in `onPresence`. */
    presence?: boolean;
    /** Deliver at most this many times a second (0.01 to 1000; records in between arrive together). */
    maxRate?: number;
    /** Join and leave events, with `presence: true`. */
    onPresence?: (event: PresenceEvent) => void;
    /** The subscription ended without `unsubscribe()`: the server refused or ended it (the error code). */
    onEnd?: (code: string) => void;
}
/** Publish options. */
export interface PublishOptions {
    /** Per account, within the server's idempotency window, one key makes one record. */
    idempotencyKey?: string;
}
/** A subscription handle. */
export interface Subscription {
    readonly channel: string;
    /** The cursor the channel resumes from (store it to resume across app restarts with `since`). */
    readonly cursor: string | undefined;
    /** Stops delivery while the screen is hidden (the server keeps presence); `resume` continues exactly. */
    pause(): void;
    /** Continues after `pause`: what was published meanwhile arrives first, in order, then live records. */
    resume(): void;
    /** Ends the subscription. */
    unsubscribe(): void;
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
    private readonly baseUrl;
    private readonly env;
    private readonly kinds;
    private readonly backoff;
    private readonly tokens;
    private readonly requests;
    private readonly cursors;
    private readonly channels;
    private readonly events;
    private readonly timers;
    private readonly o;
    private mode;
    private stateNow;
    private announced;
    private kindIndex;
    private transport;
    /** On SSE or long-poll with no channel to stream: nothing is open, and a subscribe opens it. */
    private idleStream;
    /** A WebSocket tried in the background while on a fallback. */
    private probe;
    /** The token the current transport was opened with. */
    private token;
    private welcomed;
    private everWelcomed;
    /** Bumped by every teardown: async work of an older connection stops when it sees a newer one. */
    private epoch;
    /** Consecutive failures to open the current transport (toward the fallback). */
    private failures;
    /** Token refusals (4001/4002) since the last `welcome`. */
    private refusals;
    private heartbeatMs;
    private lastHeard;
    /** The close code a fatal `error` frame announced (SSE has no close codes of its own). */
    private closeHint;
    constructor(opts: ClientOptions);
    /** The connection state. */
    get state(): ConnectionState;
    /** The transport in use (or about to be tried). */
    get transportKind(): TransportKind;
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
    /** Closes for good. */
    close(): void;
    /** Cuts the connection as a network fault would, and reconnects at once (tests, "retry now" buttons). */
    dropConnection(): void;
    private setPaused;
    private unsubscribe;
    /**
     * A channel was added, removed, paused or resumed. On the WebSocket, its frames say so; SSE and
     * long-poll carry a fixed channel set, so the stream reopens with the cursors. With nothing open
     * yet, the next connection takes the change into account by itself.
     */
    private channelChanged;
    /** Brings the server's view of `ch` on the WebSocket in line with the app's. */
    private syncWire;
    private sendSubscribe;
    /** A (re)subscribe the server refused ends the channel; one cut short by a reconnect is redone by it. */
    private track;
    /** The channels a stream carries (SSE, long-poll): every one not paused by the app. */
    private streamChannels;
    private open;
    /** Closes whatever is open and forgets the connection's state (not the channels or cursors). */
    private teardown;
    /** SSE and long-poll: opens the stream again (another channel set, a new token). */
    private reopen;
    /** Schedules the next attempt, falling back to the next transport after repeated failures to open this one. */
    private reconnect;
    private onClosed;
    private fail;
    /** Declares the connection dead when nothing was heard for two heartbeats (or no `welcome` came in time). */
    private watch;
    private timer;
    /** On a fallback, tries the WebSocket again now and then, in the background. */
    private scheduleUpgrade;
    private startProbe;
    private dropProbe;
    /** The probe's first frames: a `welcome` moves the client to it; anything else (an error) ends it. */
    private onProbeFrames;
    /** A transport's events, routed by which it is when they come: the connection, the probe, or a stale one (ignored). */
    private eventsOf;
    private onFrames;
    private onFrame;
    private channelOf;
    private onWelcome;
    private onSubscribed;
    /** `connected` once every channel resumed after a reconnect is subscribed again; until then `recovering`. */
    private settle;
    private onMessage;
    /** `unsubscribed` without an id: the server ended the subscription. */
    private onEnded;
    private onError;
    /** SSE and long-poll: refresh the token ahead of `expiresAt` as the server would warn (a minute, or half a short token's life). */
    private scheduleTokenRefresh;
    /** The token expires soon: fetch a new one and hand it to the connection. */
    private refreshToken;
    private send;
    /** Sends a request frame with a fresh id and waits for its reply. */
    private request;
    /** `POST /v1/publish` with the client token (SSE, long-poll, or between connections); a refused token is renewed once. */
    private publishOverHttp;
    private setState;
}
