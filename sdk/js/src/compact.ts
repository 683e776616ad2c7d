/**
 * The compact encoding, WebSocket subprotocol `herald.v1.proto` (docs/protocol.md, "Compact
 * encoding"; schema `proto/herald/v1/wire.proto`). A `CompactReader` turns the server's binary
 * messages into the same `ServerFrame`s a JSON connection gets, cursors rebuilt byte for byte;
 * `encodeCompact` writes the client's frames. The rest of the SDK never sees the difference.
 */
import type { ClientFrame, ServerFrame } from './frames.js';
import { delimited, utf8Decode, utf8Encode, WireError, WireReader, WireWriter, FIXED64, LEN, VARINT, type Int64 } from './protobuf.js';

/** The subprotocol's name. */
export const PROTO_SUBPROTOCOL = 'herald.v1.proto';

// ---- schemas ------------------------------------------------------------------------------------

/**
 * A field: its name in the JSON frame, its kind, and flags: `o` optional (no default when absent:
 * proto3 `optional`, oneof members, messages), `r` repeated. Kinds: `u` uint64, `z` sint64, `b`
 * bool, `d` double, `s` string, `j` one JSON value as UTF-8 bytes, `ulid`/`keyed` a message id's
 * 16-byte forms, or an embedded message's schema.
 */
type Field = [name: string, kind: Kind, flags?: 'o' | 'r'];
type Kind = 'u' | 'z' | 'b' | 'd' | 's' | 'j' | 'ulid' | 'keyed' | Schema;
type Schema = { [field: number]: Field };

const REQUEST_ID: Schema = { 1: ['value', 'z', 'o'], 2: ['value', 's', 'o'] };
const ID: Field = ['id', REQUEST_ID, 'o'];
const MEMBER: Schema = { 1: ['connection_id', 's'], 2: ['user', 's'], 3: ['info', 'j', 'o'] };
const ORIGIN: Schema = { 1: ['region', 's'], 2: ['next', 'u'] };
const CHANNEL_REQUEST: Schema = { 1: ID, 2: ['channel', 's'] };
const DEVICE_REQUEST: Schema = { 1: ID, 2: ['platform', 's'], 3: ['token', 's'], 4: ['app', 's'] };
const PRESENCE_EVENT: Schema = { 1: ['channel', 's'], 2: ['member', MEMBER, 'o'] };

/** `ServerFrame`'s oneof: field number → frame type and schema. */
const SERVER: { [field: number]: [type: string, schema: Schema] } = {
  1: ['message', { 1: ['sub', 'u'], 2: ['offset', 'u'], 3: ['id', 'ulid', 'o'], 4: ['id', 'keyed', 'o'], 5: ['id', 's', 'o'], 6: ['ts', 'u'], 7: ['data', 'j', 'o'], 8: ['origins', ORIGIN, 'r'] }],
  2: ['welcome', { 1: ['connection_id', 's'], 2: ['node', 's'], 3: ['region', 's'], 4: ['heartbeat_ms', 'u'], 5: ['protocol', 'u'], 6: ['expires_at', 'u', 'o'] }],
  3: ['subscribed', { 1: ID, 2: ['channel', 's'], 3: ['cursor', 's'], 4: ['recovered', 'b'], 5: ['sub', 'u'], 6: ['cursor_epoch', 's'], 7: ['cursor_region', 's'] }],
  4: ['unsubscribed', { 1: ID, 2: ['channel', 's'], 3: ['code', 's', 'o'] }],
  5: ['paused', { 1: ID, 2: ['channel', 's'], 3: ['cursor', 's'] }],
  6: ['published', { 1: ID, 2: ['channel', 's'], 3: ['cursor', 's'], 4: ['message_id', 's'], 5: ['duplicate', 'b'] }],
  7: ['presence', { 1: ID, 2: ['channel', 's'], 3: ['occupancy', 'u'], 4: ['members', MEMBER, 'r'] }],
  8: ['join', PRESENCE_EVENT],
  9: ['leave', PRESENCE_EVENT],
  10: ['token_expiring', { 1: ['expires_at', 'u'] }],
  11: ['refreshed', { 1: ID, 2: ['expires_at', 'u'] }],
  12: ['pong', { 1: ID }],
  13: ['ping', {}],
  14: ['error', { 1: ID, 2: ['code', 's'], 3: ['message', 's'] }],
  15: ['reconnect', { 1: ['after_ms', 'u'], 2: ['reason', 's'] }],
  16: ['disconnect', { 1: ['code', 's'], 2: ['reason', 's'], 3: ['reconnect', 'b'] }],
  17: ['device', { 1: ID, 2: ['registered', 'b'] }],
};

/** `ClientFrame`'s oneof: frame type → field number and schema. */
const CLIENT: { [type: string]: [field: number, schema: Schema] } = {
  auth: [1, { 1: ['token', 's'] }],
  subscribe: [2, { 1: ID, 2: ['channel', 's'], 3: ['since', 's', 'o'], 4: ['presence', 'b'], 5: ['max_rate', 'd', 'o'] }],
  unsubscribe: [3, CHANNEL_REQUEST],
  publish: [4, { 1: ID, 2: ['channel', 's'], 3: ['data', 'j', 'o'], 4: ['idempotency_key', 's', 'o'] }],
  presence: [5, CHANNEL_REQUEST],
  pause: [6, CHANNEL_REQUEST],
  resume: [7, CHANNEL_REQUEST],
  refresh: [8, { 1: ID, 2: ['token', 's'] }],
  ping: [9, { 1: ID }],
  pong: [10, {}],
  register_device: [11, DEVICE_REQUEST],
  unregister_device: [12, DEVICE_REQUEST],
};

// ---- decoding -----------------------------------------------------------------------------------

type Decoded = Record<string, unknown>;

const WIRE: Record<string, number> = { u: VARINT, z: VARINT, b: VARINT, d: FIXED64 };

/** Reads one message of `schema`: every known field (the last of a oneof wins), unknown ones skipped. */
function decode(r: WireReader, schema: Schema): Decoded {
  const out: Decoded = {};
  while (r.more) {
    const { field, wire } = r.key();
    const spec = schema[field];
    if (!spec) {
      r.skip(wire);
      continue;
    }
    const [name, kind, flags] = spec;
    if (wire !== (typeof kind === 'string' ? (WIRE[kind] ?? LEN) : LEN)) throw new WireError(`field ${name} has wire type ${wire}`);
    const v = readValue(r, kind);
    if (flags === 'r') ((out[name] ??= []) as unknown[]).push(v);
    else out[name] = v;
  }
  for (const [name, kind, flags] of Object.values(schema)) {
    if (flags === 'o' || name in out) continue;
    out[name] = flags === 'r' ? [] : kind === 'b' ? false : kind === 's' ? '' : 0;
  }
  return out;
}

function readValue(r: WireReader, kind: Kind): unknown {
  switch (kind) {
    case 'u':
      return r.varint();
    case 'z':
      return r.sint64();
    case 'b':
      return r.bool();
    case 'd':
      return r.double();
    case 's':
      return r.string();
    case 'j': {
      const text = utf8Decode(r.bytes());
      try {
        return JSON.parse(text) as unknown;
      } catch {
        throw new WireError('data that is not JSON');
      }
    }
    case 'ulid':
      return crockford(r.bytes(), 26);
    case 'keyed':
      return 'K' + crockford(r.bytes(), 25);
    default:
      return decode(r.message(), kind);
  }
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** A 128-bit big-endian id as its last `n` Crockford characters (the bits above them must be 0). */
function crockford(b: Uint8Array, n: number): string {
  if (b.length !== 16) throw new WireError('a compact message id is 16 bytes');
  const bit = (i: number) => (i < 128 ? (b[15 - (i >> 3)] >> (i & 7)) & 1 : 0);
  for (let i = 5 * n; i < 128; i++) if (bit(i)) throw new WireError(`a ${n === 26 ? 'ULID' : 'keyed id'} has more than ${5 * n} bits`);
  let s = '';
  for (let c = n - 1; c >= 0; c--) {
    let v = 0;
    for (let k = 4; k >= 0; k--) v = (v << 1) | bit(5 * c + k);
    s += CROCKFORD[v];
  }
  return s;
}

/** What a `subscribed` frame said about its subscription's records. */
interface Sub {
  channel: string;
  /** `<epoch>.<region>.`: the fixed part of its cursors. */
  prefix: string;
  region: string;
}

const EPOCH = /^[0-9a-z]{1,32}$/;
const REGION = /^(?![0-9]+$)[a-z0-9-]{1,32}$/;

/** The frames of one binary message, and why reading stopped early, if it did. */
export interface CompactFrames {
  frames: ServerFrame[];
  /** The first frame that could not be read (the frames before it are in `frames`). */
  error?: string;
}

/** One connection's reader of compact server frames: it numbers subscriptions as the server did. */
export class CompactReader {
  private readonly subs = new Map<Int64, Sub>();

  /** Every frame of a binary message, as JSON v1 frames; a message of an unknown subscription (one the client left) is left out. */
  read(message: Uint8Array): CompactFrames {
    const frames: ServerFrame[] = [];
    try {
      const batch = new WireReader(message);
      while (batch.more) {
        const f = this.frame(batch.bytes());
        if (f) frames.push(f);
      }
      return { frames };
    } catch (e) {
      return { frames, error: e instanceof Error ? e.message : String(e) };
    }
  }

  /** One frame; undefined for a frame of a type this SDK does not know (ignored, as in JSON) or a message nobody reads. */
  private frame(bytes: Uint8Array): ServerFrame | undefined {
    const r = new WireReader(bytes);
    let kind: [string, Decoded] | undefined;
    while (r.more) {
      const { field, wire } = r.key();
      const spec = SERVER[field];
      if (!spec) {
        r.skip(wire);
        continue;
      }
      if (wire !== LEN) throw new WireError(`frame field ${field} has wire type ${wire}`);
      kind = [spec[0], decode(r.message(), spec[1])];
    }
    if (!kind) return undefined;
    const [type, f] = kind;
    if (type === 'message') return this.message(f);
    if (f.id !== undefined) f.id = (f.id as Decoded).value;
    if (f.id === undefined) delete f.id;
    if (type === 'subscribed') {
      const epoch = String(f.cursor_epoch);
      const region = String(f.cursor_region);
      if (!EPOCH.test(epoch) || !REGION.test(region)) throw new WireError(`subscribed: bad cursor epoch or region in ${JSON.stringify(f.cursor)}`);
      for (const [n, s] of this.subs) if (s.channel === f.channel) this.subs.delete(n);
      this.subs.set(f.sub as Int64, { channel: String(f.channel), prefix: `${epoch}.${region}.`, region });
      delete f.sub;
      delete f.cursor_epoch;
      delete f.cursor_region;
    } else if (type === 'unsubscribed') {
      for (const [n, s] of this.subs) if (s.channel === f.channel) this.subs.delete(n);
      if (f.code === '') delete f.code;
    } else if ((type === 'join' || type === 'leave') && f.member === undefined) {
      f.member = { connection_id: '', user: '' };
    }
    return { type, ...f } as ServerFrame;
  }

  private message(m: Decoded): ServerFrame | undefined {
    const sub = this.subs.get(m.sub as Int64);
    if (!sub) return undefined;
    if (m.id === undefined) throw new WireError('message without an id');
    const offset = m.offset as Int64;
    const next = typeof offset === 'number' ? offset + 1 : BigInt(offset) + 1n;
    if (next >= 2n ** 64n) throw new WireError('message offset out of range');
    let cursor = sub.prefix + String(next);
    const seen = new Set([sub.region]);
    for (const o of m.origins as Decoded[]) {
      const region = String(o.region);
      if (!REGION.test(region) || seen.has(region)) throw new WireError(`message names region ${JSON.stringify(region)} twice or badly`);
      seen.add(region);
      cursor += `.${region}.${String(o.next)}`;
    }
    cursor = (seen.size > 1 ? 'c2.' : 'c1.') + cursor;
    return { type: 'message', channel: sub.channel, id: m.id as string, cursor, ts: m.ts as number, data: m.data };
  }
}

// ---- encoding -----------------------------------------------------------------------------------

/** Writes `v` (an object of `schema`'s field names) in field order: defaults left out, optional fields whenever present. */
function encode(w: WireWriter, schema: Schema, v: Record<string, unknown>): void {
  for (const [n, [name, kind, flags]] of Object.entries(schema)) {
    const field = Number(n);
    const x = v[name];
    if (x === undefined || (flags !== 'o' && (x === 0 || x === '' || x === false))) continue;
    if (schema === REQUEST_ID && (field === 1) !== (typeof x === 'number' && Number.isInteger(x))) continue;
    if (kind === 'z') w.sint64(field, x as number);
    else if (kind === 'u') w.uint(field, x as Int64);
    else if (kind === 'b') w.bool(field, Boolean(x));
    else if (kind === 'd') w.double(field, Number(x));
    else if (kind === 's') w.string(field, String(x));
    else if (kind === 'j') {
      const json = JSON.stringify(x);
      if (json !== undefined) w.bytes(field, utf8Encode(json));
    } else if (typeof kind === 'object') {
      const m = new WireWriter();
      encode(m, kind, kind === REQUEST_ID ? { value: x } : (x as Record<string, unknown>));
      w.message(field, m);
    }
  }
}

/** A client frame in the compact encoding, length-prefixed (one frame of a batch). A `TypeError` for a type the schema lacks. */
export function encodeCompact(frame: ClientFrame): Uint8Array {
  const spec = CLIENT[frame.type];
  if (!spec) throw new TypeError(`no compact form for a ${frame.type} frame`);
  const body = new WireWriter();
  encode(body, spec[1], frame);
  const w = new WireWriter();
  w.message(spec[0], body);
  return delimited(w);
}
