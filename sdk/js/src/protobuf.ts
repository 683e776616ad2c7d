/**
 * The protobuf wire format, as much of it as `herald.v1.proto` needs, written by hand so the SDK
 * keeps no runtime dependency: varints (64-bit values as numbers below 2^53, else as decimal
 * strings), zigzag `sint64`, `double`, length-delimited fields and frames; unknown fields are
 * skipped. Every read is bounds-checked: bad bytes throw a `WireError`, never read past the end.
 */

/** Bytes that are not what the schema says: truncated, overlong, or of the wrong wire type. */
export class WireError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WireError';
  }
}

/** A 64-bit integer: a number when it is exact as one (below 2^53), else its decimal digits. */
export type Int64 = number | string;

/** Wire types. */
export const VARINT = 0;
export const FIXED64 = 1;
export const LEN = 2;
export const FIXED32 = 5;

/** Reads one protobuf message (or a batch of length-prefixed ones) from `buf`. */
export class WireReader {
  pos: number;
  readonly end: number;

  constructor(
    readonly buf: Uint8Array,
    start = 0,
    end = buf.length,
  ) {
    this.pos = start;
    this.end = end;
  }

  /** Whether bytes remain. */
  get more(): boolean {
    return this.pos < this.end;
  }

  /** An unsigned varint of up to 64 bits. */
  varint(): Int64 {
    const start = this.pos;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new WireError('truncated varint');
      const b = this.buf[this.pos++];
      if (i === 9 && b > 1) throw new WireError('varint above 64 bits');
      // Exact below 2^53; a larger value rounds to 2^53 or more and is redone in bigint.
      value += (b & 0x7f) * scale;
      if (b < 0x80) return value <= Number.MAX_SAFE_INTEGER ? value : this.bigVarint(start);
      scale *= 128;
    }
    throw new WireError('varint longer than 10 bytes');
  }

  /** A varint that must fit a number (lengths, field keys, 32-bit fields). */
  smallVarint(what: string): number {
    const v = this.varint();
    if (typeof v !== 'number' || v > 0xffffffff) throw new WireError(`${what} out of range`);
    return v;
  }

  /** A zigzag-encoded `sint64`. */
  sint64(): Int64 {
    const v = this.varint();
    if (typeof v === 'number') return v % 2 === 0 ? v / 2 : -(v + 1) / 2;
    const n = BigInt(v);
    return exact((n >> 1n) ^ -(n & 1n));
  }

  bool(): boolean {
    return this.varint() !== 0;
  }

  /** A little-endian IEEE 754 `double`. */
  double(): number {
    const b = this.take(8);
    return new DataView(b.buffer, b.byteOffset, 8).getFloat64(0, true);
  }

  /** A length-delimited field's bytes (a view, not a copy). */
  bytes(): Uint8Array {
    return this.take(this.smallVarint('length'));
  }

  /** A length-delimited field as UTF-8 text (invalid UTF-8 is an error, as in protobuf). */
  string(): string {
    return utf8Decode(this.bytes());
  }

  /** A field's key: its number and wire type. */
  key(): { field: number; wire: number } {
    const k = this.smallVarint('field key');
    const field = Math.floor(k / 8);
    if (field === 0) throw new WireError('field number 0');
    return { field, wire: k & 7 };
  }

  /** Skips a field of wire type `wire` (a field this reader does not know). */
  skip(wire: number): void {
    if (wire === VARINT) this.varint();
    else if (wire === FIXED64) this.take(8);
    else if (wire === LEN) this.bytes();
    else if (wire === FIXED32) this.take(4);
    else throw new WireError(`unsupported wire type ${wire}`);
  }

  /** A reader over the next length-delimited field (an embedded message). */
  message(): WireReader {
    const b = this.bytes();
    return new WireReader(b);
  }

  private take(n: number): Uint8Array {
    if (n > this.end - this.pos) throw new WireError('field runs past the end of its frame');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  private bigVarint(start: number): Int64 {
    let v = 0n;
    for (let i = this.pos - 1; i >= start; i--) v = (v << 7n) | BigInt(this.buf[i] & 0x7f);
    return exact(v);
  }
}

/** A bigint as a number when exact, else as its digits. */
function exact(v: bigint): Int64 {
  return v >= -BigInt(Number.MAX_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
}

/** Builds one protobuf message; fields are written in the order they are added. */
export class WireWriter {
  private buf = new Uint8Array(64);
  private len = 0;

  /** The bytes written. */
  finish(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }

  /** A varint: a non-negative integer, or the decimal digits of one up to 2^64 - 1. */
  varint(v: Int64): void {
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) {
      this.room(8);
      while (v >= 0x80) {
        this.buf[this.len++] = (v % 0x80) | 0x80;
        v = Math.floor(v / 0x80);
      }
      this.buf[this.len++] = v;
      return;
    }
    let n = BigInt(v);
    if (n < 0n || n >= 1n << 64n) throw new RangeError(`${v} is not a 64-bit unsigned integer`);
    this.room(10);
    while (n >= 0x80n) {
      this.buf[this.len++] = Number(n & 0x7fn) | 0x80;
      n >>= 7n;
    }
    this.buf[this.len++] = Number(n);
  }

  key(field: number, wire: number): void {
    this.varint(field * 8 + wire);
  }

  /** Field `field` as a varint. */
  uint(field: number, v: Int64): void {
    this.key(field, VARINT);
    this.varint(v);
  }

  /** Field `field` as a zigzag `sint64`. */
  sint64(field: number, v: Int64): void {
    const small = typeof v === 'number' && Number.isSafeInteger(v) && Math.abs(v) < 2 ** 52;
    this.uint(field, small ? (v >= 0 ? 2 * v : -2 * v - 1) : zigzag(BigInt(v)));
  }

  bool(field: number, v: boolean): void {
    this.uint(field, v ? 1 : 0);
  }

  double(field: number, v: number): void {
    this.key(field, FIXED64);
    this.room(8);
    new DataView(this.buf.buffer, this.len, 8).setFloat64(0, v, true);
    this.len += 8;
  }

  /** Field `field` as length-delimited bytes. */
  bytes(field: number, b: Uint8Array): void {
    this.key(field, LEN);
    this.varint(b.length);
    this.raw(b);
  }

  string(field: number, s: string): void {
    this.bytes(field, utf8Encode(s));
  }

  /** Field `field` as an embedded message. */
  message(field: number, m: WireWriter): void {
    this.bytes(field, m.finish());
  }

  /** Bytes as they are (a frame's length prefix is written with `varint`). */
  raw(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const bigger = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    bigger.set(this.buf.subarray(0, this.len));
    this.buf = bigger;
  }
}

/** The zigzag form of a signed 64-bit integer (an error outside that range). */
function zigzag(n: bigint): Int64 {
  if (n < -(1n << 63n) || n >= 1n << 63n) throw new RangeError(`${n} is not a 64-bit signed integer`);
  return exact(n >= 0n ? n << 1n : (-n << 1n) - 1n);
}

/** `frame`'s bytes preceded by their length: one frame of a batch. */
export function delimited(frame: WireWriter): Uint8Array {
  const body = frame.finish();
  const w = new WireWriter();
  w.varint(body.length);
  w.raw(body);
  return w.finish();
}

// ---- UTF-8 (the environment's TextEncoder/TextDecoder when it has them; React Native may not) --

const g = globalThis as { TextEncoder?: new () => { encode(s: string): Uint8Array }; TextDecoder?: new (label: string, o: { fatal: boolean }) => { decode(b: Uint8Array): string } };
const encoder = g.TextEncoder ? new g.TextEncoder() : undefined;
const decoder = g.TextDecoder ? new g.TextDecoder('utf-8', { fatal: true }) : undefined;

/** `s` as UTF-8. */
export function utf8Encode(s: string): Uint8Array {
  if (encoder) return encoder.encode(s);
  const out: number[] = [];
  for (const ch of s) {
    const c = ch.codePointAt(0) ?? 0xfffd;
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return Uint8Array.from(out);
}

/** UTF-8 bytes as text; a `WireError` when they are not UTF-8. */
export function utf8Decode(b: Uint8Array): string {
  if (decoder) {
    try {
      return decoder.decode(b);
    } catch {
      throw new WireError('text that is not UTF-8');
    }
  }
  let s = '';
  for (let i = 0; i < b.length; ) {
    const c = b[i++];
    const n = c < 0x80 ? 0 : c >= 0xc2 && c < 0xe0 ? 1 : c >= 0xe0 && c < 0xf0 ? 2 : c >= 0xf0 && c < 0xf5 ? 3 : -1;
    if (n < 0 || i + n > b.length) throw new WireError('text that is not UTF-8');
    let cp = n === 0 ? c : c & (0x3f >> n);
    for (let k = 0; k < n; k++) {
      const d = b[i++];
      if ((d & 0xc0) !== 0x80) throw new WireError('text that is not UTF-8');
      cp = (cp << 6) | (d & 63);
    }
    if ((n === 2 && (cp < 0x800 || (cp >= 0xd800 && cp < 0xe000))) || (n === 3 && (cp < 0x10000 || cp > 0x10ffff))) throw new WireError('text that is not UTF-8');
    s += String.fromCodePoint(cp);
  }
  return s;
}
