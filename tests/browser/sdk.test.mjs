// The TypeScript SDK (sdk/js, this checkout's build served at herald dev's /sdk/herald.js) end to end in headless
// Chromium against a real `herald dev`: live records, a connection cut from outside, offline and
// online, short tokens refreshed on every transport, and the fallback to SSE when WebSockets are
// blocked (and back). Every check is on what the page's handlers received: each published record
// once, in order.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchChromium, startHerald } from './harness.mjs';
import { useLocalSdk } from './local-sdk.mjs';

let herald;
let browser;

before(async () => {
  herald = await startHerald('sdk-e2e');
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  herald?.stop();
});

/** Publishes `{ n }` for each n in [from, to) on `channel` of `account`, over the HTTP API. */
async function publishRange(account, channel, from, to) {
  for (let n = from; n < to; n++) await herald.publish(account, channel, { n });
}

/**
 * A browser context whose WebSockets to /v1/ws go through a gate: `gate.blocked` refuses new
 * ones (as a proxy that does not pass upgrades would), `gate.cut()` kills the open ones.
 */
async function gatedContext() {
  const ctx = await browser.newContext();
  await useLocalSdk(ctx);
  const gate = {
    blocked: false,
    open: [],
    cut() {
      for (const ws of gate.open.splice(0)) ws.close({ code: 1006, reason: 'cut' });
    },
  };
  await ctx.routeWebSocket(/\/v1\/ws/, (ws) => {
    if (gate.blocked) return ws.close({ code: 1006, reason: 'blocked by a proxy' });
    ws.connectToServer();
    gate.open.push(ws);
  });
  return { ctx, gate };
}

/**
 * A page on herald dev's origin running an SDK client of `account` subscribed to `channels`.
 * In the page: `herald` (the client), `got[channel]` (the `n` of each record received),
 * `states` ("state/transport"), `tokens` (token fetches), `errors` (error codes).
 * `ttl` asks /dev/token for short tokens; `options` go to the client.
 */
async function sdkPage(ctx, account, channels, { ttl, lifecycle = false, options = {} } = {}) {
  const page = await ctx.newPage();
  await page.goto(herald.url + '/sdk/herald.js');
  await page.evaluate(
    async ({ account, channels, ttl, lifecycle, options }) => {
      const { HeraldClient, attachBrowserLifecycle } = await import('/sdk/herald.js');
      Object.assign(window, { got: {}, states: [], tokens: 0, errors: [], warned: 0 });
      const token = async () => {
        window.tokens += 1;
        const r = await fetch(`/dev/token?account=${account}&sub=e2e${ttl ? `&ttl=${ttl}` : ''}`);
        return (await r.json()).token;
      };
      const herald = new HeraldClient({ url: location.origin, token, backoff: { baseMs: 100, capMs: 1000 }, ...options });
      window.herald = herald;
      herald.on('state', (s) => window.states.push(`${s.state}/${s.transport}`));
      herald.on('error', (e) => window.errors.push(e.code));
      herald.on('token_expiring', () => (window.warned += 1));
      if (lifecycle) attachBrowserLifecycle(herald);
      window.subs = {};
      for (const ch of channels) {
        window.got[ch] = [];
        window.subs[ch] = herald.subscribe(ch, (m) => window.got[ch].push(m.data.n));
      }
    },
    { account, channels, ttl, lifecycle, options },
  );
  // Connected, and every subscription confirmed by the server (it has a cursor): records
  // published from here on are the channel's, whatever order the replies came in.
  await page.waitForFunction(() => window.herald.state === 'connected' && Object.values(window.subs).every((s) => s.cursor !== undefined), null, { timeout: 30_000 });
  return page;
}

const range = (from, to) => Array.from({ length: to - from }, (_, i) => from + i);

/** Waits until `channel` got `n` records, then checks they are exactly 0..n-1 (a late duplicate would show). */
async function expectAll(page, channel, n) {
  await page.waitForFunction(({ channel, n }) => window.got[channel].length >= n, { channel, n }, { timeout: 30_000 });
  await page.waitForTimeout(300);
  assert.deepEqual(await page.evaluate((ch) => window.got[ch], channel), range(0, n), `${channel}: every record once, in order`);
}

test('live records arrive; a connection cut from outside resumes with nothing lost or doubled; the SDK publishes over its socket', { timeout: 60_000 }, async () => {
  const { ctx, gate } = await gatedContext();
  const page = await sdkPage(ctx, 'e2e1', ['c'], { options: { fallbackAfter: 100 } });
  await publishRange('e2e1', 'c', 0, 5);
  await expectAll(page, 'c', 5);
  // Cut the socket and keep it down while records are published.
  gate.blocked = true;
  gate.cut();
  await page.waitForFunction(() => window.herald.state === 'disconnected');
  await publishRange('e2e1', 'c', 5, 10);
  gate.blocked = false;
  await expectAll(page, 'c', 10);
  assert.equal(await page.evaluate(() => window.herald.transportKind), 'websocket');
  const r = await page.evaluate(() => window.herald.publish('c', { n: 10 }));
  assert.match(r.cursor, /^c1\./);
  assert.equal(r.duplicate, false);
  await expectAll(page, 'c', 11);
  const states = await page.evaluate(() => window.states);
  assert.deepEqual(states.slice(0, 2), ['connecting/websocket', 'connected/websocket']);
  assert.ok(states.includes('recovering/websocket'), `recovering after the cut: ${states}`);
  assert.equal(states.at(-1), 'connected/websocket');
  await ctx.close();
});

test('offline then online: the lifecycle hook closes and reopens, and what was published meanwhile arrives once', { timeout: 60_000 }, async () => {
  const ctx = await browser.newContext();
  await useLocalSdk(ctx);
  const page = await sdkPage(ctx, 'e2e2', ['c'], { lifecycle: true });
  await publishRange('e2e2', 'c', 0, 1);
  await expectAll(page, 'c', 1);
  await ctx.setOffline(true);
  await page.waitForFunction(() => window.herald.state === 'disconnected');
  await publishRange('e2e2', 'c', 1, 6);
  await ctx.setOffline(false);
  await page.waitForFunction(() => window.herald.state === 'connected', null, { timeout: 30_000 });
  await expectAll(page, 'c', 6);
  await ctx.close();
});

describe('short tokens (6 s) are refreshed before they expire, on every transport, without losing a record', { concurrency: true }, () => {
  for (const transport of ['websocket', 'sse', 'poll']) {
    test(transport, { timeout: 60_000 }, async () => {
      const ctx = await browser.newContext();
      await useLocalSdk(ctx);
      const account = `e2e3${transport}`;
      const page = await sdkPage(ctx, account, ['c'], { ttl: 6, options: { transports: [transport] } });
      await publishRange(account, 'c', 0, 2);
      await expectAll(page, 'c', 2);
      // Past the first token's expiry (and the second's warning), publishing all along.
      for (let n = 2; n < 10; n++) {
        await page.waitForTimeout(1000);
        await publishRange(account, 'c', n, n + 1);
      }
      await expectAll(page, 'c', 10);
      const { states, tokens, warned, errors } = await page.evaluate(() => ({ states: window.states, tokens: window.tokens, warned: window.warned, errors: window.errors }));
      assert.ok(tokens >= 2, `a new token was fetched (${tokens})`);
      assert.ok(warned >= 1, 'token_expiring was emitted');
      assert.ok(!states.some((s) => s.startsWith('disconnected') || s.startsWith('failed')), `never disconnected: ${states}`);
      assert.deepEqual(errors, []);
      await ctx.close();
    });
  }
});

test('WebSockets blocked: the SDK falls back to SSE resuming every channel, receives and publishes there, and returns to the WebSocket', { timeout: 90_000 }, async () => {
  const { ctx, gate } = await gatedContext();
  const page = await sdkPage(ctx, 'e2e4', ['a', 'b'], { options: { upgradeEveryMs: 3000 } });
  // Channels at different positions: a is ahead of b.
  await publishRange('e2e4', 'b', 0, 2);
  await publishRange('e2e4', 'a', 0, 3);
  await expectAll(page, 'a', 3);
  await expectAll(page, 'b', 2);
  // A proxy starts refusing upgrades and the socket is cut: two failed opens, then SSE.
  gate.blocked = true;
  gate.cut();
  await page.waitForFunction(() => window.herald.transportKind === 'sse' && window.herald.state === 'connected', null, { timeout: 30_000 });
  await publishRange('e2e4', 'a', 3, 5);
  await publishRange('e2e4', 'b', 2, 4);
  await expectAll(page, 'a', 5);
  await expectAll(page, 'b', 4);
  // Publishing goes over HTTP with the client token; presence needs the WebSocket.
  const r = await page.evaluate(() => window.herald.publish('a', { n: 5 }, { idempotencyKey: 'e2e4-5' }));
  assert.match(r.cursor, /^c1\./);
  const again = await page.evaluate(() => window.herald.publish('a', { n: 5 }, { idempotencyKey: 'e2e4-5' }));
  assert.deepEqual(again, { ...r, duplicate: true }, 'the idempotency key holds over HTTP too');
  await expectAll(page, 'a', 6);
  const presence = await page.evaluate(() => window.herald.presence('a').then(() => 'resolved', (e) => e.code));
  assert.equal(presence, 'not_supported');
  // The proxy lets WebSockets through again: the background probe moves the client back.
  gate.blocked = false;
  await page.waitForFunction(() => window.herald.transportKind === 'websocket' && window.herald.state === 'connected', null, { timeout: 30_000 });
  await publishRange('e2e4', 'a', 6, 8);
  await publishRange('e2e4', 'b', 4, 6);
  await expectAll(page, 'a', 8);
  await expectAll(page, 'b', 6);
  const states = await page.evaluate(() => window.states);
  assert.ok(states.includes('connected/sse'), `${states}`);
  await ctx.close();
});
