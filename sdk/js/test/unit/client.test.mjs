// The client's state machine against fake WebSockets on mocked timers: auth, subscribe and
// resume, dedupe, heartbeats, close codes, backoff and the server's hint, tokens, requests,
// channel and app pause.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HeraldClient, HeraldError } from '../../dist/herald.js';
import { FakeWebSocket, accept, advance, answerSubscribe, done, makeClient, message, settle } from './fakes.mjs';

test('auth goes in the first frame (never the URL); subscribe after welcome; records reach their handler', async () => {
  const { c, states } = makeClient();
  const got = [];
  const sub = c.subscribe('incidents', (m) => got.push(m), { presence: true, maxRate: 2 });
  await settle();
  const ws = FakeWebSocket.last();
  assert.equal(ws.url, 'wss://herald.test/v1/ws', 'no token in the URL');
  assert.equal(ws.protocols, 'herald.v1.json');
  assert.equal(c.state, 'connecting');
  ws.open();
  assert.deepEqual(ws.sent, [{ type: 'auth', token: 't0' }]);
  assert.equal(ws.raw[0], '{"type":"auth","token":"t0"}\n', 'frames are newline-terminated');
  ws.receive({ type: 'welcome', connection_id: 'k', heartbeat_ms: 25000, protocol: 1 });
  const s = ws.lastSent('subscribe');
  assert.deepEqual(s, { type: 'subscribe', channel: 'incidents', presence: true, max_rate: 2, id: s.id });
  assert.equal(c.state, 'connected');
  ws.receive({ type: 'subscribed', id: s.id, channel: 'incidents', cursor: 'c1.e.r.4', recovered: false });
  assert.equal(sub.cursor, 'c1.e.r.4', 'before the first record, the subscribed cursor');
  ws.receive(message('incidents', 'm1', 'c1.e.r.5', { n: 1 }), message('other', 'x', 'c1.e.r.6'));
  assert.deepEqual(got, [{ channel: 'incidents', id: 'm1', cursor: 'c1.e.r.5', ts: 1763996400123, data: { n: 1 } }]);
  assert.equal(sub.cursor, 'c1.e.r.5');
  assert.deepEqual(states, ['connecting', 'connected']);
  done(c);
});

test('tokenInQuery puts the token in ?token= and sends no auth frame', async () => {
  const { c } = makeClient({ url: 'http://127.0.0.1:8080/', tokenInQuery: true, token: 'a b' });
  await settle();
  const ws = FakeWebSocket.last();
  assert.equal(ws.url, 'ws://127.0.0.1:8080/v1/ws?token=a%20b');
  ws.open();
  assert.deepEqual(ws.sent, []);
  done(c);
});

test('a cut connection resumes every channel from its cursor; a record resent by the server is dropped; dedupe is per channel', async () => {
  const { c, states } = makeClient();
  const got = [];
  c.subscribe('a', (m) => got.push(`a:${m.id}`));
  c.subscribe('b', (m) => got.push(`b:${m.id}`));
  const ws = await accept();
  const [sa, sb] = ws.sent.filter((f) => f.type === 'subscribe');
  ws.receive({ type: 'subscribed', id: sa.id, channel: 'a', cursor: 'c1.e.r.1', recovered: false }, { type: 'subscribed', id: sb.id, channel: 'b', cursor: 'c1.e.r.1', recovered: false });
  ws.receive(message('a', 'm1', 'c1.e.r.2'), message('b', 'm1', 'c1.e.r.3'), message('a', 'm2', 'c1.e.r.4'));
  assert.deepEqual(got, ['a:m1', 'b:m1', 'a:m2'], 'the same id on two channels is two records');
  ws.serverClose(1006);
  assert.equal(c.state, 'disconnected');
  await advance(50); // backoff: random 0.5 of 100 ms
  const ws2 = await accept();
  assert.equal(c.state, 'recovering', 'welcome, but the channels are not resumed yet');
  const resumes = ws2.sent.filter((f) => f.type === 'subscribe');
  assert.deepEqual(resumes.map((f) => [f.channel, f.since]), [['a', 'c1.e.r.4'], ['b', 'c1.e.r.3']]);
  ws2.receive({ type: 'subscribed', id: resumes[0].id, channel: 'a', cursor: 'c1.e.r.9', recovered: true });
  assert.equal(c.state, 'recovering', 'b is still being resumed');
  ws2.receive({ type: 'subscribed', id: resumes[1].id, channel: 'b', cursor: 'c1.e.r.9', recovered: true });
  assert.equal(c.state, 'connected');
  ws2.receive(message('a', 'm2', 'c1.e.r.4'), message('a', 'm3', 'c1.e.r.5'), message('b', 'm4', 'c1.e.r.6'));
  assert.deepEqual(got, ['a:m1', 'b:m1', 'a:m2', 'a:m3', 'b:m4'], 'm2 again (at-least-once) is dropped');
  assert.deepEqual(states, ['connecting', 'connected', 'disconnected', 'recovering', 'connected']);
  done(c);
});

test('a duplicate beyond the dedupe window would pass: the window is the configured size, per channel', async () => {
  const { c } = makeClient({ dedupeWindow: 2 });
  const got = [];
  c.subscribe('a', (m) => got.push(m.id));
  const ws = await accept();
  answerSubscribe(ws, 'a');
  ws.receive(message('a', '1', 'c1.e.r.1'), message('a', '2', 'c1.e.r.2'), message('a', '2', 'c1.e.r.2'), message('a', '3', 'c1.e.r.3'), message('a', '1', 'c1.e.r.1'));
  assert.deepEqual(got, ['1', '2', '3', '1']);
  done(c);
});

test('recovered:false on a resume emits recovery_failed with the channel and continues from the server position', async () => {
  const { c, lost } = makeClient();
  const sub = c.subscribe('a', () => {}, { since: 'c1.old.r.1' });
  c.subscribe('fresh', () => {});
  const ws = await accept();
  const [sa, sf] = ws.sent.filter((f) => f.type === 'subscribe');
  assert.equal(sa.since, 'c1.old.r.1', 'a stored cursor is passed as since');
  assert.equal(sf.since, undefined);
  ws.receive({ type: 'subscribed', id: sa.id, channel: 'a', cursor: 'c1.new.r.50', recovered: false });
  ws.receive({ type: 'subscribed', id: sf.id, channel: 'fresh', cursor: 'c1.new.r.50', recovered: false });
  assert.deepEqual(lost, ['a'], 'a fresh subscription is never "recovered"; that is not a loss');
  assert.equal(sub.cursor, 'c1.new.r.50');
  done(c);
});

test('a bad line in a batch is an error event; the frames around it are processed', async () => {
  const { c, errors } = makeClient();
  const got = [];
  c.subscribe('a', (m) => got.push(m.id));
  const ws = await accept();
  answerSubscribe(ws, 'a');
  ws.receive(message('a', 'm1', 'c1.e.r.1'), '{"type":', message('a', 'm2', 'c1.e.r.2'), '"text"', { type: 'message', channel: 'a', data: 1 });
  ws.onmessage({ data: new ArrayBuffer(1) });
  assert.deepEqual(got, ['m1', 'm2']);
  assert.deepEqual(errors, ['bad_request', 'bad_request', 'bad_request', 'bad_request']);
  assert.equal(c.state, 'connected');
  done(c);
});

test('pings are answered; nothing heard for two heartbeats is a dead connection', async () => {
  const { c } = makeClient();
  c.subscribe('a', () => {});
  const ws = await accept('t0', { heartbeat_ms: 1000 });
  ws.receive({ type: 'ping' });
  assert.deepEqual(ws.sent.at(-1), { type: 'pong' });
  await advance(1500);
  ws.receive({ type: 'ping' }); // heard: the watch starts again
  await advance(1500);
  assert.equal(FakeWebSocket.all.length, 1, 'alive after 3 s with a frame in the middle');
  await advance(600);
  assert.equal(ws.closedWith, 1000, 'closed by the client after 2 s of silence');
  assert.equal(c.state, 'disconnected');
  await advance(50);
  assert.equal(FakeWebSocket.all.length, 2, 'and reopened');
  done(c);
});

test('no welcome within the connect timeout counts as a failed attempt', async () => {
  const { c } = makeClient({ connectTimeoutMs: 5000 });
  await settle();
  await advance(4999);
  assert.equal(FakeWebSocket.all.length, 1);
  await advance(1);
  assert.equal(FakeWebSocket.all[0].closedWith, 1000);
  assert.equal(c.state, 'disconnected');
  done(c);
});

test('reconnect frame: the client closes at once and comes back after after_ms', async () => {
  const { c } = makeClient();
  const ws = await accept();
  ws.receive({ type: 'reconnect', after_ms: 1830, reason: 'drain' });
  assert.equal(ws.closedWith, 1000);
  assert.equal(c.state, 'disconnected');
  await advance(1829);
  assert.equal(FakeWebSocket.all.length, 1);
  await advance(1);
  assert.equal(FakeWebSocket.all.length, 2);
  done(c);
});

test('close codes: 1008 fails for good; 4029 backs off without falling back; 4008 comes back within a second; 1001 reconnects', async () => {
  {
    const { c, states } = makeClient();
    const ws = await accept();
    ws.receive({ type: 'error', code: 'forbidden', message: 'this origin may not connect to this account' });
    ws.serverClose(1008, 'forbidden');
    assert.equal(c.state, 'failed');
    await advance(60_000);
    assert.equal(FakeWebSocket.all.length, 1, 'no reconnect after failed');
    assert.equal(states.at(-1), 'failed');
    assert.throws(() => c.subscribe('a', () => {}), HeraldError);
    done(c);
  }
  {
    const { c } = makeClient({ fallbackAfter: 2 });
    for (let i = 0; i < 4; i++) {
      await settle();
      FakeWebSocket.last().open();
      FakeWebSocket.last().serverClose(4029, 'rate_limited');
      await advance(1000);
    }
    assert.equal(FakeWebSocket.all.length, 5, 'refused by a limit four times: still on the WebSocket (the server was reached)');
    assert.equal(c.transportKind, 'websocket');
    done(c);
  }
  {
    const { c } = makeClient({ backoff: { baseMs: 10_000, capMs: 30_000, random: () => 0.99 } });
    const ws = await accept();
    ws.serverClose(4008, 'lagged');
    await advance(1000);
    assert.equal(FakeWebSocket.all.length, 2, 'lagged: back within a second, whatever the backoff');
    const ws2 = await accept();
    ws2.serverClose(1001, 'drain');
    await advance(19_799);
    assert.equal(FakeWebSocket.all.length, 2, 'a drain without a hint: the backoff (second attempt: 0.99 of 20 s)');
    await advance(1);
    assert.equal(FakeWebSocket.all.length, 3);
    done(c);
  }
});

test('backoff grows over failed attempts and resets once a connection stayed up', async () => {
  const { c } = makeClient({ backoff: { baseMs: 100, capMs: 100_000, random: () => 0.999 }, stableAfterMs: 10_000, fallbackAfter: 100 });
  await settle();
  const delays = [];
  for (let i = 0; i < 4; i++) {
    FakeWebSocket.last().serverClose(1006);
    const n = FakeWebSocket.all.length;
    let waited = 0;
    while (FakeWebSocket.all.length === n) {
      await advance(10);
      waited += 10;
    }
    delays.push(waited);
  }
  assert.deepEqual(delays, [100, 200, 400, 800]);
  const ws = await accept();
  await advance(10_000);
  ws.serverClose(1006);
  await advance(99);
  assert.equal(FakeWebSocket.all.length, 6, 'after a stable connection, the first delay again');
  done(c);
});

test('a refused or expired token: the token function is asked again, once; a second refusal fails', async () => {
  let n = 0;
  const { c, states } = makeClient({ token: async () => `tok${n++}` });
  c.subscribe('a', () => {});
  const ws = await accept('tok0');
  ws.receive({ type: 'error', code: 'token_expired', message: 'token has expired' });
  ws.serverClose(4002, 'token_expired');
  const ws2 = await accept('tok1');
  assert.equal(FakeWebSocket.all.length, 2, 'at once, with a new token');
  ws2.serverClose(4001, 'unauthorized');
  const ws3 = await accept('tok2');
  ws3.serverClose(4001, 'unauthorized');
  // A refusal after a welcome starts the count again; two in a row without one fail.
  await advance(0);
  const ws4 = FakeWebSocket.last();
  ws4.open();
  assert.deepEqual(ws4.sent[0], { type: 'auth', token: 'tok3' });
  ws4.serverClose(4001, 'unauthorized');
  await advance(60_000);
  assert.equal(c.state, 'failed');
  assert.equal(states.at(-1), 'failed');
  assert.equal(FakeWebSocket.all.length, 4);
  done(c);
});

test('a fixed token refused fails at once', async () => {
  const { c } = makeClient({ token: 'fixed' });
  await settle();
  FakeWebSocket.last().open();
  FakeWebSocket.last().serverClose(4001, 'unauthorized');
  assert.equal(c.state, 'failed');
  done(c);
});

test('token_expiring: a new token from the function goes in a refresh request', async () => {
  let n = 0;
  const { c, errors } = makeClient({ token: async () => `tok${n++}` });
  const warned = [];
  c.on('token_expiring', (e) => warned.push(e.expiresAt));
  const ws = await accept('tok0');
  ws.receive({ type: 'token_expiring', expires_at: 1_700_000_060 });
  await settle();
  const r = ws.lastSent('refresh');
  assert.deepEqual(r, { type: 'refresh', token: 'tok1', id: r.id });
  assert.deepEqual(warned, [1_700_000_060]);
  ws.receive({ type: 'refreshed', id: r.id, expires_at: 1_700_003_600 });
  ws.receive({ type: 'token_expiring', expires_at: 1_700_003_600 });
  await settle();
  const r2 = ws.lastSent('refresh');
  ws.receive({ type: 'error', id: r2.id, code: 'forbidden', message: 'a refreshed token must belong to the same account' });
  await settle();
  assert.deepEqual(errors, ['forbidden'], 'a refused refresh is reported');
  assert.equal(c.state, 'connected');
  done(c);
});

test('a shed low-priority subscription (unsubscribed lagged) is resumed from its cursor on the same connection; other ends are final', async () => {
  const { c, errors } = makeClient();
  const ended = [];
  c.subscribe('telemetry', () => {});
  c.subscribe('secret', () => {}, { onEnd: (code) => ended.push(code) });
  const ws = await accept();
  const s = ws.lastSent('subscribe');
  ws.receive({ type: 'subscribed', id: s.id - 1, channel: 'telemetry', cursor: 'c1.e.r.1', recovered: false }, message('telemetry', 'x', 'c1.e.r.2'));
  ws.receive({ type: 'unsubscribed', channel: 'telemetry', code: 'lagged' });
  const again = ws.lastSent('subscribe');
  assert.deepEqual(again, { type: 'subscribe', channel: 'telemetry', since: 'c1.e.r.2', id: again.id });
  ws.receive({ type: 'unsubscribed', channel: 'secret', code: 'forbidden' });
  assert.deepEqual(ended, ['forbidden']);
  assert.deepEqual(errors, ['forbidden']);
  ws.serverClose(1006);
  await advance(50);
  const ws2 = await accept();
  assert.deepEqual(ws2.sent.filter((f) => f.type === 'subscribe').map((f) => f.channel), ['telemetry'], 'the ended channel is gone');
  done(c);
});

test('requests: replies matched by id; refusals reject with the code; no reply rejects with timeout; a cut rejects with disconnected', async () => {
  const { c } = makeClient({ requestTimeoutMs: 5000 });
  const ws = await accept();
  const p = c.publish('chat', { text: 'hi' }, { idempotencyKey: 'k1' });
  const f = ws.lastSent('publish');
  assert.deepEqual(f, { type: 'publish', channel: 'chat', data: { text: 'hi' }, idempotency_key: 'k1', id: f.id });
  ws.receive({ type: 'published', id: f.id, channel: 'chat', cursor: 'c1.e.r.3', message_id: 'M', duplicate: true });
  assert.deepEqual(await p, { cursor: 'c1.e.r.3', messageId: 'M', duplicate: true });
  const q = c.presence('room');
  await settle();
  const pr = ws.lastSent('presence');
  ws.receive({ type: 'presence', id: pr.id, channel: 'room', occupancy: 1, members: [{ connection_id: 'k', user: 'u' }] });
  assert.deepEqual(await q, { channel: 'room', occupancy: 1, members: [{ connection_id: 'k', user: 'u' }] });
  const refused = c.presence('secret');
  await settle();
  ws.receive({ type: 'error', id: ws.lastSent('presence').id, code: 'forbidden', message: 'no' });
  await assert.rejects(refused, (e) => e instanceof HeraldError && e.code === 'forbidden');
  const slow = c.publish('chat', 1);
  await advance(5000);
  await assert.rejects(slow, (e) => e.code === 'timeout' && /no reply to publish on chat within 5000 ms/.test(e.message));
  const cut = c.publish('chat', 2);
  ws.serverClose(1006);
  await assert.rejects(cut, (e) => e.code === 'disconnected');
  await assert.rejects(c.publish('bad channel', 1), (e) => e.code === 'invalid_channel');
  assert.throws(() => c.subscribe('a/b', () => {}), (e) => e.code === 'invalid_channel');
  c.subscribe('ok', () => {});
  assert.throws(() => c.subscribe('ok', () => {}), (e) => e.code === 'already_subscribed');
  done(c);
});

test('a refused subscribe ends that channel (onEnd, error event); the others carry on', async () => {
  const { c, errors } = makeClient();
  const ended = [];
  c.subscribe('secret', () => {}, { onEnd: (code) => ended.push(code) });
  const ws = await accept();
  ws.receive({ type: 'error', id: ws.lastSent('subscribe').id, code: 'forbidden', message: 'token may not subscribe to this channel' });
  await settle();
  assert.deepEqual(ended, ['forbidden']);
  assert.deepEqual(errors, ['forbidden']);
  c.subscribe('secret', () => {}); // allowed again: the old one is gone
  done(c);
});

test('channel pause and resume use the protocol frames; a paused channel stays off the wire across a reconnect', async () => {
  const { c } = makeClient();
  const sub = c.subscribe('map', () => {}, { maxRate: 2 });
  const ws = await accept();
  ws.receive({ type: 'subscribed', id: ws.lastSent('subscribe').id, channel: 'map', cursor: 'c1.e.r.1', recovered: false });
  sub.pause();
  assert.equal(ws.sent.at(-1).type, 'pause');
  sub.resume();
  assert.equal(ws.sent.at(-1).type, 'resume', 'resumed before the paused reply: still a resume');
  ws.receive({ type: 'paused', id: ws.lastSent('pause').id, channel: 'map', cursor: 'c1.e.r.1' });
  ws.receive({ type: 'subscribed', id: ws.lastSent('resume').id, channel: 'map', cursor: 'c1.e.r.1', recovered: true });
  sub.pause();
  ws.receive({ type: 'paused', id: ws.lastSent('pause').id, channel: 'map', cursor: 'c1.e.r.1' }, message('map', 'late', 'c1.e.r.2'));
  assert.equal(sub.cursor, 'c1.e.r.2', 'a record queued before the pause still counts');
  ws.serverClose(1006);
  await advance(50);
  const ws2 = await accept();
  assert.equal(ws2.sent.length, 1, 'nothing subscribed while paused');
  sub.resume();
  const s = ws2.lastSent('subscribe');
  assert.deepEqual(s, { type: 'subscribe', channel: 'map', since: 'c1.e.r.2', max_rate: 2, id: s.id });
  sub.unsubscribe();
  assert.deepEqual(ws2.sent.at(-1), { type: 'unsubscribe', channel: 'map', id: ws2.sent.at(-1).id });
  assert.equal(sub.cursor, undefined);
  done(c);
});

test('records before a subscribe reply belong to an earlier subscription and are dropped; a pause before the reply still takes it', async () => {
  const { c } = makeClient();
  const got = [];
  const sub = c.subscribe('a', (m) => got.push(m.id));
  const ws = await accept();
  answerSubscribe(ws, 'a', 'c1.e.r.1');
  ws.receive(message('a', 'm2', 'c1.e.r.2'));
  sub.unsubscribe();
  const again = c.subscribe('a', (m) => got.push(m.id));
  ws.receive(message('a', 'm3', 'c1.e.r.3'), { type: 'unsubscribed', id: ws.lastSent('unsubscribe').id, channel: 'a' });
  again.pause();
  answerSubscribe(ws, 'a', 'c1.e.r.3');
  assert.equal(again.cursor, 'c1.e.r.3', 'the reply to a subscribe paused meanwhile still sets the cursor');
  ws.receive(message('a', 'm4', 'c1.e.r.4'), { type: 'paused', id: ws.lastSent('pause').id, channel: 'a', cursor: 'c1.e.r.4' });
  again.resume();
  assert.equal(ws.sent.at(-1).type, 'resume');
  ws.receive(message('a', 'm5', 'c1.e.r.5'), { type: 'subscribed', id: ws.lastSent('resume').id, channel: 'a', cursor: 'c1.e.r.5', recovered: true });
  assert.deepEqual(got, ['m2', 'm4', 'm5'], 'm3 was the old subscription\'s; records around a pause and resume are delivered');
  done(c);
});

test('resume() while waiting out a backoff reconnects now', async () => {
  const { c } = makeClient({ backoff: { baseMs: 20_000, capMs: 30_000, random: () => 0.9 } });
  const ws = await accept();
  ws.serverClose(1006);
  await advance(1000);
  assert.equal(FakeWebSocket.all.length, 1);
  c.resume();
  await advance(0);
  assert.equal(FakeWebSocket.all.length, 2);
  done(c);
});

test('app pause closes the connection and keeps every cursor; resume reconnects and resumes', async () => {
  const { c, states } = makeClient();
  c.subscribe('a', () => {});
  const ws = await accept();
  ws.receive({ type: 'subscribed', id: ws.lastSent('subscribe').id, channel: 'a', cursor: 'c1.e.r.8', recovered: false });
  c.pause('in the background');
  assert.equal(ws.closedWith, 1000);
  assert.equal(c.state, 'disconnected');
  await advance(120_000);
  assert.equal(FakeWebSocket.all.length, 1, 'no reconnect while paused');
  c.resume();
  const ws2 = await accept();
  assert.equal(ws2.lastSent('subscribe').since, 'c1.e.r.8');
  assert.deepEqual(states, ['connecting', 'connected', 'disconnected', 'recovering']);
  c.close();
  c.resume();
  await advance(60_000);
  assert.equal(FakeWebSocket.all.length, 2, 'closed is for good');
  done(c);
});

test('a listener or handler that throws does not stop the client', async (t) => {
  const thrown = [];
  t.mock.method(globalThis, 'setTimeout', (f) => {
    try {
      f();
    } catch (e) {
      thrown.push(e.message);
    }
  });
  const c = new HeraldClient({ url: 'https://herald.test', token: 't', environment: { WebSocket: FakeWebSocket } });
  c.on('state', () => {
    throw new Error('listener');
  });
  const got = [];
  c.subscribe('a', (m) => {
    got.push(m.id);
    throw new Error('handler');
  });
  await settle();
  const ws = FakeWebSocket.last();
  ws.open();
  ws.receive({ type: 'welcome', heartbeat_ms: 25000 });
  answerSubscribe(ws, 'a');
  ws.receive(message('a', '1', 'c1.e.r.1'), message('a', '2', 'c1.e.r.2'));
  assert.deepEqual(got, ['1', '2']);
  assert.ok(thrown.includes('handler') && thrown.includes('listener'));
  c.close();
  t.mock.restoreAll();
});
