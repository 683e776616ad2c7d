// Fakes of what the environment provides (WebSocket, EventSource, fetch), driven by the tests,
// and helpers for a client on mocked timers.
import { mock } from 'node:test';
import assert from 'node:assert/strict';
import { HeraldClient } from '../../dist/herald.js';

/**
 * A WebSocket the test opens, feeds and closes. `sent` holds the client's text frames, parsed;
 * `binary` its binary messages, as hex.
 */
export class FakeWebSocket {
  static all = [];
  constructor(url, protocols) {
    Object.assign(this, { url, protocols, readyState: 0, sent: [], binary: [], closedWith: undefined, protocol: '', binaryType: 'blob' });
    this.onopen = this.onmessage = this.onerror = this.onclose = null;
    FakeWebSocket.all.push(this);
  }
  static last() {
    return FakeWebSocket.all.at(-1);
  }
  send(data) {
    assert.equal(this.readyState, 1, 'sent on an open socket');
    if (typeof data !== 'string') return void this.binary.push(Buffer.from(data).toString('hex'));
    this.raw = (this.raw ?? []).concat(data);
    for (const line of data.split('\n')) if (line) this.sent.push(JSON.parse(line));
  }
  close(code) {
    this.closedWith = code ?? 1005;
    this.readyState = 3;
  }
  // ---- the server's side
  /** Opens the socket; `protocol` is the subprotocol the server picked ('' for none). */
  open(protocol = '') {
    this.protocol = protocol;
    this.readyState = 1;
    this.onopen?.({});
  }
  receive(...frames) {
    this.onmessage?.({ data: frames.map((f) => (typeof f === 'string' ? f : JSON.stringify(f))).join('\n') + '\n' });
  }
  /** One binary message of the given hex-encoded frames (each already length-prefixed). */
  receiveBinary(...hexFrames) {
    const b = Buffer.from(hexFrames.join(''), 'hex');
    this.onmessage?.({ data: b.buffer.slice(b.byteOffset, b.byteOffset + b.length) });
  }
  serverClose(code = 1006, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  /** The last frame the client sent of `type`. */
  lastSent(type) {
    return this.sent.filter((f) => f.type === type).at(-1);
  }
}

/** An EventSource: `event(frame)` delivers one `data:` event; `fail()` is a network error. */
export class FakeEventSource {
  static all = [];
  constructor(url) {
    this.url = new URL(url);
    this.closed = false;
    this.onmessage = this.onerror = null;
    this.listeners = {};
    FakeEventSource.all.push(this);
  }
  static last() {
    return FakeEventSource.all.at(-1);
  }
  close() {
    this.closed = true;
  }
  addEventListener(type, f) {
    (this.listeners[type] ??= []).push(f);
  }
  event(frame) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  /** A named event (`event: <type>`). */
  named(type, frame) {
    for (const f of this.listeners[type] ?? []) f({ data: JSON.stringify(frame) });
  }
  fail() {
    this.onerror?.({});
  }
}

/**
 * A fetch whose requests wait in `pending` until the test answers them:
 * `(await fetch.next()).answer(status, body)`.
 */
export function fakeFetch() {
  const pending = [];
  const waiters = [];
  const f = (url, init = {}) =>
    new Promise((resolve, reject) => {
      const req = {
        url: new URL(url),
        init,
        answer(status, body) {
          resolve({ status, text: async () => (typeof body === 'string' ? body : JSON.stringify(body)) });
        },
        fail(e = new TypeError('network error')) {
          reject(e);
        },
      };
      init.signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
      const w = waiters.shift();
      if (w) w(req);
      else pending.push(req);
    });
  f.next = () => (pending.length > 0 ? Promise.resolve(pending.shift()) : new Promise((r) => waiters.push(r)));
  f.pending = pending;
  return f;
}

/** Lets promise callbacks run (the client's async steps), without moving the mocked clock. */
export async function settle() {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

/** Moves the mocked clock and lets what it fired run. */
export async function advance(ms) {
  await settle();
  mock.timers.tick(ms);
  await settle();
}

export const welcome = (extra = {}) => ({ type: 'welcome', connection_id: 'k1', node: 'edge-1', region: 'local', heartbeat_ms: 25000, protocol: 1, ...extra });
export const message = (channel, id, cursor, data = {}) => ({ type: 'message', channel, id, cursor, ts: 1763996400123, data });

/**
 * A client on fake constructors and mocked timers (randomness pinned to the middle), with its
 * `state` events in `states`, its errors in `errors`, lost histories in `lost`.
 */
export function makeClient(opts = {}) {
  mock.timers.reset();
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_700_000_000_000 });
  FakeWebSocket.all = [];
  FakeEventSource.all = [];
  const { env, ...rest } = opts;
  const c = new HeraldClient({
    url: 'https://herald.test',
    token: 't0',
    backoff: { baseMs: 100, capMs: 1000, random: () => 0.5 },
    environment: { WebSocket: FakeWebSocket, ...(env ?? {}) },
    ...rest,
  });
  const states = [];
  const errors = [];
  const lost = [];
  c.on('state', (s) => states.push(s.state));
  c.on('error', (e) => errors.push(e.code));
  c.on('recovery_failed', (e) => lost.push(e.channel));
  return { c, states, errors, lost };
}

/** Waits for the client's next WebSocket, opens it, checks the auth frame, sends `welcome`. */
export async function accept(token = 't0', welcomeExtra = {}) {
  await advance(0);
  const ws = FakeWebSocket.last();
  assert.ok(ws, 'a WebSocket was opened');
  ws.open();
  assert.deepEqual(ws.sent[0], { type: 'auth', token });
  ws.receive(welcome(welcomeExtra));
  return ws;
}

/** Answers the client's last `subscribe` of `channel` on `ws`. */
export function answerSubscribe(ws, channel, cursor = 'c1.e.r.0', recovered = false) {
  const s = ws.sent.filter((f) => f.type === 'subscribe' && f.channel === channel).at(-1);
  assert.ok(s, `a subscribe to ${channel}`);
  ws.receive({ type: 'subscribed', id: s.id, channel, cursor, recovered });
}

/** Ends the test's client and mocked timers. */
export function done(c) {
  c.close();
  mock.timers.reset();
}

/**
 * Protobuf written by hand for the server's side of compact-encoding tests (independent of the
 * SDK's writer): `pb.frame(kind, ...fields)` is one length-prefixed `ServerFrame`, as hex.
 */
export const pb = {
  varint(n) {
    let v = BigInt(n);
    const out = [];
    for (; v >= 0x80n; v >>= 7n) out.push(Number(v & 0x7fn) | 0x80);
    out.push(Number(v));
    return Buffer.from(out);
  },
  vi: (field, n) => Buffer.concat([pb.varint(field * 8), pb.varint(n)]),
  ld: (field, b) => Buffer.concat([pb.varint(field * 8 + 2), pb.varint(Buffer.from(b).length), Buffer.from(b)]),
  id: (n) => pb.ld(1, pb.vi(1, n >= 0 ? 2 * n : -2 * n - 1)),
  frame(kind, ...fields) {
    const body = pb.ld(kind, Buffer.concat(fields));
    return Buffer.concat([pb.varint(body.length), body]).toString('hex');
  },
  welcome: (heartbeatMs = 25000) => pb.frame(2, pb.ld(1, 'k1'), pb.ld(2, 'edge-1'), pb.ld(3, 'r'), pb.vi(4, heartbeatMs), pb.vi(5, 1)),
  /** `subscribed` numbering the subscription `sub`, its cursors `c1.e.r.<n>`. */
  subscribed: (id, channel, sub, cursor = 'c1.e.r.0', recovered = false) =>
    pb.frame(3, pb.id(id), pb.ld(2, channel), pb.ld(3, cursor), pb.vi(4, recovered ? 1 : 0), pb.vi(5, sub), pb.ld(6, 'e'), pb.ld(7, 'r')),
  /** A record of subscription `sub` at `offset` (its cursor: `c1.e.r.<offset + 1>`). */
  message: (sub, offset, id, data = {}) => pb.frame(1, pb.vi(1, sub), pb.vi(2, offset), pb.ld(5, id), pb.vi(6, 1763996400123), pb.ld(7, JSON.stringify(data))),
};
