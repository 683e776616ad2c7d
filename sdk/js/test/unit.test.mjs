// Unit tests of the SDK's pieces and of the client's state machine against fake transports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff, Cursors, Dedupe, HeraldClient, parseBatch } from '../dist/index.js';

test('a batched message splits into frames; empty lines are skipped and garbage is reported, not fatal', () => {
  const b = parseBatch('{"type":"ping"}\n\n{"type":"message","id":"a"}\nnot json\n[1]\n{"no":"type"}\n');
  assert.deepEqual(b.frames.map((f) => f.type), ['ping', 'message']);
  assert.equal(b.errors.length, 3);
  assert.deepEqual(parseBatch('{"type":"pong"}').frames, [{ type: 'pong' }], 'a single frame without its newline parses too');
});

test('backoff: full jitter below an exponential ceiling, capped, reset by a stable connection, overridden by the server', () => {
  let r = 0.999999;
  const b = new Backoff({ baseMs: 100, capMs: 1000, random: () => r });
  assert.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()], [99, 199, 399, 799, 999, 999]);
  r = 0;
  assert.equal(b.next(), 0, 'full jitter reaches zero');
  b.reset();
  r = 0.5;
  assert.equal(b.next(), 50);
  assert.equal(b.hinted(1830), 1830, 'the reconnect hint wins');
  assert.equal(b.attempts, 2);
  for (let i = 0; i < 1000; i++) {
    const x = new Backoff({ baseMs: 500, capMs: 30000 });
    for (let n = 0; n < 10; n++) {
      const d = x.next();
      assert.ok(d >= 0 && d < Math.min(30000, 500 * 2 ** n), `attempt ${n}: ${d}`);
    }
  }
});

test('dedupe remembers the last N ids of a channel', () => {
  const d = new Dedupe(3);
  assert.equal(d.first('a'), true);
  assert.equal(d.first('a'), false);
  d.first('b');
  d.first('c');
  d.first('d');
  assert.equal(d.size, 3);
  assert.equal(d.first('a'), true, 'a fell out of the window');
  assert.equal(d.first('d'), false);
  const big = new Dedupe(1000);
  for (let i = 0; i < 20000; i++) big.first(String(i));
  assert.equal(big.size, 1000);
  assert.equal(big.first('19999'), false);
  assert.equal(big.first('18999'), true);
});

test('cursor bookkeeping: a resume keeps the stored cursor until records move it; a lost history takes the reply', () => {
  const c = new Cursors();
  c.subscribed('a', 'c1.e.r.5');
  assert.equal(c.get('a'), 'c1.e.r.5', 'a fresh subscription starts at the reply');
  c.processed('a', 'c1.e.r.7');
  c.subscribed('a', 'c1.e.r.9');
  assert.equal(c.get('a'), 'c1.e.r.7', 'a resume reply does not skip the records still to come');
  c.subscribed('a', 'c1.e.r.9', true);
  assert.equal(c.get('a'), 'c1.e.r.9', 'recovered:false: that history is gone');
  c.processed('b', 'c1.e.r.7');
  assert.deepEqual(c.list(['a', 'b', 'x']), ['c1.e.r.9', 'c1.e.r.7']);
  assert.deepEqual(c.list(['b', 'a', 'b']), ['c1.e.r.7', 'c1.e.r.9']);
  c.forget('a');
  assert.equal(c.get('a'), undefined);
});

// ---- the client against fake transports ------------------------------------------------------

class FakeWs {
  static all = [];
  constructor(url, proto) {
    Object.assign(this, { url, proto, sent: [], readyState: 0, closedByClient: null });
    FakeWs.all.push(this);
    queueMicrotask(() => {
      if (this.refuse) return this.onclose?.({ code: 1006, reason: '' });
      this.readyState = 1;
      this.onopen?.();
    });
  }
  send(d) {
    this.sent.push(...d.split('\n').filter(Boolean).map((l) => JSON.parse(l)));
  }
  close(code) {
    this.closedByClient = code;
  }
  frames(...fs) {
    this.onmessage?.({ data: fs.map((f) => JSON.stringify(f)).join('\n') + '\n' });
  }
  drop(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code, reason: '' });
  }
  static last() {
    return FakeWs.all[FakeWs.all.length - 1];
  }
}

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));
async function until(cond, what) {
  for (let i = 0; i < 400; i++) {
    if (cond()) return;
    await tick();
  }
  assert.fail(`timed out waiting for ${what}`);
}

function client(opts = {}) {
  FakeWs.all = [];
  const states = [];
  const c = new HeraldClient({
    url: 'http://herald.test',
    token: 't0',
    backoff: { baseMs: 1, capMs: 4 },
    environment: { WebSocket: FakeWs, ...(opts.env ?? {}) },
    ...opts,
  });
  c.on('state', (s) => states.push(s.state));
  return { c, states };
}

const welcome = { type: 'welcome', connection_id: 'k', heartbeat_ms: 25000, protocol: 1 };
const msg = (channel, id, cursor, data = {}) => ({ type: 'message', channel, id, cursor, ts: 1, data });

test('connects with the auth frame first, subscribes, delivers, and resumes from the cursor after a cut without repeats', async () => {
  const { c, states } = client();
  const got = [];
  c.subscribe('incidents', (m) => got.push(m.data.n));
  await until(() => FakeWs.all.length === 1 && FakeWs.last().sent.length === 1, 'auth');
  const ws = FakeWs.last();
  assert.equal(ws.url, 'ws://herald.test/v1/ws');
  assert.deepEqual(ws.sent[0], { type: 'auth', token: 't0' });
  ws.frames(welcome);
  assert.deepEqual(ws.sent[1], { type: 'subscribe', id: ws.sent[1].id, channel: 'incidents' });
  ws.frames({ type: 'subscribed', id: ws.sent[1].id, channel: 'incidents', cursor: 'c1.e.r.4', recovered: false }, msg('incidents', 'm1', 'c1.e.r.5', { n: 1 }), msg('incidents', 'm2', 'c1.e.r.6', { n: 2 }));
  assert.equal(c.state, 'connected');
  ws.drop();
  await until(() => FakeWs.all.length === 2 && FakeWs.last().sent.length === 1, 'the reconnect');
  const ws2 = FakeWs.last();
  ws2.frames(welcome);
  assert.equal(c.state, 'recovering');
  assert.equal(ws2.sent[1].since, 'c1.e.r.6', 'resumes after the last record processed');
  // The server resends m2 (at-least-once): it is dropped.
  ws2.frames({ type: 'subscribed', id: ws2.sent[1].id, channel: 'incidents', cursor: 'c1.e.r.9', recovered: true }, msg('incidents', 'm2', 'c1.e.r.6', { n: 2 }), msg('incidents', 'm3', 'c1.e.r.7', { n: 3 }));
  assert.deepEqual(got, [1, 2, 3]);
  assert.equal(c.state, 'connected');
  assert.equal(c.cursorOf('incidents'), 'c1.e.r.7');
  assert.deepEqual(states.slice(0, 2), ['connecting', 'connected']);
  assert.ok(states.includes('disconnected') && states.includes('recovering'));
  c.close();
});

test('a history past retention is reported, and the next resume starts from the server position', async () => {
  const { c } = client();
  const lost = [];
  c.on('recovery_failed', (e) => lost.push(e.channel));
  c.subscribe('a', () => {}, { since: 'c1.old.r.1' });
  await until(() => FakeWs.last()?.sent.length === 1, 'auth');
  const ws = FakeWs.last();
  ws.frames(welcome);
  assert.equal(ws.sent[1].since, 'c1.old.r.1');
  ws.frames({ type: 'subscribed', id: ws.sent[1].id, channel: 'a', cursor: 'c1.new.r.50', recovered: false });
  assert.deepEqual(lost, ['a']);
  assert.equal(c.cursorOf('a'), 'c1.new.r.50');
  c.close();
});

test('nothing heard for two heartbeats: the connection is dropped and reopened', async () => {
  const { c } = client();
  c.subscribe('a', () => {});
  await until(() => FakeWs.last()?.sent.length === 1, 'auth');
  FakeWs.last().frames({ ...welcome, heartbeat_ms: 10 });
  await until(() => FakeWs.all.length === 2, 'a reconnect after 20 ms of silence');
  assert.equal(FakeWs.all[0].closedByClient, 1000);
  c.close();
});

test('server pings are answered; the reconnect hint sets the delay', async () => {
  const { c } = client();
  await until(() => FakeWs.last()?.sent.length === 1, 'auth');
  const ws = FakeWs.last();
  ws.frames(welcome, { type: 'ping' });
  assert.deepEqual(ws.sent.at(-1), { type: 'pong' });
  ws.frames({ type: 'reconnect', after_ms: 60, reason: 'drain' });
  const at = Date.now();
  ws.drop(1001);
  await until(() => FakeWs.all.length === 2, 'the reconnect');
  assert.ok(Date.now() - at >= 55, 'waited for after_ms');
  c.close();
});

test('a refused token is fetched again once; a second refusal fails the client', async () => {
  let n = 0;
  const { c, states } = client({ token: async () => `tok${n++}` });
  await until(() => FakeWs.last()?.sent.length === 1, 'auth');
  assert.equal(FakeWs.last().sent[0].token, 'tok0');
  FakeWs.last().drop(4002);
  await until(() => FakeWs.all.length === 2 && FakeWs.last().sent.length === 1, 'a reconnect with a new token');
  assert.equal(FakeWs.last().sent[0].token, 'tok1');
  FakeWs.last().drop(4001);
  await tick(20);
  assert.equal(c.state, 'failed');
  assert.equal(FakeWs.all.length, 2);
  assert.equal(states.at(-1), 'failed');
});

test('token_expiring: the token function is called and the new token goes in a refresh frame', async () => {
  let n = 0;
  const { c } = client({ token: async () => `tok${n++}` });
  const warned = [];
  c.on('token_expiring', (e) => warned.push(e.expiresAt));
  await until(() => FakeWs.last()?.sent.length === 1, 'auth');
  const ws = FakeWs.last();
  ws.frames(welcome, { type: 'token_expiring', expires_at: 99 });
  await until(() => ws.sent.some((f) => f.type === 'refresh'), 'the refresh frame');
  const refresh = ws.sent.find((f) => f.type === 'refresh');
  assert.equal(refresh.token, 'tok1');
  assert.deepEqual(warned, [99]);
  ws.frames({ type: 'refreshed', id: refresh.id, expires_at: 200 });
  c.close();
});

test('a shed low-priority subscription is resumed from its cursor on the same connection', async () => {
  const { c } = client();
  c.subscribe('telemetry', () => {});
  await until(() => FakeWs.last()?.sent.length === 1, 'auth');
  const ws = FakeWs.last();
  ws.frames(welcome);
  ws.frames({ type: 'subscribed', id: ws.sent[1].id, channel: 'telemetry', cursor: 'c1.e.r.1', recovered: false }, msg('telemetry', 'x', 'c1.e.r.2'));
  ws.frames({ type: 'unsubscribed', channel: 'telemetry', code: 'lagged' });
  assert.deepEqual({ ...ws.sent.at(-1), id: 0 }, { type: 'subscribe', id: 0, channel: 'telemetry', since: 'c1.e.r.2' });
  c.close();
});

test('publish and presence are requests matched by id; a refusal rejects with the code', async () => {
  const { c } = client();
  await until(() => FakeWs.last()?.sent.length === 1, 'auth');
  const ws = FakeWs.last();
  ws.frames(welcome);
  const p = c.publish('chat', { text: 'hi' }, { idempotencyKey: 'k1' });
  const f = ws.sent.at(-1);
  assert.deepEqual({ ...f, id: 0 }, { type: 'publish', id: 0, channel: 'chat', data: { text: 'hi' }, idempotency_key: 'k1' });
  ws.frames({ type: 'published', id: f.id, channel: 'chat', cursor: 'c1.e.r.3', message_id: 'M', duplicate: false });
  assert.deepEqual(await p, { cursor: 'c1.e.r.3', messageId: 'M', duplicate: false });
  const q = c.presence('secret');
  ws.frames({ type: 'error', id: ws.sent.at(-1).id, code: 'forbidden', message: 'no' });
  await assert.rejects(q, (e) => e.code === 'forbidden');
  c.close();
});

test('channel pause and resume use the protocol frames; after a reconnect a paused channel stays off the wire', async () => {
  const { c } = client();
  const sub = c.subscribe('map', () => {}, { maxRate: 2 });
  await until(() => FakeWs.last()?.sent.length === 1, 'auth');
  const ws = FakeWs.last();
  ws.frames(welcome);
  assert.equal(ws.sent[1].max_rate, 2);
  ws.frames({ type: 'subscribed', id: ws.sent[1].id, channel: 'map', cursor: 'c1.e.r.1', recovered: false });
  sub.pause();
  assert.equal(ws.sent.at(-1).type, 'pause');
  ws.frames({ type: 'paused', id: ws.sent.at(-1).id, channel: 'map', cursor: 'c1.e.r.1' });
  sub.resume();
  assert.equal(ws.sent.at(-1).type, 'resume');
  sub.pause();
  ws.drop();
  await until(() => FakeWs.all.length === 2 && FakeWs.last().sent.length === 1, 'the reconnect');
  FakeWs.last().frames(welcome);
  assert.equal(FakeWs.last().sent.length, 1, 'nothing subscribed while paused');
  sub.resume();
  assert.deepEqual({ ...FakeWs.last().sent.at(-1), id: 0 }, { type: 'subscribe', id: 0, channel: 'map', since: 'c1.e.r.1', max_rate: 2 });
  c.close();
});

test('app pause closes the connection and keeps cursors; resume reconnects and resumes', async () => {
  const { c, states } = client();
  c.subscribe('a', () => {});
  await until(() => FakeWs.last()?.sent.length === 1, 'auth');
  const ws = FakeWs.last();
  ws.frames(welcome, { type: 'subscribed', id: 2, channel: 'a', cursor: 'c1.e.r.8', recovered: false });
  c.pause('in the background');
  assert.equal(ws.closedByClient, 1000);
  assert.equal(c.state, 'disconnected');
  await tick(20);
  assert.equal(FakeWs.all.length, 1, 'no reconnect while paused');
  c.resume();
  await until(() => FakeWs.all.length === 2 && FakeWs.last().sent.length === 1, 'the reconnect');
  FakeWs.last().frames(welcome);
  assert.equal(FakeWs.last().sent[1].since, 'c1.e.r.8');
  assert.ok(states.includes('disconnected'));
  c.close();
});

class FakeEventSource {
  static all = [];
  constructor(url) {
    this.url = url;
    FakeEventSource.all.push(this);
  }
  close() {
    this.closed = true;
  }
  event(f) {
    this.onmessage?.({ data: JSON.stringify(f) });
  }
}

test('WebSockets blocked: falls back to SSE with every cursor, and tries the WebSocket again later', async () => {
  FakeEventSource.all = [];
  class Refused extends FakeWs {
    constructor(...a) {
      super(...a);
      this.refuse = Refused.refuse;
    }
  }
  Refused.refuse = true;
  const { c } = client({ env: { WebSocket: Refused, EventSource: FakeEventSource }, upgradeEveryMs: 50 });
  const got = [];
  c.subscribe('a', (m) => got.push(m.id), { since: 'c1.e.r.3' });
  c.subscribe('b', (m) => got.push(m.id), { since: 'c1.e.r.1' });
  await until(() => FakeEventSource.all.length === 1, 'the SSE fallback');
  assert.equal(c.transportKind, 'sse');
  const es = FakeEventSource.all[0];
  const u = new URL(es.url);
  assert.equal(u.pathname, '/v1/sse');
  assert.equal(u.searchParams.get('channels'), 'a,b');
  assert.equal(u.searchParams.get('since'), 'c1.e.r.3,c1.e.r.1', 'the server starts from the oldest');
  es.event(welcome);
  es.event({ type: 'subscribed', channel: 'a', cursor: 'c1.e.r.1', recovered: true });
  es.event({ type: 'subscribed', channel: 'b', cursor: 'c1.e.r.1', recovered: true });
  es.event(msg('a', 'm2', 'c1.e.r.2'));
  es.event(msg('b', 'm3', 'c1.e.r.3'));
  assert.equal(c.state, 'connected');
  assert.deepEqual(got, ['m2', 'm3']);
  assert.equal(c.cursorOf('a'), 'c1.e.r.3', 'one ordered stream: its position covers every channel');
  // The WebSocket works again: the next probe moves back to it.
  Refused.refuse = false;
  await until(() => c.transportKind === 'websocket' && FakeWs.last()?.sent.length === 1, 'the WebSocket probe');
  assert.ok(es.closed);
  FakeWs.last().frames(welcome);
  assert.deepEqual(FakeWs.last().sent.slice(1).map((f) => f.since), ['c1.e.r.3', 'c1.e.r.3']);
  c.close();
});
