// Fallback from the WebSocket to SSE (browsers) or long-poll (React Native, which has no
// EventSource), what each fallback carries, publishing over HTTP, and the way back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeEventSource, FakeWebSocket, accept, advance, done, fakeFetch, makeClient, message, settle, welcome } from './fakes.mjs';

/** Fails the client's WebSocket attempts (refused before any welcome) until it stops opening them. */
async function refuseWebSockets(n) {
  for (let i = 0; i < n; i++) {
    await advance(0);
    FakeWebSocket.last().serverClose(1006);
    await advance(1000);
  }
}

/** A JWT-shaped token (unsigned: only the client reads its exp). */
const jwt = (exp) => `h.${Buffer.from(JSON.stringify({ exp })).toString('base64url')}.s`;

test('WebSockets blocked: after two failed opens, SSE with every channel and every cursor; records, HTTP publish, no presence', async () => {
  const fetch = fakeFetch();
  const { c, states } = makeClient({ env: { EventSource: FakeEventSource, fetch }, upgradeEveryMs: 60_000 });
  const got = [];
  const a = c.subscribe('a', (m) => got.push(m.id), { since: 'c1.e.r.3' });
  c.subscribe('b', (m) => got.push(m.id), { since: 'c1.e.r.1' });
  const paused = c.subscribe('p', () => {});
  paused.pause();
  await refuseWebSockets(2);
  assert.equal(FakeWebSocket.all.length, 2);
  const es = FakeEventSource.last();
  assert.ok(es, 'an event stream was opened');
  assert.equal(c.transportKind, 'sse');
  assert.equal(es.url.href.split('?')[0], 'https://herald.test/v1/sse');
  assert.equal(es.url.searchParams.get('channels'), 'a,b', 'one request for every channel not paused');
  assert.equal(es.url.searchParams.get('since'), 'c1.e.r.3,c1.e.r.1', 'every cursor: the server starts at the oldest');
  assert.equal(es.url.searchParams.get('token'), 't0');
  es.event(welcome({ expires_at: 1_700_003_600 }));
  es.event({ type: 'subscribed', channel: 'a', cursor: 'c1.e.r.1', recovered: true });
  es.event({ type: 'subscribed', channel: 'b', cursor: 'c1.e.r.1', recovered: true });
  es.event(message('b', 'm2', 'c1.e.r.2'));
  es.event(message('a', 'm3', 'c1.e.r.3'));
  es.event(message('b', 'm4', 'c1.e.r.4'));
  assert.equal(c.state, 'connected');
  assert.deepEqual(got, ['m2', 'm3', 'm4']);
  assert.equal(a.cursor, 'c1.e.r.4', 'one ordered stream: its position covers every channel in it');
  assert.ok(states.includes('disconnected'));

  const p = c.publish('a', { n: 1 }, { idempotencyKey: 'k' });
  const req = await fetch.next();
  assert.equal(req.url.href, 'https://herald.test/v1/publish');
  assert.equal(req.init.method, 'POST');
  assert.equal(req.init.headers.authorization, 'Bearer t0', 'the client token');
  assert.deepEqual(JSON.parse(req.init.body), { channel: 'a', data: { n: 1 }, idempotency_key: 'k' });
  req.answer(200, { cursor: 'c1.e.r.5', message_id: 'M5', duplicate: false });
  assert.deepEqual(await p, { cursor: 'c1.e.r.5', messageId: 'M5', duplicate: false });
  const refused = c.publish('a', 1);
  (await fetch.next()).answer(403, { error: { code: 'forbidden', message: 'token may not publish to a' } });
  await assert.rejects(refused, (e) => e.code === 'forbidden' && e.channel === 'a');
  await assert.rejects(c.presence('a'), (e) => e.code === 'not_supported' && /WebSocket/.test(e.message));

  // A new channel reopens the stream with the cursors.
  c.subscribe('c', () => {});
  await advance(0);
  assert.ok(es.closed);
  const es2 = FakeEventSource.last();
  assert.equal(es2.url.searchParams.get('channels'), 'a,b,c');
  assert.equal(es2.url.searchParams.get('since'), 'c1.e.r.4');
  done(c);
});

test('on SSE, the WebSocket is tried in the background; the stream stays up until the WebSocket is welcomed', async () => {
  const { c, states } = makeClient({ env: { EventSource: FakeEventSource }, upgradeEveryMs: 30_000 });
  const got = [];
  c.subscribe('a', (m) => got.push(m.id));
  await refuseWebSockets(2);
  const es = FakeEventSource.last();
  es.event(welcome());
  es.event({ type: 'subscribed', channel: 'a', cursor: 'c1.e.r.1', recovered: false });
  es.event(message('a', 'm1', 'c1.e.r.2'));
  const before = states.length;
  await advance(30_000);
  const probe = FakeWebSocket.last();
  assert.equal(FakeWebSocket.all.length, 3, 'a probe');
  probe.open();
  probe.serverClose(1006);
  await settle();
  assert.equal(states.length, before, 'a failed probe is invisible: no state change');
  assert.ok(!es.closed);
  es.event(message('a', 'm2', 'c1.e.r.3'));
  await advance(30_000);
  const probe2 = FakeWebSocket.last();
  assert.equal(FakeWebSocket.all.length, 4);
  probe2.open();
  assert.deepEqual(probe2.sent[0], { type: 'auth', token: 't0' });
  es.event(message('a', 'm3', 'c1.e.r.4'));
  assert.ok(!es.closed, 'still on SSE while the WebSocket authenticates');
  probe2.receive(welcome());
  assert.ok(es.closed, 'moved to the WebSocket');
  assert.equal(c.transportKind, 'websocket');
  const s = probe2.lastSent('subscribe');
  assert.equal(s.since, 'c1.e.r.4', 'resumed from the last record SSE delivered');
  probe2.receive({ type: 'subscribed', id: s.id, channel: 'a', cursor: 'c1.e.r.9', recovered: true }, message('a', 'm3', 'c1.e.r.4'), message('a', 'm4', 'c1.e.r.5'));
  assert.equal(c.state, 'connected');
  assert.deepEqual(got, ['m1', 'm2', 'm3', 'm4']);
  done(c);
});

test('a probe that never answers is given up after the connect timeout', async () => {
  const { c } = makeClient({ env: { EventSource: FakeEventSource }, upgradeEveryMs: 1000, connectTimeoutMs: 5000 });
  c.subscribe('a', () => {});
  await refuseWebSockets(2);
  FakeEventSource.last().event(welcome({ heartbeat_ms: 60_000 }));
  await advance(1000);
  const probe = FakeWebSocket.last();
  await advance(5000);
  assert.equal(probe.closedWith, 1000);
  await advance(1000);
  assert.equal(FakeWebSocket.all.length, 4, 'and tried again later');
  assert.equal(c.transportKind, 'sse');
  done(c);
});

test('React Native (no EventSource): the WebSocket falls back to long-poll, which resumes from the cursor each answer returns', async () => {
  const fetch = fakeFetch();
  const { c } = makeClient({ env: { fetch }, pollTimeoutMs: 20_000 });
  const got = [];
  c.subscribe('a', (m) => got.push(m.id), { since: 'c1.e.r.1' });
  c.subscribe('b', (m) => got.push(m.id));
  await refuseWebSockets(2);
  const r1 = await fetch.next();
  assert.equal(c.transportKind, 'poll');
  assert.equal(r1.url.pathname, '/v1/poll');
  assert.equal(r1.url.searchParams.get('channels'), 'a,b');
  assert.equal(r1.url.searchParams.get('since'), 'c1.e.r.1');
  assert.equal(r1.url.searchParams.get('timeout_ms'), '0', 'the first answer comes at once: it stands for welcome');
  r1.answer(200, { cursor: 'c1.e.r.3', recovered: true, messages: [message('a', 'm2', 'c1.e.r.2'), message('b', 'm3', 'c1.e.r.3')] });
  const r2 = await fetch.next();
  assert.equal(c.state, 'connected');
  assert.deepEqual(got, ['m2', 'm3']);
  assert.equal(r2.url.searchParams.get('since'), 'c1.e.r.3');
  assert.equal(r2.url.searchParams.get('timeout_ms'), '20000');
  r2.answer(200, { cursor: 'c1.e.r.7', recovered: true, messages: [] });
  const r3 = await fetch.next();
  assert.equal(r3.url.searchParams.get('since'), 'c1.e.r.7', 'records of other channels moved the position');
  r3.answer(200, { cursor: 'c1.e.r.8', recovered: true, messages: [message('a', 'm2', 'c1.e.r.2'), message('a', 'm8', 'c1.e.r.8')] });
  await fetch.next();
  assert.deepEqual(got, ['m2', 'm3', 'm8'], 'a resent record is dropped');
  done(c);
});

test('long-poll refusals: an expired token is fetched again; a forbidden request fails; a server error backs off', async () => {
  let n = 0;
  const fetch = fakeFetch();
  const { c, errors } = makeClient({ env: { fetch }, transports: ['poll'], token: async () => `tok${n++}` });
  c.subscribe('a', () => {});
  await advance(0);
  const r1 = await fetch.next();
  assert.equal(r1.url.searchParams.get('token'), 'tok0');
  r1.answer(401, { error: { code: 'token_expired', message: 'token has expired' } });
  await advance(0);
  const r2 = await fetch.next();
  assert.equal(r2.url.searchParams.get('token'), 'tok1', 'a new token, at once');
  r2.answer(503, { error: { code: 'unavailable', message: 'the bus is unavailable; retry' } });
  await advance(0);
  assert.equal(fetch.pending.length, 0, 'a 503 waits for the backoff');
  await advance(50);
  const r3 = await fetch.next();
  r3.answer(403, { error: { code: 'forbidden', message: 'this origin may not connect to this account' } });
  await advance(0);
  assert.equal(c.state, 'failed');
  assert.deepEqual(errors, ['token_expired', 'unavailable', 'forbidden']);
  done(c);
});

test('long-poll refreshes a JWT before it expires, from the next request on, without reopening', async () => {
  let n = 0;
  const now = 1_700_000_000;
  const fetch = fakeFetch();
  const { c, states } = makeClient({ env: { fetch }, transports: ['poll'], token: async () => jwt(now + 20 + 100 * n++) });
  const warned = [];
  c.on('token_expiring', (e) => warned.push(e.expiresAt));
  c.subscribe('a', () => {});
  await advance(0);
  (await fetch.next()).answer(200, { cursor: 'c1.e.r.1', recovered: false, messages: [] });
  const r2 = await fetch.next();
  await advance(10_000); // half of a 20 s token's life
  assert.deepEqual(warned, [now + 20]);
  r2.answer(200, { cursor: 'c1.e.r.1', recovered: true, messages: [] });
  const r3 = await fetch.next();
  assert.equal(r3.url.searchParams.get('token'), jwt(now + 120));
  assert.deepEqual(states, ['connecting', 'connected'], 'no reconnect');
  done(c);
});

test('SSE refreshes the token before welcome.expires_at by reopening the stream; the server cutting an expired stream fetches one too', async () => {
  let n = 0;
  const { c } = makeClient({ env: { EventSource: FakeEventSource }, transports: ['sse'], token: async () => `tok${n++}` });
  c.subscribe('a', () => {});
  await advance(0);
  const es = FakeEventSource.last();
  assert.equal(es.url.searchParams.get('token'), 'tok0');
  es.event(welcome({ expires_at: 1_700_000_030 }));
  es.event({ type: 'subscribed', channel: 'a', cursor: 'c1.e.r.1', recovered: false });
  await advance(15_000);
  await advance(0);
  assert.ok(es.closed);
  const es2 = FakeEventSource.last();
  assert.equal(es2.url.searchParams.get('token'), 'tok1');
  assert.equal(es2.url.searchParams.get('since'), 'c1.e.r.1');
  es2.event(welcome({ expires_at: 1_700_000_045 }));
  es2.event({ type: 'error', code: 'token_expired', message: 'token has expired' });
  es2.fail();
  await advance(0);
  assert.equal(FakeEventSource.last().url.searchParams.get('token'), 'tok2', 'the error announced 4002: a new token, at once');
  done(c);
});

test('SSE with nothing subscribed opens nothing until a channel is', async () => {
  const { c } = makeClient({ env: { EventSource: FakeEventSource }, transports: ['sse'] });
  await advance(0);
  assert.equal(FakeEventSource.all.length, 0);
  assert.equal(c.state, 'connected');
  c.subscribe('a', () => {});
  await advance(0);
  assert.equal(FakeEventSource.all.length, 1);
  done(c);
});
