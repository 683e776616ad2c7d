/** The connection's state as the app sees it: the five states, the `state` event, and the connection's events. */
import type { HeraldError } from './requests.js';
import type { TransportKind } from './transport.js';
/**
 * Connection states: `connecting` (the first connection), `connected`, `disconnected` (cut, paused
 * by the app, or ended by the server; a reconnect is scheduled unless paused or told not to),
 * `recovering` (connected again and
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
/** The server ended the connection on purpose (a backend disconnected the user, or revoked its token). */
export interface ServerDisconnect {
    /** `disconnected` or `revoked`. */
    code: string;
    reason: string;
    /** Whether the client reconnects by itself; if not, it stays `disconnected` until `connect()`. */
    reconnect: boolean;
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
    /** The server ended the connection on purpose; see `ServerDisconnect`. */
    disconnected: ServerDisconnect;
}
