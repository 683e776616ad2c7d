// History pages (`GET /v1/history`) and device registration (the frame on a WebSocket, else
// `POST`/`DELETE /v1/devices`), with the client token, against a fake fetch and fake WebSockets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { accept, advance, done, fakeFetch, makeClient, settle } from './fakes.mjs';

const record = (n) => ({ type: 'message', channel: 'a', id: `m${n}`, cursor: `c1.e.r.${n + 1}`, ts: 1000 + n, data: { n } });

test('history: the newest page with the client token, its messages as handlers get them, and the next (older) page', async () => {
  const fetch = fakeFetch();
  const { c } = makeClient({ env: { fetch } });
  const p = c.history('a', { limit: 2 });
  const req = await fetch.next();
  assert.equal(req.url.href, 'https://herald.test/v1/history?channel=a&limit=2');
  assert.equal(req.init.method, 'GET');
  assert.equal(req.init.headers.authorization, 'Bearer t0');
  req.answer(200, { messages: [record(3), record(4)], cursor: 'c1.e.r.5', before: 'c1.e.r.3', more: true, complete: true });
  const page = await p;
  assert.deepEqual(page.messages, [
    { channel: 'a', id: 'm3', cursor: 'c1.e.r.4', ts: 1003, data: { n: 3 } },
    { channel: 'a', id: 'm4', cursor: 'c1.e.r.5', ts: 1004, data: { n: 4 } },
  ]);
  assert.deepEqual({ ...page, messages: undefined }, { channel: 'a', messages: undefined, cursor: 'c1.e.r.5', before: 'c1.e.r.3', more: true, complete: true, next: { limit: 2, before: 'c1.e.r.3' } });
  done(c);
});

test('history pages: forward from a cursor until no more, each page after the last one, then the iterator ends', async () => {
  const fetch = fakeFetch();
  const { c } = makeClient({ env: { fetch } });
  const pages = [];
  const walk = (async () => {
    for await (const page of c.historyPages('a', { since: 'c1.e.r.0', limit: 2 })) pages.push(page.messages.map((m) => m.id));
  })();
  let req = await fetch.next();
  assert.equal(req.url.searchParams.get('since'), 'c1.e.r.0');
  req.answer(200, { messages: [record(0), record(1)], cursor: 'c1.e.r.2', before: null, more: true, complete: true });
  req = await fetch.next();
  assert.equal(req.url.searchParams.get('since'), 'c1.e.r.2', 'the next page starts where the last ended');
  assert.equal(req.url.searchParams.get('limit'), '2');
  req.answer(200, { messages: [record(2)], cursor: 'c1.e.r.9', before: 'c1.e.r.2', more: false, complete: true });
  await walk;
  assert.deepEqual(pages, [['m0', 'm1'], ['m2']]);
  assert.equal(fetch.pending.length, 0);
  done(c);
});

test('history errors: bad options send nothing; a refusal carries its code; a refused token is renewed once', async () => {
  const fetch = fakeFetch();
  let n = 0;
  const { c } = makeClient({ env: { fetch }, token: async () => `t${n++}` });
  await assert.rejects(c.history('a b'), (e) => e.code === 'invalid_channel');
  await assert.rejects(c.history('a', { limit: 0 }), (e) => e.code === 'bad_request');
  await assert.rejects(c.history('a', { since: 'c1.e.r.1', before: 'c1.e.r.9' }), (e) => e.code === 'bad_request');
  await settle();
  assert.equal(fetch.pending.length, 0, 'nothing was sent');
  const forbidden = c.history('secret');
  (await fetch.next()).answer(403, { error: { code: 'forbidden', message: 'token may not read secret' } });
  await assert.rejects(forbidden, (e) => e.code === 'forbidden' && e.channel === 'secret');
  const renewed = c.history('a');
  const first = await fetch.next();
  first.answer(401, { error: { code: 'token_expired', message: 'expired' } });
  const second = await fetch.next();
  assert.notEqual(second.init.headers.authorization, first.init.headers.authorization, 'a new token');
  second.answer(200, { messages: [], cursor: 'c1.e.r.0', before: null, more: false, complete: true });
  assert.deepEqual((await renewed).next, undefined);
  done(c);
});

test('devices without a WebSocket: POST and DELETE /v1/devices with the client token', async () => {
  const fetch = fakeFetch();
  const { c } = makeClient({ env: { fetch } });
  const reg = c.registerDevice({ platform: 'apns', token: 'ab12', app: 'com.example' });
  let req = await fetch.next();
  assert.equal(req.url.href, 'https://herald.test/v1/devices');
  assert.equal(req.init.method, 'POST');
  assert.equal(req.init.headers.authorization, 'Bearer t0');
  assert.deepEqual(JSON.parse(req.init.body), { platform: 'apns', token: 'ab12', app: 'com.example' });
  req.answer(201, { device: { user: 'u', platform: 'apns', token_tail: 'ab12', app: 'com.example' } });
  assert.deepEqual(await reg, { registered: true });
  const unreg = c.unregisterDevice({ platform: 'apns', token: 'ab12' });
  req = await fetch.next();
  assert.equal(req.init.method, 'DELETE');
  assert.deepEqual(JSON.parse(req.init.body), { platform: 'apns', token: 'ab12' });
  req.answer(200, { removed: true });
  assert.deepEqual(await unreg, { registered: false });
  const refused = c.registerDevice({ platform: 'fcm', token: 'x', app: 'p' });
  (await fetch.next()).answer(400, { error: { code: 'bad_request', message: 'malformed token' } });
  await assert.rejects(refused, (e) => e.code === 'bad_request' && /malformed/.test(e.message));
  done(c);
});

test('devices on a WebSocket: the register_device and unregister_device frames and their device replies', async () => {
  const fetch = fakeFetch();
  const { c } = makeClient({ env: { fetch } });
  const ws = await accept();
  const reg = c.registerDevice({ platform: 'apns', token: 'ab12', app: 'com.example' });
  const f = ws.lastSent('register_device');
  assert.deepEqual(f, { type: 'register_device', id: f.id, platform: 'apns', token: 'ab12', app: 'com.example' });
  ws.receive({ type: 'device', id: f.id, registered: true });
  assert.deepEqual(await reg, { registered: true });
  const unreg = c.unregisterDevice({ platform: 'apns', token: 'ab12' });
  const u = ws.lastSent('unregister_device');
  assert.deepEqual(u, { type: 'unregister_device', id: u.id, platform: 'apns', token: 'ab12' });
  ws.receive({ type: 'device', id: u.id, registered: false });
  assert.deepEqual(await unreg, { registered: false });
  const refused = c.registerDevice({ platform: 'fcm', token: 'x', app: 'p' });
  ws.receive({ type: 'error', id: ws.lastSent('register_device').id, code: 'forbidden', message: 'no push for this account' });
  await assert.rejects(refused, (e) => e.code === 'forbidden');
  assert.equal(fetch.pending.length, 0, 'nothing went over HTTP');
  // A server from before the device frames answers unknown_type: the HTTP API does it instead.
  const old = c.registerDevice({ platform: 'fcm', token: 'y', app: 'p' });
  ws.receive({ type: 'error', id: ws.lastSent('register_device').id, code: 'unknown_type', message: 'register_device' });
  const req = await fetch.next();
  assert.equal(req.init.method, 'POST');
  req.answer(201, { device: {} });
  assert.deepEqual(await old, { registered: true });
  done(c);
});

test('bad device input is refused before anything is sent', async () => {
  const fetch = fakeFetch();
  const { c } = makeClient({ env: { fetch } });
  const ws = await accept();
  const before = ws.sent.length;
  for (const bad of [{ platform: 'wns', token: 'a', app: 'b' }, { platform: 'apns', token: '', app: 'b' }, { platform: 'apns', token: 'a' }]) {
    await assert.rejects(c.registerDevice(bad), (e) => e.code === 'bad_request', JSON.stringify(bad));
  }
  await assert.rejects(c.unregisterDevice({ platform: 'fcm' }), (e) => e.code === 'bad_request');
  await advance(0);
  assert.equal(ws.sent.length, before);
  assert.equal(fetch.pending.length, 0);
  done(c);
});
