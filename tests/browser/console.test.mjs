// The operator's console in headless Chromium: against `herald dev` (log in, this node in the
// Cluster page, a live tail that shows a published record, refusals without the cookie or with a
// forged CSRF token), and against two edges with a control plane (both edges listed, one drained
// from the UI, limits edited). Screenshots of every page go to docs/console/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { BIN, launchChromium, startHerald } from './harness.mjs';

const SHOTS = new URL('../../docs/console/', import.meta.url).pathname;
mkdirSync(SHOTS, { recursive: true });
const shot = (page, name) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });

/** Logs in through the form and waits for the Cluster page. */
async function login(page, url, key) {
  await page.goto(url + '/console/');
  await page.waitForSelector('#login:not([hidden])');
  await page.fill('#token', 'not-the-key-0123456789');
  await page.click('#login-form button');
  await page.waitForFunction(() => document.getElementById('login-error').textContent.length > 0);
  assert.match(await page.textContent('#login-error'), /admin API key/);
  await page.fill('#token', key);
  await page.click('#login-form button');
  await page.waitForSelector('#nav:not([hidden])');
}

const showPage = async (page, name) => {
  await page.evaluate((n) => { location.hash = n; }, name);
  await page.waitForFunction((n) => document.getElementById('page').dataset.page === n && document.getElementById('page').dataset.loaded === 'true', name);
};

test('herald dev: log in, see this node, tail a channel, and refusals change nothing', { timeout: 120_000 }, async () => {
  const herald = await startHerald('console');
  const browser = await launchChromium();
  try {
    // No cookie: refused, for reads and for actions.
    for (const [method, p] of [['GET', '/console/api/cluster'], ['POST', '/console/api/drain']]) {
      const r = await fetch(herald.url + p, { method, body: method === 'POST' ? '{"node":"x"}' : undefined });
      assert.equal(r.status, 401, `${method} ${p} without the cookie`);
      assert.equal((await r.json()).error.code, 'unauthorized');
    }
    const page = await browser.newPage({ viewport: { width: 1200, height: 720 } });
    await page.goto(herald.url + '/console/');
    await page.waitForSelector('#login:not([hidden])');
    await shot(page, 'login');
    await login(page, herald.url, herald.key);

    // Cluster: this node, ready, no control plane.
    await showPage(page, 'cluster');
    const node = await page.evaluate(() => fetch('/console/api/session').then((r) => r.json()).then((s) => s.node));
    await page.waitForSelector(`tr[data-node="${node}"]`);
    await page.waitForFunction((n) => document.querySelector(`tr[data-node="${n}"] .health`).textContent === 'healthy', node);
    assert.equal(await page.textContent(`tr[data-node="${node}"] .state`), 'active');
    await shot(page, 'cluster-dev');

    // A forged or missing CSRF token, or another origin, is refused, and nothing happens.
    const refusals = await page.evaluate(async () => {
      const post = (headers) => fetch('/console/api/limits', { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ account: 'demo', limits: { connections: 1, publish_per_second: 0, max_subscriptions: 0, max_message_bytes: 0 } }) }).then(async (r) => [r.status, (await r.json()).error?.message]);
      return [await post({}), await post({ 'x-csrf-token': 'f'.repeat(64) })];
    });
    for (const [status, message] of refusals) {
      assert.equal(status, 403);
      assert.match(message, /CSRF/);
    }
    const cookie = (await page.context().cookies()).find((c) => c.name === 'herald_console');
    assert.ok(cookie.httpOnly && cookie.sameSite === 'Strict', 'the session cookie is HttpOnly and SameSite=Strict');
    const csrf = await page.evaluate(() => fetch('/console/api/session').then((r) => r.json()).then((s) => s.csrf));
    const cross = await fetch(herald.url + '/console/api/logout', { method: 'POST', headers: { cookie: `herald_console=${cookie.value}`, 'x-csrf-token': csrf, origin: 'http://evil.example' } });
    assert.equal(cross.status, 403, 'another origin is refused even with the cookie and the token');
    const still = await fetch(herald.url + '/console/api/cluster', { headers: { cookie: `herald_console=${cookie.value}` } });
    assert.equal(still.status, 200, 'the refused calls changed nothing: the session still works');

    // Channels: a live tail shows a published record, with its cursor.
    await showPage(page, 'channels');
    await page.fill('#ch-account', 'demo');
    await page.fill('#ch-name', 'incidents');
    await page.click('#ch-form button');
    await page.waitForFunction(() => document.getElementById('tail-status').dataset.open === 'true');
    const published = await herald.publish('demo', 'incidents', { ent: 'incident', id: 'PAM4FGS', type: 'updated', title: 'Checkout API error rate above 5%' });
    const started = Date.now();
    await page.waitForFunction((cursor) => [...document.querySelectorAll('#tail .record .cursor')].some((c) => c.textContent === cursor), published.cursor, { timeout: 10_000 });
    console.log(`# the published record appeared in the tail after ${Date.now() - started} ms`);
    for (const [id, type] of [['PQ81XZT', 'triggered'], ['PLK22MV', 'resolved']]) await herald.publish('demo', 'incidents', { ent: 'incident', id, type });
    await page.waitForFunction(() => document.querySelectorAll('#tail .record').length === 3);
    await shot(page, 'channels');

    await showPage(page, 'health');
    await page.waitForSelector(`tr[data-node="${node}"]`);
    await page.waitForSelector('tr[data-alert="HeraldEdgeNotReady"]');
    // Two samples of the node's metrics (taken every 5 s): rates have a range to work on.
    await page.waitForFunction(() => Number(document.getElementById('samples')?.dataset.samples) >= 2, null, { timeout: 30_000 });
    const states = await page.$$eval('tr[data-alert] .pill', (els) => els.map((e) => e.textContent));
    assert.deepEqual([...new Set(states)], ['ok'], 'a healthy, idle herald dev fires no alert');
    await shot(page, 'health-dev');
    await showPage(page, 'accounts');
    await showPage(page, 'regions');
    assert.match(await page.textContent('#page'), /No replicators configured/);
  } finally {
    await browser.close();
    herald.stop();
  }
});

/** A free loopback port (for the control plane's --init, which names its own address). */
const freePort = () => new Promise((resolve) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => {
    const { port } = s.address();
    s.close(() => resolve(port));
  });
});

/** Spawns `herald ARGS`; resolves once a stdout line matches `ready` (with the match). */
function start(args, env, ready) {
  const p = spawn(BIN, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  p.stderr.resume();
  const matched = ready ? new Promise((resolve, reject) => {
    p.once('exit', (code) => reject(new Error(`herald ${args[0]} exited (${code})`)));
    readline.createInterface({ input: p.stdout }).on('line', (l) => {
      const m = l.match(ready);
      if (m) resolve(m);
    });
  }) : Promise.resolve(null);
  return { p, matched };
}

// Submits `form` until `saved()` holds in the page. The form shows the control plane's error
// when a save fails; a busy machine can make the control plane miss the console's 5 s deadline
// ("unavailable"), which the operator would answer by saving again: so does this, at most 3 times.
async function submitUntilSaved(page, form, saved) {
  for (let attempt = 1; ; attempt++) {
    await page.click(`${form} button[type="submit"]`);
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (await page.evaluate(saved)) return;
      const error = await page.evaluate((form) => document.querySelector(`${form} .error`)?.textContent || '', form);
      if (error) {
        assert.ok(attempt < 3 && /unavailable|no answer/i.test(error), `saving ${form} failed: ${error}`);
        break;
      }
      assert.ok(Date.now() < deadline, `${form} was neither saved nor refused within 60 s`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

test('two edges and a control plane: both listed, one drained from the UI, limits edited', { timeout: 180_000 }, async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'herald-console-'));
  const port = await freePort();
  const ADMIN = 'console-admin-token-0123456789';
  const EDGE = 'console-edge-token-0123456789';
  const KEY = 'console-admin-key-0123456789';
  const control = start(['control', '--id', '1', '--listen', `127.0.0.1:${port}`, '--data', path.join(dir, 'data'), '--init', `1=127.0.0.1:${port}`, '--admin-token', ADMIN, '--edge-token', EDGE, '--edge-heartbeat-ms', '500'], {});
  // A stand-in for a replicator's /metrics (a real one needs two Kafka clusters): the lag of one
  // link, in the replicator's own metric names, growing then shrinking across scrapes.
  let scrapes = 0;
  const replicator = http.createServer((req, res) => {
    const n = scrapes++;
    const [records, seconds] = [[0, 0], [40, 0.3], [260, 0.6], [120, 1.9], [30, 0.8], [0, 0]][n % 6];
    res.end(`# TYPE herald_replication_lag_records gauge\nherald_replication_lag_records{link="eu-west->us-east"} ${records}\n# TYPE herald_replication_lag_seconds gauge\nherald_replication_lag_seconds{link="eu-west->us-east"} ${seconds}\n`);
  });
  await new Promise((resolve) => replicator.listen(0, '127.0.0.1', resolve));
  // A drain holds for in-flight requests, up to the grace: long enough to see it in the UI.
  writeFileSync(path.join(dir, 'edge.toml'), `[edge]\ndrain_grace_ms = 60000\n[console]\nreplicators = ["http://127.0.0.1:${replicator.address().port}"]\n`);
  const env = { HERALD_JWT_SECRET: 'console-secret-0123456789', HERALD_CONTROL: `127.0.0.1:${port}`, HERALD_CONTROL_EDGE_TOKEN: EDGE, HERALD_CONTROL_ADMIN_TOKEN: ADMIN, HERALD_ADMIN_API_KEY: KEY };
  const edges = ['edge-a', 'edge-b'].map((n, i) => start(['edge', '--config', path.join(dir, 'edge.toml'), '--listen', `127.0.0.1:0`, '--bus', 'memory', '--node', n], { ...env, HERALD_ADMIN_LISTEN: `127.0.0.${i + 2}:0` }, /operator console on (http:\S+)\/console\//));
  const [[, consoleA]] = await Promise.all(edges.map((e) => e.matched));
  const browser = await launchChromium();
  let held = null;
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
    await login(page, consoleA, KEY);
    await showPage(page, 'cluster');
    for (const n of ['edge-a', 'edge-b']) {
      await page.waitForFunction((n) => document.querySelector(`tr[data-node="${n}"] .health`)?.textContent === 'healthy', n, { timeout: 60_000 });
    }
    await page.waitForFunction(() => document.querySelector('.facts') !== null, null, { timeout: 30_000 });
    await shot(page, 'cluster');

    // Hold edge-b's drain open: a publish whose body is still on its way is an in-flight request.
    const bAddr = (await page.evaluate(() => fetch('/console/api/cluster').then((r) => r.json()))).edges.find((e) => e.node === 'edge-b').address.replace('http://', '');
    const [host, p] = bAddr.split(':');
    held = net.connect(Number(p), host);
    await new Promise((resolve) => held.once('connect', resolve));
    held.write(`POST /v1/publish HTTP/1.1\r\nHost: ${bAddr}\r\nAuthorization: Bearer ${KEY}\r\nContent-Length: 1000\r\n\r\n{"account":`);

    // Drain edge-b from the UI, after the confirmation.
    await page.click('tr[data-node="edge-b"] button.drain');
    await page.waitForSelector('#dialog:not([hidden])');
    assert.match(await page.textContent('#dialog-text'), /Drain edge-b\?/);
    await page.click('#dialog-ok');
    await page.waitForFunction(() => document.querySelector('tr[data-node="edge-b"] .state')?.textContent === 'draining', null, { timeout: 30_000 });
    assert.equal(await page.textContent('tr[data-node="edge-a"] .state'), 'active', 'only edge-b drains');
    await shot(page, 'cluster-drained');

    // Health: each edge's /readyz, edge-b's says why it is not ready.
    await showPage(page, 'health');
    await page.waitForFunction(() => document.querySelector('tr[data-node="edge-b"]')?.textContent.includes('draining'), null, { timeout: 30_000 });
    await page.waitForFunction(() => document.querySelector('tr[data-node="edge-a"]')?.textContent.includes('ready'));
    await shot(page, 'health');

    // Accounts: add one, then edit its limits; the control plane stores them.
    await showPage(page, 'accounts');
    await page.fill('#new-account', 'acme');
    await submitUntilSaved(page, '#add-account', () => document.querySelector('tr[data-account="acme"]') !== null);
    await page.click('tr[data-account="acme"] button.edit');
    await page.fill('input[name="publish_per_second"]', '250');
    await submitUntilSaved(page, 'form.limits', () => document.querySelector('tr[data-account="acme"]')?.children[4].textContent === '250');
    // A publish key made with herald ctl shows as its id and digest, never as the key.
    const made = JSON.parse(execFileSync(BIN, ['ctl', '--control', `127.0.0.1:${port}`, '--json', 'add-key', 'acme'], { env: { ...process.env, HERALD_CONTROL_ADMIN_TOKEN: ADMIN } }).toString());
    await showPage(page, 'cluster');
    await showPage(page, 'accounts');
    await page.waitForFunction((id) => document.querySelector('tr[data-account="acme"]')?.textContent.includes(id), made.key_id);
    assert.ok(!(await page.textContent('#page')).includes(made.key), 'the key itself is never shown');
    await shot(page, 'accounts');

    // Regions: the link's lag now and over the samples taken so far.
    await showPage(page, 'regions');
    await page.waitForFunction(() => document.querySelector('#page td.mono')?.textContent === 'eu-west->us-east' && document.querySelector('svg.chart polyline')?.getAttribute('points').split(' ').length >= 4, null, { timeout: 60_000 });
    await shot(page, 'regions');
  } finally {
    held?.destroy();
    await browser.close();
    for (const e of edges) e.p.kill();
    control.p.kill();
    replicator.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
