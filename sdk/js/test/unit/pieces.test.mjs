// The SDK's building blocks: frame parser, backoff, dedupe window, cursor bookkeeping.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff, CursorStore, Dedupe, parseFrames } from '../../dist/herald.js';

test('frames: a batched message splits on newlines, empty lines are skipped, garbage is reported and skipped', () => {
  const p = parseFrames('{"type":"ping"}\n\n{"type":"message","id":"a"}\r\n   \nnot json\n[1]\n{"no":"type"}\n{"type":7}\nnull\n{"type":"pong"}');
  assert.deepEqual(p.frames.map((f) => f.type), ['ping', 'message', 'pong'], 'a frame after garbage survives, as does one without its newline');
  assert.equal(p.errors.length, 5);
  assert.match(p.errors[0], /^not JSON: not json/);
  assert.deepEqual(parseFrames('').frames, []);
  assert.deepEqual(parseFrames('\n\n').errors, []);
  assert.deepEqual(parseFrames('{"type":"welcome","extra":{"unknown":true}}\n').frames[0].extra, { unknown: true }, 'unknown fields are kept, not refused');
});

test('backoff: attempt n waits uniformly in [0, min(cap, base * 2^n)), full jitter', () => {
  let r = 0.999999;
  const b = new Backoff({ baseMs: 100, capMs: 1000, random: () => r });
  assert.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()], [99, 199, 399, 799, 999, 999], 'doubling ceilings, capped');
  r = 0;
  assert.equal(b.next(), 0, 'full jitter reaches zero: no floor');
  assert.equal(b.attempts, 7);
  // The defaults, sampled: every delay inside its attempt's bounds, and the spread uses them.
  for (let n = 0; n < 12; n++) {
    const ceiling = Math.min(30_000, 500 * 2 ** n);
    let max = 0;
    for (let i = 0; i < 300; i++) {
      const x = new Backoff();
      for (let k = 0; k < n; k++) x.next();
      const d = x.next();
      assert.ok(Number.isInteger(d) && d >= 0 && d < ceiling, `attempt ${n}: ${d} outside [0, ${ceiling})`);
      max = Math.max(max, d);
    }
    assert.ok(max > ceiling / 2, `attempt ${n}: spread over the whole range (max ${max} of ${ceiling})`);
  }
});

test('backoff: a stable connection resets it; the server hint replaces the delay and counts as an attempt', () => {
  const b = new Backoff({ baseMs: 100, capMs: 100_000, random: () => 0.5 });
  for (let i = 0; i < 5; i++) b.next();
  assert.equal(b.next(), 1600);
  b.reset();
  assert.equal(b.attempts, 0);
  assert.equal(b.next(), 50, 'back to the base');
  assert.equal(b.hinted(1830), 1830, 'after_ms is used as is');
  assert.equal(b.attempts, 2);
  assert.equal(b.hinted(10 * 60_000), 300_000, 'a hint is honoured up to five minutes');
  assert.equal(b.hinted(-5), 0);
  assert.equal(b.hinted(Number.NaN), 0);
  assert.equal(b.attempts, 5);
  assert.equal(b.next(), 0.5 * 100 * 2 ** 5, 'hints count toward the exponent');
});

test('dedupe: a repeat is refused; the window keeps the last N ids and forgets the oldest', () => {
  const d = new Dedupe(3);
  assert.equal(d.first('a'), true);
  assert.equal(d.first('a'), false);
  d.first('b');
  d.first('c');
  assert.equal(d.first('b'), false, 'a repeat does not refresh or grow the window');
  d.first('d');
  assert.equal(d.size, 3);
  assert.equal(d.first('a'), true, 'a fell out of the window');
  assert.equal(d.first('d'), false);
  const big = new Dedupe();
  assert.equal(big.window, 1000, 'the default window');
  for (let i = 0; i < 50_000; i++) big.first(String(i));
  assert.equal(big.size, 1000, 'bounded');
  assert.equal(big.first('49999'), false);
  assert.equal(big.first('49000'), false, 'the 1000th newest is still remembered');
  assert.equal(big.first('48999'), true, 'the 1001st newest is not');
});

test('cursors: a fresh subscription starts at the reply; records move it; a resume reply keeps it; lost history takes the reply', () => {
  const c = new CursorStore();
  assert.equal(c.get('a'), undefined);
  c.subscribed('a', 'c1.e.r.5');
  assert.equal(c.get('a'), 'c1.e.r.5', 'before any record: the subscribed cursor, so a cut resumes without a gap');
  c.processed('a', 'c1.e.r.7');
  assert.equal(c.get('a'), 'c1.e.r.7');
  c.subscribed('a', 'c1.e.r.9');
  assert.equal(c.get('a'), 'c1.e.r.7', 'a resume reply does not skip the records still to come');
  c.subscribed('a', undefined, true);
  assert.equal(c.get('a'), 'c1.e.r.7');
  c.subscribed('a', 'c1.e.r.9', true);
  assert.equal(c.get('a'), 'c1.e.r.9', 'recovered:false: that history is gone, do not ask for it again');
  c.processed('b', 'c1.e.r.7');
  assert.deepEqual(c.list(['a', 'b', 'x']), ['c1.e.r.9', 'c1.e.r.7'], 'known cursors of the channels, for since=a,b');
  c.processed('x', 'c1.e.r.9');
  assert.deepEqual(c.list(['a', 'b', 'x']), ['c1.e.r.9', 'c1.e.r.7'], 'distinct');
  c.forget('a');
  assert.equal(c.get('a'), undefined);
});
