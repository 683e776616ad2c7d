// The server's `disconnect` (a backend disconnected the user, or revoked its token): the
// `disconnected` event, reconnecting with backoff when allowed, staying disconnected until
// `connect()` when not (with a new token after `revoked`), on the WebSocket (JSON and compact),
// by close code alone, and on SSE.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeEventSource, FakeWebSocket, accept, advance, answerSubscribe, done, makeClient, message, pb } from './fakes.mjs';

/** A client subscribed to `a`, with one record processed (cursor c1.e.r.2), and its `disconnected` events. */
async function connected(opts = {}) {
  const client = makeClient(opts);
  const seen = [];
  client.c.on('disconnected', (d) => seen.push(d));
  client.c.subscribe('a', () => {});
  const ws = await accept(opts.firstToken ?? 't0');
  answerSubscribe(ws, 'a', 'c1.e.r.1');
  ws.receive(message('a', 'm1', 'c1.e.r.2'));
  return { ...client, ws, seen };
}

test('disconnect with reconnect:true: the event, then a reconnect with the usual backoff that resumes the channels', async () => {
  const { c, ws, seen, states } = await connected();
  ws.receive({ type: 'disconnect', code: 'disconnected', reason: 'maintenance', reconnect: true });
  assert.deepEqual(seen, [{ code: 'disconnected', reason: 'maintenance', reconnect: true }]);
  assert.equal(c.state, 'disconnected');
  assert.equal(ws.closedWith, 1000, 'the client closed its side');
  await advance(50); // the backoff: random 0.5 of 100 ms
  const ws2 = await accept();
  assert.equal(ws2.lastSent('subscribe').since, 'c1.e.r.2');
  assert.deepEqual(states.slice(-2), ['disconnected', 'recovering']);
  done(c);
});

test('disconnect with reconnect:false: disconnected until connect(); resume() (the lifecycle hooks) does not reconnect; publishing is refused', async () => {
  const { c, ws, seen } = await connected();
  ws.receive({ type: 'disconnect', code: 'disconnected', reason: 'support ended the session', reconnect: false });
  ws.serverClose(4010, 'disconnected');
  assert.deepEqual(seen, [{ code: 'disconnected', reason: 'support ended the session', reconnect: false }]);
  assert.equal(c.state, 'disconnected');
  await advance(120_000);
  c.resume();
  await advance(1000);
  assert.equal(FakeWebSocket.all.length, 1, 'no reconnect without connect()');
  await assert.rejects(c.publish('a', 1), (e) => e.code === 'disconnected');
  c.connect();
  const ws2 = await accept();
  assert.equal(ws2.lastSent('subscribe').since, 'c1.e.r.2', 'every channel resumes from its cursor');
  assert.equal(seen.length, 1);
  done(c);
});

test('revoked: never reconnects by itself (even if told it may); connect() fetches a new token first', async () => {
  let n = 0;
  const { c, ws, seen } = await connected({ token: async () => `t${n++}` });
  ws.receive({ type: 'disconnect', code: 'revoked', reason: 'token revoked', reconnect: true });
  assert.deepEqual(seen, [{ code: 'revoked', reason: 'token revoked', reconnect: false }]);
  await advance(60_000);
  assert.equal(FakeWebSocket.all.length, 1);
  c.connect();
  await accept('t1');
  assert.equal(n, 2, 'the token function was called again');
  done(c);
});

test('a close 4011 without the frame is a revocation; a close 4010 alone reconnects with backoff', async () => {
  const a = await connected();
  a.ws.serverClose(4011, 'revoked');
  assert.deepEqual(a.seen, [{ code: 'revoked', reason: 'revoked', reconnect: false }]);
  await advance(60_000);
  assert.equal(FakeWebSocket.all.length, 1);
  done(a.c);

  const b = await connected();
  b.ws.serverClose(4010, 'disconnected');
  assert.deepEqual(b.seen, [{ code: 'disconnected', reason: 'disconnected', reconnect: true }]);
  await advance(50);
  assert.equal(FakeWebSocket.all.length, 2);
  done(b.c);
});

test('the compact disconnect frame (ServerFrame field 16) means the same', async () => {
  const { c } = makeClient({ encoding: 'proto' });
  const seen = [];
  c.on('disconnected', (d) => seen.push(d));
  c.subscribe('a', () => {});
  await advance(0);
  const ws = FakeWebSocket.last();
  ws.open('herald.v1.proto');
  ws.receiveBinary(pb.welcome(), pb.frame(16, pb.ld(1, 'disconnected'), pb.ld(2, 'bye')));
  assert.deepEqual(seen, [{ code: 'disconnected', reason: 'bye', reconnect: false }]);
  await advance(60_000);
  assert.equal(FakeWebSocket.all.length, 1);
  done(c);
});

test('SSE: the named disconnect event ends the stream and stops', async () => {
  const { c } = makeClient({ env: { EventSource: FakeEventSource }, transports: ['sse'] });
  const seen = [];
  c.on('disconnected', (d) => seen.push(d));
  c.subscribe('a', () => {});
  await advance(0);
  const es = FakeEventSource.last();
  es.event({ type: 'welcome', heartbeat_ms: 25000 });
  es.named('disconnect', { type: 'disconnect', code: 'revoked', reason: 'logged out', reconnect: false });
  assert.deepEqual(seen, [{ code: 'revoked', reason: 'logged out', reconnect: false }]);
  assert.ok(es.closed);
  es.fail();
  await advance(60_000);
  assert.equal(FakeEventSource.all.length, 1);
  assert.equal(c.state, 'disconnected');
  done(c);
});
