/**
 * The protobuf wire format, as much of it as `herald.v1.proto` needs, written by hand so the SDK
 * keeps no runtime dependency: varints (64-bit values as numbers below 2^53, else as decimal
 * strings), zigzag `sint64`, `double`, length-delimited fields and frames; unknown fields are
 * skipped. Every read is bounds-checked: bad bytes throw a `WireError`, never read past the end.
 */
/** Bytes that are not what the schema says: truncated, overlong, or of the wrong wire type. */
export declare class WireError extends Error {
    constructor(message: string);
}
/** A 64-bit integer: a number when it is exact as one (below 2^53), else its decimal digits. */
export type Int64 = number | string;
/** Wire types. */
export declare const VARINT = 0;
export declare const FIXED64 = 1;
export declare const LEN = 2;
export declare const FIXED32 = 5;
/** Reads one protobuf message (or a batch of length-prefixed ones) from `buf`. */
export declare class WireReader {
    readonly buf: Uint8Array;
    pos: number;
    readonly end: number;
    constructor(buf: Uint8Array, start?: number, end?: number);
    /** Whether bytes remain. */
    get more(): boolean;
    /** An unsigned varint of up to 64 bits. */
    varint(): Int64;
    /** A varint that must fit a number (lengths, field keys, 32-bit fields). */
    smallVarint(what: string): number;
    /** A zigzag-encoded `sint64`. */
    sint64(): Int64;
    bool(): boolean;
    /** A little-endian IEEE 754 `double`. */
    double(): number;
    /** A length-delimited field's bytes (a view, not a copy). */
    bytes(): Uint8Array;
    /** A length-delimited field as UTF-8 text (invalid UTF-8 is an error, as in protobuf). */
    string(): string;
    /** A field's key: its number and wire type. */
    key(): {
        field: number;
        wire: number;
    };
    /** Skips a field of wire type `wire` (a field this reader does not know). */
    skip(wire: number): void;
    /** A reader over the next length-delimited field (an embedded message). */
    message(): WireReader;
    private take;
    private bigVarint;
}
/** Builds one protobuf message; fields are written in the order they are added. */
export declare class WireWriter {
    private buf;
    private len;
    /** The bytes written. */
    finish(): Uint8Array;
    /** A varint: a non-negative integer, or the decimal digits of one up to 2^64 - 1. */
    varint(v: Int64): void;
    key(field: number, wire: number): void;
    /** Field `field` as a varint. */
    uint(field: number, v: Int64): void;
    /** Field `field` as a zigzag `sint64`. */
    sint64(field: number, v: Int64): void;
    bool(field: number, v: boolean): void;
    double(field: number, v: number): void;
    /** Field `field` as length-delimited bytes. */
    bytes(field: number, b: Uint8Array): void;
    string(field: number, s: string): void;
    /** Field `field` as an embedded message. */
    message(field: number, m: WireWriter): void;
    /** Bytes as they are (a frame's length prefix is written with `varint`). */
    raw(b: Uint8Array): void;
    private room;
}
/** `frame`'s bytes preceded by their length: one frame of a batch. */
export declare function delimited(frame: WireWriter): Uint8Array;
/** `s` as UTF-8. */
export declare function utf8Encode(s: string): Uint8Array;
/** UTF-8 bytes as text; a `WireError` when they are not UTF-8. */
export declare function utf8Decode(b: Uint8Array): string;
