// The TypeScript SDK (sdk/js, served by `herald dev` at /sdk/) end to end in headless Chromium
// against a real `herald dev`: live records, a cut connection, offline/online, token refresh,
// and the SSE fallback when WebSockets are blocked. Every check is on what the page received:
// each published record once, in order.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import readline from 'node:readline';
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';

const BIN = process.env.HERALD_BIN ?? new URL('../../target/debug/herald', import.meta.url).pathname;
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const KEY = 'sdk-e2e-key-0123456789abcdef';
let srv, url, browser;

before(async () => {
  assert.ok(existsSync(BIN), `herald binary missing at ${BIN} (cargo build -p herald)`);
  assert.ok(existsSync(CHROMIUM), `chromium missing at ${CHROMIUM} (scripts/install-test-tools.sh)`);
  srv = spawn(BIN, ['dev', '--listen', '127.0.0.1:0', '--dev-secret', 'sdk-e2e-secret-0123456789', '--dev-api-key', KEY], { stdio: ['ignore', 'pipe', 'ignore'] });
  url = await new Promise((resolve) => readline.createInterface({ input: srv.stdout }).on('line', (l) => {
    const m = l.match(/herald listening on (\S+)/);
    if (m) resolve(m[1]);
  }));
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  srv?.kill();
});

async function publish(account, channel, n) {
  const r = await fetch(url + '/v1/publish', { method: 'POST', headers: { authorization: 'Bearer ' + KEY }, body: JSON.stringify({ account, channel, data: { n } }) });
  assert.equal(r.status, 200);
}

/**
 * A page on herald dev's origin with an SDK client subscribed to `channel` of `account`, its
 * received `n`s in `window.got` and its states in `window.states`. `token` is the query of
 * /dev/token (a `ttl` for short tokens); `setup` runs in the page before connecting.
 */
async function sdkPage(account, channel, { ttl, lifecycle = false, context } = {}) {
  const ctx = context ?? (await browser.newContext());
  const page = await ctx.newPage();
  await page.goto(url + '/sdk/index.js');
  await page.evaluate(async ({ account, channel, ttl, lifecycle }) => {
    const { HeraldClient, attachBrowserLifecycle } = await import('/sdk/index.js');
    window.got = [];
    window.states = [];
    window.tokens = 0;
    const token = async () => {
      window.tokens += 1;
      const r = await fetch(`/dev/token?account=${account}&sub=e2e${ttl ? `&ttl=${ttl}` : ''}`);
      return (await r.json()).token;
    };
    window.herald = new HeraldClient({ url: location.origin, token, backoff: { baseMs: 100, capMs: 1000 }, upgradeEveryMs: 2000 });
    window.herald.on('state', (s) => window.states.push(`${s.state}/${s.transport}`));
    if (lifecycle) attachBrowserLifecycle(window.herald);
    window.herald.subscribe(channel, (m) => window.got.push(m.data.n));
  }, { account, channel, ttl, lifecycle });
  await page.waitForFunction(() => window.herald.state === 'connected');
  return { page, ctx };
}

const received = (page) => page.evaluate(() => window.got);
async function expectAll(page, n) {
  await page.waitForFunction((n) => window.got.length >= n, n, { timeout: 30_000 });
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(await received(page), [...Array(n).keys()], 'every record once, in order');
}

test('live records arrive; a cut connection resumes with nothing lost or doubled', { timeout: 60_000 }, async () => {
  const { page, ctx } = await sdkPage('e2e1', 'c');
  for (let n = 0; n < 5; n++) await publish('e2e1', 'c', n);
  await page.waitForFunction(() => window.got.length === 5);
  await page.evaluate(() => window.herald.dropConnection());
  for (let n = 5; n < 10; n++) await publish('e2e1', 'c', n);
  await expectAll(page, 10);
  assert.equal(await page.evaluate(() => window.herald.state), 'connected');
  await ctx.close();
});

test('offline then online: the lifecycle hook closes and reopens, and the records published meanwhile arrive once', { timeout: 60_000 }, async () => {
  const { page, ctx } = await sdkPage('e2e2', 'c', { lifecycle: true });
  await publish('e2e2', 'c', 0);
  await page.waitForFunction(() => window.got.length === 1);
  await ctx.setOffline(true);
  await page.waitForFunction(() => window.herald.state === 'disconnected');
  for (let n = 1; n < 6; n++) await publish('e2e2', 'c', n);
  await ctx.setOffline(false);
  await page.waitForFunction(() => window.herald.state === 'connected', null, { timeout: 30_000 });
  await expectAll(page, 6);
  assert.ok((await page.evaluate(() => window.states)).some((s) => s.startsWith('disconnected')));
  await ctx.close();
});

test('a short token is refreshed before it expires and the connection stays up', { timeout: 60_000 }, async () => {
  // ttl 6 s: the server warns at ~3 s, the SDK fetches a new token and sends `refresh`.
  const { page, ctx } = await sdkPage('e2e3', 'c', { ttl: 6 });
  await publish('e2e3', 'c', 0);
  await new Promise((r) => setTimeout(r, 9_000));
  await publish('e2e3', 'c', 1);
  await expectAll(page, 2);
  const states = await page.evaluate(() => window.states);
  assert.ok(!states.some((s) => s.startsWith('disconnected')), `never disconnected: ${states}`);
  assert.ok((await page.evaluate(() => window.tokens)) >= 2, 'a new token was fetched');
  await ctx.close();
});

test('WebSockets blocked: the SDK falls back to SSE, receives and publishes there, and returns to the WebSocket', { timeout: 90_000 }, async () => {
  const ctx = await browser.newContext();
  let blocked = true;
  await ctx.routeWebSocket(/\/v1\/ws/, (ws) => {
    if (blocked) ws.close({ code: 1006, reason: 'blocked by a proxy' });
    else ws.connectToServer();
  });
  const { page } = await sdkPage('e2e4', 'c', { context: ctx });
  assert.equal(await page.evaluate(() => window.herald.transportKind), 'sse');
  for (let n = 0; n < 3; n++) await publish('e2e4', 'c', n);
  await page.waitForFunction(() => window.got.length === 3);
  // Publishing over HTTP with the client token, since there is no socket to send it on.
  const published = await page.evaluate(() => window.herald.publish('c', { n: 3 }));
  assert.match(published.cursor, /^c1\./);
  await expectAll(page, 4);
  // The proxy lets WebSockets through again: the periodic probe moves the client back.
  blocked = false;
  await page.waitForFunction(() => window.herald.transportKind === 'websocket' && window.herald.state === 'connected', null, { timeout: 30_000 });
  for (let n = 4; n < 6; n++) await publish('e2e4', 'c', n);
  await expectAll(page, 6);
  await ctx.close();
});
