// The client on the compact encoding (`encoding: 'proto'`) against fake WebSockets: the
// subprotocol asked for, binary frames both ways, exact cursors through a cut and a resume, the
// fallback to JSON when the server picks no subprotocol, and an unreadable frame.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HeraldClient, encodeCompact } from '../../dist/herald.js';
import { FakeWebSocket, advance, done, makeClient, pb, settle } from './fakes.mjs';

const bytes = (frame) => Buffer.from(encodeCompact(frame)).toString('hex');

/** Opens the client's next socket with the compact subprotocol and welcomes it. */
async function acceptProto() {
  await advance(0);
  const ws = FakeWebSocket.last();
  ws.open('herald.v1.proto');
  assert.deepEqual(ws.binary, [bytes({ type: 'auth', token: 't0' })], 'auth as a compact frame');
  ws.receiveBinary(pb.welcome());
  return ws;
}

test("encoding 'proto' asks for herald.v1.proto; records arrive with their JSON cursors; a cut resumes from them exactly", async () => {
  const { c, states, errors } = makeClient({ encoding: 'proto' });
  const got = [];
  const sub = c.subscribe('incidents', (m) => got.push(m));
  await settle();
  const ws = FakeWebSocket.last();
  assert.deepEqual(ws.protocols, ['herald.v1.proto']);
  assert.equal(ws.binaryType, 'arraybuffer');
  await acceptProto();
  assert.equal(c.encoding, 'proto');
  assert.deepEqual(ws.sent, [], 'no JSON on a compact connection');
  assert.equal(ws.binary[1], bytes({ type: 'subscribe', id: 1, channel: 'incidents' }));
  // The reply and two records in one message.
  ws.receiveBinary(pb.subscribed(1, 'incidents', 7, 'c1.e.r.41'), pb.message(7, 41, 'm41', { n: 41 }), pb.message(7, 42, 'm42', { n: 42 }));
  assert.deepEqual(
    got.map((m) => [m.id, m.cursor, m.data.n, m.channel, m.ts]),
    [
      ['m41', 'c1.e.r.42', 41, 'incidents', 1763996400123],
      ['m42', 'c1.e.r.43', 42, 'incidents', 1763996400123],
    ],
  );
  assert.equal(sub.cursor, 'c1.e.r.43');

  ws.serverClose(1006);
  await advance(50);
  const ws2 = await acceptProto();
  assert.equal(ws2.binary[1], bytes({ type: 'subscribe', id: 2, channel: 'incidents', since: 'c1.e.r.43' }), 'resumed from the rebuilt cursor');
  // A new number for the same channel; the server resends 42 (at-least-once), then 43.
  ws2.receiveBinary(pb.subscribed(2, 'incidents', 8, 'c1.e.r.43', true), pb.message(8, 42, 'm42', { n: 42 }), pb.message(8, 43, 'm43', { n: 43 }));
  assert.deepEqual(
    got.map((m) => m.id),
    ['m41', 'm42', 'm43'],
  );
  assert.equal(sub.cursor, 'c1.e.r.44');

  const p = c.publish('incidents', { n: 1 }, { idempotencyKey: 'k' });
  assert.equal(ws2.binary.at(-1), bytes({ type: 'publish', id: 3, channel: 'incidents', data: { n: 1 }, idempotency_key: 'k' }));
  ws2.receiveBinary(pb.frame(6, pb.id(3), pb.ld(2, 'incidents'), pb.ld(3, 'c1.e.r.45'), pb.ld(4, 'm44')));
  assert.deepEqual(await p, { cursor: 'c1.e.r.45', messageId: 'm44', duplicate: false });

  // A server ping is answered with a compact pong.
  ws2.receiveBinary(pb.frame(13));
  assert.equal(ws2.binary.at(-1), bytes({ type: 'pong' }));
  assert.deepEqual(errors, []);
  assert.deepEqual(states, ['connecting', 'connected', 'disconnected', 'recovering', 'connected']);
  done(c);
});

test('a server that picks no subprotocol gets JSON on that connection', async () => {
  const { c } = makeClient({ encoding: 'proto' });
  const got = [];
  c.subscribe('a', (m) => got.push(m.cursor));
  await advance(0);
  const ws = FakeWebSocket.last();
  ws.open('');
  assert.deepEqual(ws.binary, []);
  assert.deepEqual(ws.sent, [{ type: 'auth', token: 't0' }]);
  ws.receive({ type: 'welcome', heartbeat_ms: 25000 });
  assert.equal(c.encoding, 'json');
  const s = ws.lastSent('subscribe');
  ws.receive({ type: 'subscribed', id: s.id, channel: 'a', cursor: 'c1.e.r.1', recovered: false }, { type: 'message', channel: 'a', id: 'x', cursor: 'c1.e.r.2', ts: 1, data: 1 });
  assert.deepEqual(got, ['c1.e.r.2']);
  done(c);
});

test('an unreadable compact frame is an error that ends the connection; what came before it is delivered, and the resume starts after it', async () => {
  const { c, errors, states } = makeClient({ encoding: 'proto' });
  const got = [];
  c.subscribe('a', (m) => got.push(m.id));
  const ws = await acceptProto();
  // m1, then a record cut short: the rest of the message cannot be trusted.
  const cut = pb.message(1, 1, 'm2').slice(0, -6);
  ws.receiveBinary(pb.subscribed(1, 'a', 1), pb.message(1, 0, 'm1'), cut);
  assert.deepEqual(got, ['m1']);
  assert.deepEqual(errors, ['bad_request']);
  assert.equal(ws.closedWith, 1000, 'the client closed the socket');
  assert.equal(c.state, 'disconnected');
  await advance(50);
  const ws2 = await acceptProto();
  assert.equal(ws2.binary[1], bytes({ type: 'subscribe', id: 2, channel: 'a', since: 'c1.e.r.1' }));
  assert.ok(states.includes('recovering'));
  done(c);
});

test('an unknown encoding is refused when the client is built', () => {
  assert.throws(() => new HeraldClient({ url: 'https://h.test', token: 't', encoding: 'xml', environment: { WebSocket: FakeWebSocket } }), TypeError);
});
