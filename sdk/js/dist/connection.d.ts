import type { EventSink } from './events.js';
import type { ClientFrame, ServerFrame } from './frames.js';
import { type ConnectionOptions } from './options.js';
import type { HttpApi } from './http.js';
import type { ConnectionEvents, ConnectionState } from './state.js';
import type { TransportKind } from './transport.js';
/** What the connection asks of what it carries (the channel table). */
export interface ConnectionChannels {
    /** What a stream (SSE, long-poll) is opened with: its channels and their cursors. */
    streamRequest(): {
        channels: string[];
        cursors: string[];
    };
    /** A link was welcomed (`replaying`: after an earlier one). */
    welcomed(onWebSocket: boolean, replaying: boolean): void;
    /** The link ended. */
    disconnected(): void;
    /** A frame: true when it was only about channels; false when it may answer a request. */
    onFrame(f: ServerFrame): boolean;
    /** Some channel is still being resumed after a reconnect: the state stays `recovering`. */
    readonly replaying: boolean;
}
/** What the connection is doing: running, paused by the app, stopped by the server (`disconnect`), closed by the app, or failed for good. */
export type ConnectionMode = 'running' | 'paused' | 'stopped' | 'closed' | 'failed';
/** A Herald connection, reconnecting until paused, closed or failed. `start()` opens it. */
export declare class Connection {
    private readonly events;
    private readonly requests;
    private readonly tokens;
    /** What the links see of the connection. */
    private readonly host;
    private readonly o;
    private readonly backoff;
    private readonly fallback;
    private readonly timers;
    private channels;
    private modeNow;
    private stateNow;
    private announced;
    private link;
    /** On SSE or long-poll with no channel to stream: nothing is open, and a subscribe opens it. */
    private idleStream;
    private everWelcomed;
    /** Bumped by every teardown: async work of an older link stops when it sees a newer one. */
    private epoch;
    /** Token refusals (4001/4002) since the last `welcome`. */
    private refusals;
    /** The last heartbeat interval a `welcome` gave, ms. */
    private heartbeatMs;
    constructor(opts: ConnectionOptions, events: EventSink<ConnectionEvents>);
    /** Sets what the connection carries (before `start`). */
    carry(channels: ConnectionChannels): void;
    /** Opens the first link. */
    start(): Promise<void>;
    /** The connection state. */
    get state(): ConnectionState;
    /** The transport in use (or about to be tried). */
    get transportKind(): TransportKind;
    /** `running`, or paused by the app, or stopped by the server, or closed by the app, or failed for good. */
    get mode(): ConnectionMode;
    /** The WebSocket's frame encoding (`json` on SSE, long-poll, and before a WebSocket is open). */
    get encoding(): 'json' | 'proto';
    /** The HTTP API with the client token. */
    get http(): HttpApi;
    /** The link's `welcome` came. */
    get welcomed(): boolean;
    /** The link is a WebSocket. */
    get onWebSocket(): boolean;
    /** A link is open, or SSE or long-poll waits for a channel to stream. */
    get active(): boolean;
    /** Closes and stays disconnected until `resume()`; see `HeraldClient.pause`. */
    pause(reason?: string): void;
    /** Connects again after the server said not to reconnect, or after `pause()`. */
    connect(): void;
    /** Reconnects after `pause()`, or now while waiting out a backoff. */
    resume(): void;
    /** Closes for good. */
    close(): void;
    /** Cuts the link as a network fault would, and reconnects at once. */
    dropConnection(): void;
    /** Sends a frame on the link; false when none is open or it sends nothing (SSE, long-poll). */
    send(frame: ClientFrame): boolean;
    /** A fresh request id. */
    nextId(): number;
    /** Sends a request frame with a fresh id and waits for its reply. */
    request(frame: ClientFrame, what: string): Promise<ServerFrame>;
    /** SSE and long-poll: opens the stream again (another channel set), if one is open or idle. */
    reopenStream(reason: string): void;
    /** `connected` once every channel resumed after a reconnect is subscribed again; until then `recovering`. */
    settle(reason: string): void;
    private open;
    /** Closes whatever is open and forgets the link (not the channels or cursors). */
    private teardown;
    /** SSE and long-poll: opens the stream again (another channel set, a new token). */
    private reopen;
    /** Schedules the next attempt, falling back to the next transport after repeated failures to open this one. */
    private reconnect;
    /** The link's transport ended by itself. */
    private onClosed;
    /** Nothing was heard on the link in time. */
    private onDead;
    /** The server asked to reconnect, maybe saying when. */
    private onReconnectFrame;
    /**
     * The server ended the connection on purpose. With `reconnect` (never after `revoked`) it
     * reconnects with the usual backoff; otherwise it stays `disconnected` until `connect()`, which
     * after `revoked` fetches a new token first.
     */
    private onServerDisconnect;
    private fail;
    /** The link's `welcome` came: it is connected (and, after a reconnect, recovering its channels). */
    private onWelcome;
    /** A transport's events, routed by which it is when they come: the link's, the probe, or a stale one (ignored). */
    private eventsOf;
    /** The background WebSocket was welcomed: the connection moves to it. */
    private promote;
    private setState;
}
