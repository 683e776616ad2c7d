// The TypeScript SDK's newer calls end to end in headless Chromium against a real `herald dev`
// with `[edge.compression]` on: the compact encoding next to JSON on one channel (same records,
// same cursors, live and after a resume), permessage-deflate negotiated by the browser, history
// pages that join a live subscription exactly, and device registration over HTTP.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import readline from 'node:readline';
import { BIN, launchChromium } from './harness.mjs';
import { useLocalSdk } from './local-sdk.mjs';

const KEY = 'sdk-wire-key-0123456789abcdef';
let url;
let srv;
let browser;
let dir;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'herald-sdk-wire-'));
  const config = join(dir, 'herald.toml');
  writeFileSync(config, '[edge.compression]\nenabled = true\n');
  srv = spawn(BIN, ['dev', '--config', config, '--listen', '127.0.0.1:0', '--dev-secret', 'sdk-wire-secret-0123456789', '--dev-api-key', KEY], { stdio: ['ignore', 'pipe', 'ignore'] });
  url = await new Promise((resolve, reject) => {
    srv.once('exit', (code) => reject(new Error(`herald dev exited (${code}) before listening`)));
    readline.createInterface({ input: srv.stdout }).on('line', (l) => {
      const m = l.match(/herald listening on (\S+)/);
      if (m) resolve(m[1]);
    });
  });
  srv.removeAllListeners('exit');
  srv.stdout.resume();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  srv?.kill();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Publishes `{ n }` for each n in [from, to) on `channel` of `account`, over the HTTP API. */
async function publishRange(account, channel, from, to) {
  for (let n = from; n < to; n++) {
    const r = await fetch(url + '/v1/publish', { method: 'POST', headers: { authorization: 'Bearer ' + KEY }, body: JSON.stringify({ account, channel, data: { n } }) });
    assert.equal(r.status, 200, await r.text());
  }
}

/**
 * A page on herald dev's origin with this checkout's SDK, where `make(name, options)` builds a
 * client of `account` as `window.clients[name]`, recording its WebSockets in `window.sockets`
 * and the records of its subscriptions in `window.got[name]` ([id, cursor, n]).
 */
async function wirePage(account) {
  const ctx = await browser.newContext();
  await useLocalSdk(ctx);
  const page = await ctx.newPage();
  await page.goto(url + '/sdk/herald.js');
  await page.evaluate(async (account) => {
    const { HeraldClient } = await import('/sdk/herald.js');
    Object.assign(window, { clients: {}, got: {}, sockets: [], errors: [] });
    class Recorded extends WebSocket {
      constructor(u, p) {
        super(u, p);
        window.sockets.push(this);
      }
    }
    const token = async () => (await (await fetch(`/dev/token?account=${account}&sub=e2e`)).json()).token;
    window.make = (name, options = {}) => {
      const c = new HeraldClient({ url: location.origin, token, backoff: { baseMs: 100, capMs: 1000 }, environment: { WebSocket: Recorded, fetch: fetch.bind(window) }, ...options });
      c.on('error', (e) => window.errors.push(`${name}: ${e.code} ${e.message}`));
      window.clients[name] = c;
      window.got[name] = [];
      return c;
    };
    window.record = (name) => (m) => window.got[name].push([m.id, m.cursor, m.data.n]);
  }, account);
  return { ctx, page };
}

/** Waits until client `name` is connected with every subscription confirmed. */
async function ready(page, name, subs) {
  await page.waitForFunction(({ name, subs }) => window.clients[name].state === 'connected' && subs.every((s) => window[s].cursor !== undefined), { name, subs }, { timeout: 30_000 });
}

async function waitGot(page, name, n) {
  await page.waitForFunction(({ name, n }) => window.got[name].length >= n, { name, n }, { timeout: 30_000 });
  await page.waitForTimeout(300);
  return page.evaluate((name) => window.got[name], name);
}

test('proto and JSON clients on one channel get the same records with the same cursors, live and after a resume; the browser negotiates permessage-deflate', { timeout: 60_000 }, async () => {
  const { ctx, page } = await wirePage('w1');
  await page.evaluate(() => {
    window.subP = window.make('proto', { encoding: 'proto' }).subscribe('c', window.record('proto'));
    window.subJ = window.make('json').subscribe('c', window.record('json'));
  });
  await ready(page, 'proto', ['subP']);
  await ready(page, 'json', ['subJ']);
  await publishRange('w1', 'c', 0, 5);
  await waitGot(page, 'proto', 5);
  // Both away while records are published; back, each resumes from its own cursors.
  await page.evaluate(() => Object.values(window.clients).forEach((c) => c.pause()));
  await publishRange('w1', 'c', 5, 10);
  await page.evaluate(() => Object.values(window.clients).forEach((c) => c.resume()));
  const proto = await waitGot(page, 'proto', 10);
  const json = await waitGot(page, 'json', 10);
  assert.deepEqual(
    json.map(([, , n]) => n),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  );
  assert.deepEqual(proto, json, 'same ids and cursors, byte for byte');
  // A cursor taken on the JSON connection resumes a compact one exactly.
  await page.evaluate((since) => {
    window.subX = window.make('cross', { encoding: 'proto' }).subscribe('c', window.record('cross'), { since });
  }, json[3][1]);
  assert.deepEqual(await waitGot(page, 'cross', 6), json.slice(4));

  const wire = await page.evaluate(() => ({
    encodings: Object.fromEntries(Object.entries(window.clients).map(([k, c]) => [k, c.encoding])),
    sockets: window.sockets.map((s) => [s.protocol, s.extensions]),
    errors: window.errors,
  }));
  assert.deepEqual(wire.encodings, { proto: 'proto', json: 'json', cross: 'proto' });
  assert.ok(wire.sockets.some(([p]) => p === 'herald.v1.proto') && wire.sockets.some(([p]) => p === 'herald.v1.json'), JSON.stringify(wire.sockets));
  for (const [p, ext] of wire.sockets) assert.match(ext, /permessage-deflate/, `${p}: compression negotiated (${ext})`);
  assert.deepEqual(wire.errors, []);
  await ctx.close();
});

test('history: the newest N in order, pages without gap or overlap, then a subscription from the page cursor gets exactly what follows', { timeout: 60_000 }, async () => {
  // Another channel of the account shares its partition: pages must skip its records.
  for (let n = 0; n < 25; n++) {
    await publishRange('w2', 'h', n, n + 1);
    if (n % 3 === 0) await publishRange('w2', 'other', n, n + 1);
  }
  const { ctx, page } = await wirePage('w2');
  const result = await page.evaluate(async () => {
    const c = window.make('h', { encoding: 'proto' });
    const newest = await c.history('h', { limit: 10 });
    const backward = [];
    for await (const p of c.historyPages('h', { limit: 7 })) backward.unshift(...p.messages.map((m) => m.data.n));
    const forward = [];
    for await (const p of c.historyPages('h', { since: newest.messages[0].cursor, limit: 4 })) forward.push(...p.messages.map((m) => m.data.n));
    window.cursor = newest.cursor;
    return { newest: newest.messages.map((m) => m.data.n), channels: [...new Set(newest.messages.map((m) => m.channel))], backward, forward };
  });
  const range = (a, b) => Array.from({ length: b - a }, (_, i) => a + i);
  assert.deepEqual(result.newest, range(15, 25));
  assert.deepEqual(result.channels, ['h']);
  assert.deepEqual(result.backward, range(0, 25), 'every record once, in order, across 4 backward pages');
  assert.deepEqual(result.forward, range(16, 25));
  // Records published after the read, then the subscription from the page cursor, then live ones.
  await publishRange('w2', 'h', 25, 27);
  await page.evaluate(() => {
    window.subH = window.clients.h.subscribe('h', window.record('h'), { since: window.cursor });
  });
  await ready(page, 'h', ['subH']);
  await publishRange('w2', 'h', 27, 29);
  const got = await waitGot(page, 'h', 4);
  assert.deepEqual(
    got.map(([, , n]) => n),
    [25, 26, 27, 28],
  );
  await ctx.close();
});

test('devices: registered and removed over HTTP with the client token, visible to the server API; bad input refused', { timeout: 60_000 }, async () => {
  const { ctx, page } = await wirePage('w3');
  const token = 'ab'.repeat(32);
  const list = async () => {
    const r = await fetch(`${url}/v1/devices?user=e2e&account=w3`, { headers: { authorization: 'Bearer ' + KEY } });
    assert.equal(r.status, 200);
    return (await r.json()).devices;
  };
  // Called in the tick the client is made: it is not connected yet, so this goes over HTTP.
  const registered = await page.evaluate((token) => window.make('d').registerDevice({ platform: 'apns', token, app: 'com.example.oncall' }), token);
  assert.deepEqual(registered, { registered: true });
  const devices = await list();
  assert.equal(devices.length, 1);
  assert.equal(devices[0].app, 'com.example.oncall');
  assert.equal(devices[0].platform, 'apns');
  const bad = await page.evaluate(() => window.clients.d.registerDevice({ platform: 'apns', token: 'not a device token', app: 'x' }).then(() => 'registered', (e) => e.code));
  assert.equal(bad, 'bad_request');
  const removed = await page.evaluate((token) => window.clients.d.unregisterDevice({ platform: 'apns', token }), token);
  assert.deepEqual(removed, { registered: false });
  assert.deepEqual(await list(), []);
  await ctx.close();
});

test('a backend disconnect with reconnect:false stops both encodings, which stay down until connect()', { timeout: 60_000 }, async () => {
  const { ctx, page } = await wirePage('d1');
  await page.evaluate(() => {
    window.disc = [];
    for (const [name, options] of [['proto', { encoding: 'proto' }], ['json', {}]]) {
      const c = window.make(name, options);
      c.on('disconnected', (e) => window.disc.push([name, e.code, e.reason, e.reconnect]));
      window['sub' + name] = c.subscribe('c', window.record(name));
    }
  });
  await ready(page, 'proto', ['subproto']);
  await ready(page, 'json', ['subjson']);
  const r = await fetch(url + '/v1/disconnect?account=d1', { method: 'POST', headers: { authorization: 'Bearer ' + KEY }, body: JSON.stringify({ user: 'e2e', reason: 'account suspended', reconnect: false }) });
  assert.equal(r.status, 202, await r.text());
  await page.waitForFunction(() => window.disc.length >= 2, null, { timeout: 30_000 });
  const disc = await page.evaluate(() => window.disc.sort());
  assert.deepEqual(disc, [['json', 'disconnected', 'account suspended', false], ['proto', 'disconnected', 'account suspended', false]]);
  // Told not to reconnect: no new socket in two seconds, and both stay disconnected.
  const sockets = await page.evaluate(() => window.sockets.length);
  await page.waitForTimeout(2000);
  assert.equal(await page.evaluate(() => window.sockets.length), sockets, 'no reconnect attempt');
  assert.deepEqual(await page.evaluate(() => Object.values(window.clients).map((c) => c.state)), ['disconnected', 'disconnected']);
  // The app connects again: each channel resumes from its cursor.
  await page.evaluate(() => Object.values(window.clients).forEach((c) => c.connect()));
  await ready(page, 'proto', ['subproto']);
  await publishRange('d1', 'c', 0, 3);
  assert.deepEqual((await waitGot(page, 'proto', 3)).map(([, , n]) => n), [0, 1, 2]);
  await ctx.close();
});
