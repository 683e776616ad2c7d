/**
 * One open transport of the connection, from its opening to its end: the token it was opened
 * with, its `welcome`, its heartbeats (nothing heard for two of them, or no `welcome` within the
 * connect timeout, and it is dead), its frames (pings answered, errors reported, channel frames and
 * replies handed on) and its token, refreshed before it expires. What a welcome, an end, a death
 * or a `reconnect` or `disconnect` frame means for the connection is for its `LinkHost` (the connection) to say.
 */
import type { EventSink } from './events.js';
import type { ClientFrame, ServerFrame } from './frames.js';
import { HeraldError, type Requests } from './requests.js';
import { type TokenSource } from './token.js';
import { type Transport } from './transport.js';
/** The events a link reports by itself. */
export interface LinkEvents {
    error: HeraldError;
    token_expiring: {
        expiresAt: number;
    };
}
/** What a link needs of the connection that opened it. */
export interface LinkHost {
    readonly events: EventSink<LinkEvents>;
    readonly requests: Requests;
    readonly tokens: TokenSource;
    /** How long the link may take until its `welcome`, ms. */
    readonly connectTimeoutMs: number;
    /** The link's `welcome` came (and it was not welcomed yet). */
    welcomed(f: ServerFrame): void;
    /** A frame about channels, or a reply: false when it was not only about channels. */
    channelFrame(f: ServerFrame): boolean;
    /** The server asked to reconnect (a `reconnect` frame). */
    reconnectAsked(f: ServerFrame): void;
    /** The server ended the connection (a `disconnect` frame). */
    disconnectAsked(f: ServerFrame): void;
    /** The transport ended by itself, with `code` (or the one a fatal `error` frame announced). */
    closed(code: number | undefined, reason: string, welcomed: boolean): void;
    /** Nothing was heard for `limitMs`. */
    dead(welcomed: boolean, limitMs: number): void;
    /** Sends a request frame with a fresh id and waits for its reply. */
    request(frame: ClientFrame, what: string): Promise<ServerFrame>;
    /** SSE: the stream reopens to take a new token. */
    reopen(reason: string): void;
}
/** An open transport and what the connection knows of it. */
export declare class Link {
    private readonly host;
    readonly transport: Transport;
    /** The token the transport was opened with (or refreshed to). */
    private token;
    /** The heartbeat interval, ms (the server's `welcome` says; until then, the last one's). */
    heartbeatMs: number;
    private readonly timers;
    private welcomedNow;
    private ended;
    private lastHeard;
    /** The close code a fatal `error` frame announced (SSE has no close codes of its own). */
    private closeHint;
    constructor(host: LinkHost, transport: Transport, 
    /** The token the transport was opened with (or refreshed to). */
    token: string, 
    /** The heartbeat interval, ms (the server's `welcome` says; until then, the last one's). */
    heartbeatMs: number);
    /** The `welcome` came. */
    get welcomed(): boolean;
    /** Sends a frame; false when it could not (a closed link, SSE, long-poll). */
    send(frame: ClientFrame): boolean;
    /** Ends the link: its timers stop, the transport closes, and nothing it started carries on. */
    close(): void;
    /** The `welcome` came: the link is watched on heartbeats from now on. */
    markWelcomed(f: ServerFrame): void;
    /** Declares the link dead when nothing was heard for two heartbeats (or no `welcome` came in time). */
    watch(): void;
    /** SSE and long-poll: the token's expiry, from the `welcome` or else from the token itself. */
    streamTokenExpiry(f: ServerFrame): number | undefined;
    /** Frames, in order. */
    onFrames(frames: ServerFrame[]): void;
    /** The transport ended by itself. */
    onClosed(code: number | undefined, reason: string): void;
    private onFrame;
    private onError;
    /** SSE and long-poll: refresh the token ahead of `expiresAt` as the server would warn (a minute, or half a short token's life). */
    scheduleTokenRefresh(expiresAt: number | undefined): void;
    /** The token expires soon: fetch a new one and hand it to the transport. */
    private refreshToken;
}
