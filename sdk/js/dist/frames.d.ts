/** The wire frames of docs/protocol.md, as the SDK reads and writes them. */
/** A member of a channel's presence set. */
export interface PresenceMember {
    connection_id: string;
    user: string;
    /** What the backend's authorization proxy said about the user on connect (a JSON object of at most 1 KiB), when it said anything. */
    info?: Record<string, unknown>;
}
/**
 * A frame from the server: a `type` and the fields that type carries (docs/protocol.md, "Server →
 * client frames"). Unknown fields and unknown types are ignored, as the protocol asks.
 */
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
    occupancy?: number;
    members?: PresenceMember[];
    member?: PresenceMember;
    /** `disconnect`: whether the client may reconnect. */
    reconnect?: boolean;
    /** `device`: whether the device is now registered. */
    registered?: boolean;
}
/** A frame to the server. */
export type ClientFrame = {
    type: string;
} & Record<string, unknown>;
/** The frames of one WebSocket text message (or SSE event), and a description of each line that was not a frame. */
export interface ParsedFrames {
    frames: ServerFrame[];
    errors: string[];
}
/**
 * Splits a message into frames: one or more JSON objects, each followed by `\n`; empty lines are
 * ignored. A line that is not a JSON object with a string `type` goes to `errors` and is skipped,
 * so one bad frame never loses the others.
 */
export declare function parseFrames(text: string): ParsedFrames;
/** Encodes one client frame as a message: the JSON object and its terminating newline. */
export declare function encodeFrame(frame: ClientFrame): string;
/** Whether `name` is a valid channel name. */
export declare function validChannel(name: string): boolean;
