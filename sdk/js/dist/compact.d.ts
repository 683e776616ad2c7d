/**
 * The compact encoding, WebSocket subprotocol `herald.v1.proto` (docs/protocol.md, "Compact
 * encoding"; schema `proto/herald/v1/wire.proto`). A `CompactReader` turns the server's binary
 * messages into the same `ServerFrame`s a JSON connection gets, cursors rebuilt byte for byte;
 * `encodeCompact` writes the client's frames. The rest of the SDK never sees the difference.
 */
import type { ClientFrame, ServerFrame } from './frames.js';
/** The subprotocol's name. */
export declare const PROTO_SUBPROTOCOL = "herald.v1.proto";
/** The frames of one binary message, and why reading stopped early, if it did. */
export interface CompactFrames {
    frames: ServerFrame[];
    /** The first frame that could not be read (the frames before it are in `frames`). */
    error?: string;
}
/** One connection's reader of compact server frames: it numbers subscriptions as the server did. */
export declare class CompactReader {
    private readonly subs;
    /** Every frame of a binary message, as JSON v1 frames; a message of an unknown subscription (one the client left) is left out. */
    read(message: Uint8Array): CompactFrames;
    /** One frame; undefined for a frame of a type this SDK does not know (ignored, as in JSON) or a message nobody reads. */
    private frame;
    private message;
}
/** A client frame in the compact encoding, length-prefixed (one frame of a batch). A `TypeError` for a type the schema lacks. */
export declare function encodeCompact(frame: ClientFrame): Uint8Array;
