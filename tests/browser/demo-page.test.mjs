// The demo page `herald dev` serves at `/`, in a real browser: live records appear, a cut
// connection resumes with nothing lost or doubled, and the publish button works.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import readline from 'node:readline';
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';

const BIN = process.env.HERALD_BIN ?? new URL('../../target/debug/herald', import.meta.url).pathname;
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const KEY = 'browser-key-0123456789abcdef';

test('the demo page shows live incidents, survives a cut connection and publishes', { timeout: 120_000 }, async () => {
  assert.ok(existsSync(BIN), `herald binary missing at ${BIN} (cargo build -p herald)`);
  assert.ok(existsSync(CHROMIUM), `chromium missing at ${CHROMIUM} (scripts/install-test-tools.sh)`);
  const srv = spawn(BIN, ['dev', '--listen', '127.0.0.1:0', '--dev-secret', 'browser-secret-0123456789', '--dev-api-key', KEY], { stdio: ['ignore', 'pipe', 'ignore'] });
  const url = await new Promise((resolve) => readline.createInterface({ input: srv.stdout }).on('line', (l) => {
    const m = l.match(/herald listening on (\S+)/);
    if (m) resolve(m[1]);
  }));
  const publish = async (data) => {
    const r = await fetch(url + '/v1/publish', { method: 'POST', headers: { authorization: 'Bearer ' + KEY }, body: JSON.stringify({ account: 'demo', channel: 'incidents', data }) });
    assert.equal(r.status, 200);
  };
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    await page.goto(url + '/');
    await page.waitForFunction(() => document.getElementById('state').textContent === 'connected');
    await publish({ ent: 'incident', id: 'P1', type: 'triggered', title: 'one' });
    await publish({ ent: 'incident', id: 'P2', type: 'triggered', title: 'two' });
    await page.waitForFunction(() => document.querySelectorAll('li').length === 2);
    // Cut the socket, publish while it is down: the page resumes from its cursor.
    await page.evaluate(() => herald.dropConnection());
    await publish({ ent: 'incident', id: 'P3', type: 'acknowledged', title: 'three' });
    await publish({ ent: 'incident', id: 'P4', type: 'resolved', title: 'four' });
    await page.waitForFunction(() => document.querySelectorAll('li').length >= 4, null, { timeout: 30_000 });
    await page.click('#publish');
    await page.waitForFunction(() => document.querySelectorAll('li').length >= 5, null, { timeout: 30_000 });
    await new Promise((r) => setTimeout(r, 500));
    const ids = await page.$$eval('li .id', (els) => els.map((e) => e.textContent));
    assert.equal(ids.length, 5, `every record once: ${ids}`);
    assert.deepEqual(ids.slice(1), ['P4', 'P3', 'P2', 'P1'], 'newest first, in order, nothing doubled');
    assert.match(await page.textContent('#hint'), /^published /);
  } finally {
    await browser.close();
    srv.kill();
  }
});
