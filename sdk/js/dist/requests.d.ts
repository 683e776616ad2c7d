/** Requests over the WebSocket: client-chosen ids, replies matched by id, a timeout on each. */
import type { ServerFrame } from './frames.js';
/**
 * An error with a protocol error code (docs/protocol.md, "Error codes"), or one of the SDK's own:
 * `timeout` (no reply in time), `disconnected` (the connection ended before the reply),
 * `not_supported` (not possible on the current transport).
 */
export declare class HeraldError extends Error {
    /** The error code. */
    readonly code: string;
    /** The channel it concerns, when it concerns one. */
    readonly channel?: string | undefined;
    constructor(
    /** The error code. */
    code: string, message: string, 
    /** The channel it concerns, when it concerns one. */
    channel?: string | undefined);
}
/** The requests waiting for their reply on one connection. */
export declare class Requests {
    private readonly timeoutMs;
    private nextId;
    private readonly pending;
    constructor(timeoutMs: number);
    /** A fresh request id. */
    id(): number;
    /** Waits for the reply to request `id` (`what` names it in a timeout's message). */
    wait(id: number, what: string): Promise<ServerFrame>;
    /** Settles the request a reply (or `error` frame) answers; false when it answers none. */
    settle(frame: ServerFrame): boolean;
    /** The connection ended: every waiting request fails. */
    abandon(): void;
}
