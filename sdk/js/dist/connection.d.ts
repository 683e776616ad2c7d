/**
 * The connection: one transport at a time to Herald. It picks the transport (WebSocket, then SSE,
 * then long-poll after repeated failures to open one, trying the WebSocket again in the
 * background), authenticates and refreshes the token, watches heartbeats, reconnects with backoff
 * (or when the server says), and carries its `state`. What it carries is a `ConnectionChannels`
 * (the channel table, in the client): told when a connection is welcomed or lost, and handed the
 * frames about channels.
 */
import { type BackoffOptions } from './backoff.js';
import type { EventSink } from './events.js';
import type { ClientFrame, ServerFrame } from './frames.js';
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
/** The events the connection reports. */
export interface ConnectionEvents {
    /** The connection state changed. */
    state: StateChange;
    /** Something went wrong that the client handled or cannot fix: a refused request, a bad frame, a failing token function. */
    error: HeraldError;
    /** The token expires soon (seconds since the Unix epoch); a token function is called for a new one. */
    token_expiring: {
        expiresAt: number;
    };
}
/** Connection options (the client's, but for the channel table's). */
export interface ConnectionOptions {
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
/** What the connection asks of what it carries (the channel table). */
export interface ConnectionChannels {
    /** What a stream (SSE, long-poll) is opened with: its channels and their cursors. */
    streamRequest(): {
        channels: string[];
        cursors: string[];
    };
    /** A connection was welcomed (`replaying`: after an earlier one). */
    welcomed(onWebSocket: boolean, replaying: boolean): void;
    /** The connection ended. */
    disconnected(): void;
    /** A frame: true when it was only about channels; false when it may answer a request. */
    onFrame(f: ServerFrame): boolean;
    /** Some channel is still being resumed after a reconnect: the state stays `recovering`. */
    readonly replaying: boolean;
}
/** A Herald connection, reconnecting until paused, closed or failed. `start()` opens it. */
export declare class Connection {
    private readonly events;
    private readonly baseUrl;
    private readonly env;
    private readonly kinds;
    private readonly backoff;
    private readonly tokens;
    private readonly requests;
    private readonly timers;
    private readonly o;
    private channels;
    private modeNow;
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
    private welcomedNow;
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
    constructor(opts: ConnectionOptions, events: EventSink<ConnectionEvents>);
    /** Sets what the connection carries (before `start`). */
    carry(channels: ConnectionChannels): void;
    /** Opens the first connection. */
    start(): Promise<void>;
    /** The connection state. */
    get state(): ConnectionState;
    /** The transport in use (or about to be tried). */
    get transportKind(): TransportKind;
    /** `running`, or paused by the app, or closed by it, or failed for good. */
    get mode(): 'running' | 'paused' | 'closed' | 'failed';
    /** The transport's `welcome` came. */
    get welcomed(): boolean;
    /** The transport is a WebSocket. */
    get onWebSocket(): boolean;
    /** A transport is open, or SSE or long-poll waits for a channel to stream. */
    get active(): boolean;
    /** Closes and stays disconnected until `resume()`; see `HeraldClient.pause`. */
    pause(reason?: string): void;
    /** Reconnects after `pause()`, or now while waiting out a backoff. */
    resume(): void;
    /** Closes for good. */
    close(): void;
    /** Cuts the connection as a network fault would, and reconnects at once. */
    dropConnection(): void;
    /** Sends a frame on the transport; false when none is open or it sends nothing (SSE, long-poll). */
    send(frame: ClientFrame): boolean;
    /** A fresh request id. */
    nextId(): number;
    /** Sends a request frame with a fresh id and waits for its reply. */
    request(frame: ClientFrame, what: string): Promise<ServerFrame>;
    /** SSE and long-poll: opens the stream again (another channel set), if one is open or idle. */
    reopenStream(reason: string): void;
    /** `connected` once every channel resumed after a reconnect is subscribed again; until then `recovering`. */
    settle(reason: string): void;
    /** `POST /v1/publish` with the client token (SSE, long-poll, or between connections); a refused token is renewed once. */
    publishOverHttp(body: string, channel: string, retryRefused?: boolean): Promise<{
        cursor: string;
        messageId: string;
        duplicate: boolean;
    }>;
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
    private onWelcome;
    private onError;
    /** SSE and long-poll: refresh the token ahead of `expiresAt` as the server would warn (a minute, or half a short token's life). */
    private scheduleTokenRefresh;
    /** The token expires soon: fetch a new one and hand it to the connection. */
    private refreshToken;
    private setState;
}
