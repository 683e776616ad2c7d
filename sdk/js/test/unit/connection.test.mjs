// The connection on its own, carrying a fake channel table, on fake transports and mocked timers:
// the fallback from WebSocket to SSE to long-poll and back, the backoff's jitter, heartbeats,
// tokens, and what it tells what it carries.
import { mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { Connection } from '../../dist/herald.js';
import { FakeEventSource, FakeWebSocket, advance, fakeFetch, settle, welcome } from './fakes.mjs';

/** A channel table standing in for the real one: it records the connection's calls and takes `message` frames. */
function fakeChannels(channels = ['a'], cursors = ['c1.e.r.1']) {
  const t = {
    calls: [],
    frames: [],
    replaying: false,
    streamRequest: () => ({ channels, cursors }),
    welcomed: (onWebSocket, replaying) => t.calls.push(`welcomed ${onWebSocket ? 'websocket' : 'stream'}${replaying ? ' replaying' : ''}`),
    disconnected: () => t.calls.push('disconnected'),
    onFrame(f) {
      t.frames.push(f.type);
      return f.type === 'message';
    },
  };
  return t;
}

/** A started connection on mocked timers, with its state changes (and their reasons) and other events. */
async function makeConnection(opts = {}, channels = fakeChannels()) {
  mock.timers.reset();
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_700_000_000_000 });
  FakeWebSocket.all = [];
  FakeEventSource.all = [];
  const { env, ...rest } = opts;
  const states = [];
  const events = [];
  const conn = new Connection(
    { url: 'https://herald.test', token: 't0', backoff: { baseMs: 100, capMs: 1000, random: () => 0.5 }, environment: { WebSocket: FakeWebSocket, ...(env ?? {}) }, ...rest },
    { emit: (event, value) => (event === 'state' ? states.push(`${value.state}: ${value.reason}`) : events.push([event, value])) },
  );
  conn.carry(channels);
  void conn.start();
  await settle();
  return { conn, channels, states, events };
}

function done(conn) {
  conn.close();
  mock.timers.reset();
}

/** Opens the last WebSocket and welcomes it. */
function acceptLast(extra = {}) {
  const ws = FakeWebSocket.last();
  ws.open();
  ws.receive(welcome(extra));
  return ws;
}

test('falls back WebSocket → SSE → long-poll after fallbackAfter failed opens of each; a refusal by the server does not count', async () => {
  const fetch = fakeFetch();
  const { conn, states } = await makeConnection({ env: { EventSource: FakeEventSource, fetch }, fallbackAfter: 2 });
  FakeWebSocket.last().open();
  FakeWebSocket.last().serverClose(4029, 'rate_limited');
  await advance(1000);
  assert.equal(conn.transportKind, 'websocket', 'the server was reached: the WebSocket works');
  FakeWebSocket.last().serverClose(1006);
  await advance(1000);
  assert.equal(conn.transportKind, 'websocket', 'one failure is not enough');
  FakeWebSocket.last().serverClose(1006);
  assert.match(states.at(-1), /^disconnected: .*; trying sse next$/);
  await advance(1000);
  assert.equal(FakeWebSocket.all.length, 3);
  const es = FakeEventSource.last();
  assert.equal(conn.transportKind, 'sse');
  assert.equal(es.url.searchParams.get('channels'), 'a', 'opened with what the channel table streams');
  assert.equal(es.url.searchParams.get('since'), 'c1.e.r.1');
  es.fail();
  await advance(1000);
  FakeEventSource.last().fail();
  assert.match(states.at(-1), /trying poll next$/);
  await advance(1000);
  const r = await fetch.next();
  assert.equal(r.url.pathname, '/v1/poll');
  assert.equal(conn.transportKind, 'poll');
  assert.equal(FakeEventSource.all.length, 2);
  done(conn);
});

test('transports the environment lacks are skipped: without EventSource the WebSocket falls back to long-poll', async () => {
  const fetch = fakeFetch();
  const { conn } = await makeConnection({ env: { fetch } });
  for (let i = 0; i < 2; i++) {
    FakeWebSocket.last().serverClose(1006);
    await advance(1000);
  }
  assert.equal((await fetch.next()).url.pathname, '/v1/poll');
  done(conn);
});

test('reconnect delays are full jitter: uniform in [0, min(cap, base·2^n)), and a connection that stayed up resets them', async () => {
  const draws = [0.1, 0.9, 0.5, 0.99, 0.3];
  const { conn } = await makeConnection({ backoff: { baseMs: 100, capMs: 400, random: () => draws.shift() }, fallbackAfter: 100, stableAfterMs: 5000 });
  // Ceilings 100, 200, 400, 400 (capped): the delays are the draws' share of them.
  for (const expected of [10, 180, 200, 396]) {
    const n = FakeWebSocket.all.length;
    FakeWebSocket.last().serverClose(1006);
    await advance(expected - 1);
    assert.equal(FakeWebSocket.all.length, n, `not before ${expected} ms`);
    await advance(1);
    assert.equal(FakeWebSocket.all.length, n + 1, `reopened after ${expected} ms`);
  }
  acceptLast();
  await advance(5000);
  FakeWebSocket.last().serverClose(1006);
  await advance(29);
  assert.equal(FakeWebSocket.all.length, 5);
  await advance(1);
  assert.equal(FakeWebSocket.all.length, 6, 'back to the first ceiling: 0.3 of 100 ms');
  done(conn);
});

test('the token: refreshed over the WebSocket on token_expiring; a refused one is fetched again at once, and a second refusal fails', async () => {
  let n = 0;
  const { conn, states, events } = await makeConnection({ token: async () => `tok${n++}` });
  await settle();
  const ws = acceptLast();
  assert.deepEqual(ws.sent[0], { type: 'auth', token: 'tok0' });
  ws.receive({ type: 'token_expiring', expires_at: 1_700_000_060 });
  await settle();
  const r = ws.lastSent('refresh');
  assert.deepEqual(r, { type: 'refresh', token: 'tok1', id: r.id });
  assert.deepEqual(events, [['token_expiring', { expiresAt: 1_700_000_060 }]]);
  ws.receive({ type: 'refreshed', id: r.id });
  ws.serverClose(4001, 'unauthorized');
  await advance(0);
  FakeWebSocket.last().open();
  assert.deepEqual(FakeWebSocket.last().sent[0], { type: 'auth', token: 'tok2' }, 'a new token, without waiting for the backoff');
  FakeWebSocket.last().serverClose(4002, 'token_expired');
  assert.equal(conn.state, 'failed');
  assert.match(states.at(-1), /^failed: the token expired$/);
  await advance(60_000);
  assert.equal(FakeWebSocket.all.length, 2);
  done(conn);
});

test('long-poll: a JWT is refreshed before it expires and used from the next request on', async () => {
  const jwt = (exp) => `h.${Buffer.from(JSON.stringify({ exp })).toString('base64url')}.s`;
  let n = 0;
  const fetch = fakeFetch();
  const { conn, states } = await makeConnection({ env: { fetch }, transports: ['poll'], token: async () => jwt(1_700_000_020 + 100 * n++) });
  (await fetch.next()).answer(200, { cursor: 'c1.e.r.1', recovered: true, messages: [] });
  const r2 = await fetch.next();
  await advance(10_000);
  r2.answer(200, { cursor: 'c1.e.r.1', messages: [] });
  assert.equal((await fetch.next()).url.searchParams.get('token'), jwt(1_700_000_120));
  assert.deepEqual(states, ['connecting: starting: opening poll', 'connected: connected over poll']);
  done(conn);
});

test('nothing heard for two heartbeats ends the link; pings are answered; no welcome within the connect timeout counts toward the fallback', async () => {
  const { conn, channels } = await makeConnection({ connectTimeoutMs: 3000, fallbackAfter: 1, env: { EventSource: FakeEventSource } });
  const ws = acceptLast({ heartbeat_ms: 1000 });
  ws.receive({ type: 'ping' });
  assert.deepEqual(ws.sent.at(-1), { type: 'pong' });
  await advance(1999);
  assert.equal(ws.closedWith, undefined);
  await advance(1);
  assert.equal(ws.closedWith, 1000, 'closed after 2 s of silence');
  assert.equal(conn.state, 'disconnected');
  assert.equal(conn.transportKind, 'websocket', 'a welcomed link that died is no reason to fall back');
  await advance(50);
  assert.equal(FakeWebSocket.all.length, 2);
  FakeWebSocket.last().open();
  await advance(3000);
  assert.equal(conn.transportKind, 'sse', 'no welcome in time: a failed open');
  assert.deepEqual(channels.calls, ['disconnected', 'welcomed websocket', 'disconnected', 'disconnected', 'disconnected']);
  done(conn);
});

test('what it carries: welcomed (replaying after a reconnect), disconnected, its frames; replies settle requests; recovering until nothing replays', async () => {
  const { conn, channels, states } = await makeConnection();
  const ws = acceptLast();
  assert.equal(conn.state, 'connected');
  const p = conn.request({ type: 'publish', channel: 'a', data: 1 }, 'publish on a');
  const f = ws.lastSent('publish');
  ws.receive({ type: 'message', channel: 'a', id: 'm', cursor: 'c' }, { type: 'published', id: f.id, cursor: 'c1.e.r.2', message_id: 'M' });
  assert.equal((await p).message_id, 'M', 'a frame the table does not take answers its request');
  assert.deepEqual(channels.frames, ['message', 'published']);
  const cut = conn.request({ type: 'presence', channel: 'a' }, 'presence of a');
  ws.serverClose(1006);
  await assert.rejects(cut, (e) => e.code === 'disconnected');
  channels.replaying = true;
  await advance(50);
  acceptLast();
  assert.equal(conn.state, 'recovering');
  channels.replaying = false;
  conn.settle('every channel resumed');
  assert.deepEqual(channels.calls, ['disconnected', 'welcomed websocket', 'disconnected', 'disconnected', 'welcomed websocket replaying']);
  assert.deepEqual(states.slice(-3), ['disconnected: closed (1006)', 'recovering: reconnecting: opening websocket', 'connected: every channel resumed']);
  done(conn);
});

test('on SSE the WebSocket is probed in the background; once welcomed the connection moves to it and the channels resume as after a reconnect', async () => {
  const { conn, channels } = await makeConnection({ env: { EventSource: FakeEventSource }, upgradeEveryMs: 30_000 });
  for (let i = 0; i < 2; i++) {
    FakeWebSocket.last().serverClose(1006);
    await advance(1000);
  }
  const es = FakeEventSource.last();
  es.event(welcome());
  assert.equal(conn.transportKind, 'sse');
  await advance(30_000);
  const probe = FakeWebSocket.last();
  assert.equal(FakeWebSocket.all.length, 3, 'a probe');
  probe.open();
  assert.ok(!es.closed, 'the stream stays up while the probe authenticates');
  probe.receive(welcome());
  assert.ok(es.closed);
  assert.equal(conn.transportKind, 'websocket');
  assert.equal(conn.state, 'connected');
  assert.deepEqual(channels.calls.slice(-2), ['disconnected', 'welcomed websocket replaying']);
  done(conn);
});

test('pause closes and stays closed; resume reopens; close is for good', async () => {
  const { conn } = await makeConnection();
  acceptLast();
  conn.pause('in the background');
  assert.equal(conn.mode, 'paused');
  assert.equal(FakeWebSocket.last().closedWith, 1000);
  await advance(60_000);
  assert.equal(FakeWebSocket.all.length, 1);
  conn.resume();
  await advance(0);
  assert.equal(FakeWebSocket.all.length, 2);
  conn.close();
  conn.resume();
  await advance(60_000);
  assert.equal(FakeWebSocket.all.length, 2);
  assert.equal(conn.mode, 'closed');
  done(conn);
});
