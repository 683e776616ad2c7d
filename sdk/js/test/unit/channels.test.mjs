// The channel table on its own, on a fake carrier standing for the connection: resubscribing from
// each channel's cursor after a reconnect, dedupe, per-channel cursors, streams (SSE, long-poll),
// refusals, pause and resume, presence events.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChannelTable } from '../../dist/herald.js';
import { message, settle } from './fakes.mjs';

/**
 * A carrier (the connection's side) that records what the table sends and lets the test answer
 * its requests: `answer(i, frame)` resolves request i, `refuse(i, code)` rejects it.
 */
function fakeCarrier({ onWebSocket = true, welcomed = true } = {}) {
  let nextId = 100;
  const c = {
    mode: 'running',
    onWebSocket,
    welcomed,
    sent: [],
    requests: [],
    reopened: [],
    settled: [],
    send(frame) {
      c.sent.push(frame);
      return true;
    },
    request(frame, what) {
      return new Promise((resolve, reject) => c.requests.push({ frame, what, resolve, reject }));
    },
    nextId: () => nextId++,
    reopenStream: (reason) => c.reopened.push(reason),
    settle: (reason) => c.settled.push(reason),
    /** The frames of the pending subscribe requests, as [channel, since]. */
    subscribes: () => c.requests.filter((r) => r.frame.type === 'subscribe').map((r) => [r.frame.channel, r.frame.since]),
  };
  return c;
}

function makeTable(carrierOpts, window) {
  const carrier = fakeCarrier(carrierOpts);
  const events = [];
  const table = new ChannelTable(carrier, { emit: (event, value) => events.push([event, value]) }, window);
  return { carrier, events, table };
}

/** The server's reply to a subscribe of `channel` (the table reads the frame, then the connection settles the request). */
const subscribed = (channel, cursor, recovered = false) => ({ type: 'subscribed', channel, cursor, recovered });

test('after a reconnect every channel is resubscribed from the cursor of the last record it delivered, and the table is replaying until each is back', () => {
  const { carrier, table } = makeTable();
  const got = [];
  const a = table.subscribe('a', (m) => got.push(`a:${m.id}`));
  const b = table.subscribe('b', (m) => got.push(`b:${m.id}`));
  assert.deepEqual(carrier.subscribes(), [['a', undefined], ['b', undefined]], 'subscribed at once on a welcomed WebSocket');
  table.onFrame(subscribed('a', 'c1.e.r.1'));
  table.onFrame(subscribed('b', 'c1.e.r.1'));
  table.onFrame(message('a', 'm1', 'c1.e.r.2'));
  table.onFrame(message('b', 'm2', 'c1.e.r.3'));
  table.onFrame(message('a', 'm3', 'c1.e.r.4'));
  assert.deepEqual([a.cursor, b.cursor], ['c1.e.r.4', 'c1.e.r.3'], 'one cursor per channel');

  table.disconnected();
  carrier.requests.length = 0;
  table.welcomed(true, true);
  assert.deepEqual(carrier.subscribes(), [['a', 'c1.e.r.4'], ['b', 'c1.e.r.3']]);
  assert.equal(table.replaying, true);
  table.onFrame(subscribed('a', 'c1.e.r.9', true));
  assert.equal(table.replaying, true, 'b is not back yet');
  table.onFrame(subscribed('b', 'c1.e.r.9', true));
  assert.equal(table.replaying, false);
  assert.deepEqual([a.cursor, b.cursor], ['c1.e.r.4', 'c1.e.r.3'], 'a resume reply does not move the cursor past records still to come');
  assert.equal(carrier.settled.at(-1), 'every channel resumed');
  assert.deepEqual(got, ['a:m1', 'b:m2', 'a:m3']);
});

test('a record whose id was delivered already is dropped; the same id on another channel is another record; the window is the configured size', () => {
  const { table } = makeTable({}, 2);
  const got = [];
  table.subscribe('a', (m) => got.push(`a:${m.id}`));
  table.subscribe('b', (m) => got.push(`b:${m.id}`));
  table.onFrame(subscribed('a', 'c1.e.r.0'));
  table.onFrame(subscribed('b', 'c1.e.r.0'));
  for (const f of [message('a', '1', 'c1.e.r.1'), message('a', '1', 'c1.e.r.1'), message('b', '1', 'c1.e.r.2'), message('a', '2', 'c1.e.r.3'), message('a', '3', 'c1.e.r.4'), message('a', '1', 'c1.e.r.1')]) {
    assert.equal(table.onFrame(f), true, 'a message is the table\'s alone');
  }
  assert.deepEqual(got, ['a:1', 'b:1', 'a:2', 'a:3', 'a:1'], 'the repeat is dropped; 1 fell out of a window of 2');
});

test('records of a channel before its subscribe reply belong to an earlier subscription and are dropped', () => {
  const { table } = makeTable();
  const got = [];
  table.subscribe('a', (m) => got.push(m.id));
  table.onFrame(message('a', 'old', 'c1.e.r.1'));
  table.onFrame(subscribed('a', 'c1.e.r.1'));
  table.onFrame(message('a', 'new', 'c1.e.r.2'));
  assert.deepEqual(got, ['new']);
});

test('a resume answered recovered:false reports the lost history and continues from the server position; a fresh subscription is never a loss', () => {
  const { table, events } = makeTable();
  const a = table.subscribe('a', () => {}, { since: 'c1.old.r.1' });
  table.subscribe('fresh', () => {});
  table.onFrame(subscribed('a', 'c1.new.r.50', false));
  table.onFrame(subscribed('fresh', 'c1.new.r.50', false));
  assert.deepEqual(events, [['recovery_failed', { channel: 'a' }]]);
  assert.equal(a.cursor, 'c1.new.r.50');
});

test('on a stream (SSE, long-poll): the request carries every channel not paused and their distinct cursors; each record moves them all; a change reopens the stream', () => {
  const { carrier, table } = makeTable({ onWebSocket: false, welcomed: false });
  const a = table.subscribe('a', () => {}, { since: 'c1.e.r.3' });
  const b = table.subscribe('b', () => {}, { since: 'c1.e.r.1' });
  table.subscribe('c', () => {}, { since: 'c1.e.r.3' });
  table.subscribe('p', () => {}).pause();
  assert.equal(carrier.requests.length, 0, 'nothing is sent on a stream');
  assert.equal(carrier.reopened.length, 5, 'each change asks for the stream to be reopened');
  assert.deepEqual(table.streamRequest(), { channels: ['a', 'b', 'c'], cursors: ['c1.e.r.3', 'c1.e.r.1'] });
  table.welcomed(false, true);
  assert.equal(table.replaying, true, 'channels with a cursor are being resumed');
  table.onFrame(subscribed('a', 'c1.e.r.1', true));
  table.onFrame(subscribed('b', 'c1.e.r.1', true));
  table.onFrame(subscribed('c', 'c1.e.r.1', true));
  assert.equal(table.replaying, false);
  table.onFrame(message('b', 'm4', 'c1.e.r.4'));
  assert.deepEqual([a.cursor, b.cursor], ['c1.e.r.4', 'c1.e.r.4'], 'one ordered stream: its position covers every channel in it');
  assert.equal(table.onFrame({ type: 'position', cursor: 'c1.e.r.7' }), true);
  assert.deepEqual(table.streamRequest().cursors, ['c1.e.r.7']);
});

test('a refused subscribe ends the channel (onEnd, error); a timeout is reported and keeps it; a cut is left to the next connection', async () => {
  const { carrier, table, events } = makeTable();
  const ended = [];
  table.subscribe('secret', () => {}, { onEnd: (code) => ended.push(code) });
  table.subscribe('slow', () => {});
  table.subscribe('cut', () => {});
  const [secret, slow, cut] = carrier.requests;
  secret.reject(Object.assign(new Error('no'), { code: 'forbidden' }));
  slow.reject(Object.assign(new Error('late'), { code: 'timeout' }));
  cut.reject(Object.assign(new Error('gone'), { code: 'disconnected' }));
  await settle();
  assert.deepEqual(ended, ['forbidden']);
  assert.deepEqual(events.map(([e, v]) => [e, v.code, v.channel]), [['error', 'forbidden', 'secret'], ['error', 'timeout', 'slow']]);
  assert.deepEqual(table.streamRequest().channels, ['slow', 'cut']);
  assert.throws(() => table.subscribe('slow', () => {}), (e) => e.code === 'already_subscribed');
  table.subscribe('secret', () => {}); // allowed again: the refused one is gone
});

test('pause and resume send their frames; a paused channel is not resubscribed by a new connection; unsubscribe forgets the cursor', () => {
  const { carrier, table } = makeTable();
  const sub = table.subscribe('map', () => {}, { maxRate: 2 });
  table.onFrame(subscribed('map', 'c1.e.r.1'));
  sub.pause();
  assert.deepEqual(carrier.sent.at(-1), { type: 'pause', id: 100, channel: 'map' });
  assert.equal(table.onFrame({ type: 'paused', id: 100, channel: 'map', cursor: 'c1.e.r.2' }), true);
  table.disconnected();
  carrier.requests.length = 0;
  table.welcomed(true, true);
  assert.deepEqual(carrier.requests, [], 'nothing subscribed while paused');
  sub.resume();
  assert.deepEqual(carrier.requests[0].frame, { type: 'subscribe', channel: 'map', since: 'c1.e.r.1', max_rate: 2 });
  table.onFrame(subscribed('map', 'c1.e.r.1', true));
  sub.unsubscribe();
  assert.deepEqual(carrier.sent.at(-1), { type: 'unsubscribe', id: 101, channel: 'map' });
  assert.equal(sub.cursor, undefined);
});

test('joins and leaves reach onPresence; a server end (lagged) resubscribes from the cursor; other ends are final', () => {
  const { carrier, table, events } = makeTable();
  const seen = [];
  const ended = [];
  table.subscribe('room', () => {}, { presence: true, onPresence: (e) => seen.push(e), onEnd: (c) => ended.push(c) });
  assert.equal(carrier.requests[0].frame.presence, true);
  table.onFrame(subscribed('room', 'c1.e.r.1'));
  table.onFrame(message('room', 'm', 'c1.e.r.2'));
  table.onFrame({ type: 'join', channel: 'room', member: { connection_id: 'k', user: 'u' } });
  assert.deepEqual(seen, [{ type: 'join', channel: 'room', member: { connection_id: 'k', user: 'u' } }]);
  table.onFrame({ type: 'unsubscribed', channel: 'room', code: 'lagged' });
  assert.deepEqual(carrier.requests.at(-1).frame, { type: 'subscribe', channel: 'room', since: 'c1.e.r.2', presence: true });
  table.onFrame({ type: 'unsubscribed', channel: 'room', code: 'forbidden' });
  assert.deepEqual(ended, ['forbidden']);
  assert.deepEqual(events.map(([e, v]) => [e, v.code]), [['error', 'forbidden']]);
  assert.equal(table.onFrame({ type: 'published', id: 3 }), false, 'a reply is not the table\'s');
  assert.equal(table.onFrame(subscribed('room', 'c1')), false, 'subscribed also answers a request');
});

test('a closed or failed connection takes no new subscription; a bad channel name is refused', () => {
  const { carrier, table } = makeTable();
  assert.throws(() => table.subscribe('a b', () => {}), (e) => e.code === 'invalid_channel');
  carrier.mode = 'closed';
  assert.throws(() => table.subscribe('a', () => {}), (e) => e.code === 'disconnected' && /closed/.test(e.message));
});
