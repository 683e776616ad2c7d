/** The wire frames of docs/protocol.md, as the SDK reads them. Unknown fields are ignored. */
/** A frame from the server: `type` and whatever fields that type carries. */
export interface ServerFrame {
    type: string;
    id?: number | string;
    channel?: string;
    cursor?: string;
    recovered?: boolean;
    data?: unknown;
    ts?: number;
    code?: string;
    message?: string;
    heartbeat_ms?: number;
    expires_at?: number;
    after_ms?: number;
    reason?: string;
    message_id?: string;
    duplicate?: boolean;
    connection_id?: string;
    occupancy?: number;
    members?: PresenceMember[];
    member?: PresenceMember;
    [field: string]: unknown;
}
/** A member of a channel's presence set. */
export interface PresenceMember {
    connection_id: string;
    user: string;
}
/** What one WebSocket text message held: its frames, and a description of each line that was not a frame. */
export interface Batch {
    frames: ServerFrame[];
    errors: string[];
}
/**
 * Splits a WebSocket text message into frames: one or more JSON objects, each followed by `\n`;
 * empty lines are ignored. A line that is not a JSON object with a string `type` is reported in
 * `errors` and skipped, so one bad frame never loses the others.
 */
export declare function parseBatch(text: string): Batch;
/** Encodes a client frame (one per message, newline-terminated as the protocol allows). */
export declare function encodeFrame(frame: Record<string, unknown>): string;
