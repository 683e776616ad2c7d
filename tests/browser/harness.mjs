// What the browser tests share: a `herald dev` on a free port, and Debian's Chromium driven by
// playwright-core (never a downloaded browser).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import readline from 'node:readline';
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';

export const BIN = process.env.HERALD_BIN ?? new URL('../../target/debug/herald', import.meta.url).pathname;
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/**
 * Starts `herald dev` on a free loopback port with a known API key. Resolves to its `url`, its
 * admin API `key`, a
 * `publish(account, channel, data)` over the HTTP API (asserting 200, resolving to the answer),
 * and `stop()`.
 */
export async function startHerald(name) {
  assert.ok(existsSync(BIN), `herald binary missing at ${BIN} (cargo build -p herald, or set HERALD_BIN)`);
  const key = `${name}-key-0123456789abcdef`;
  const srv = spawn(BIN, ['dev', '--listen', '127.0.0.1:0', '--dev-secret', `${name}-secret-0123456789`, '--dev-api-key', key], { stdio: ['ignore', 'pipe', 'ignore'] });
  const url = await new Promise((resolve, reject) => {
    srv.once('exit', (code) => reject(new Error(`herald dev exited (${code}) before listening`)));
    readline.createInterface({ input: srv.stdout }).on('line', (l) => {
      const m = l.match(/herald listening on (\S+)/);
      if (m) resolve(m[1]);
    });
  });
  srv.removeAllListeners('exit');
  srv.stdout.resume();
  return {
    url,
    key,
    async publish(account, channel, data) {
      const r = await fetch(url + '/v1/publish', { method: 'POST', headers: { authorization: 'Bearer ' + key }, body: JSON.stringify({ account, channel, data }) });
      assert.equal(r.status, 200, `publish: ${await r.clone().text()}`);
      return r.json();
    },
    stop() {
      srv.kill();
    },
  };
}

/** Launches headless Chromium (Debian's, at $CHROMIUM). */
export async function launchChromium() {
  assert.ok(existsSync(CHROMIUM), `chromium missing at ${CHROMIUM} (scripts/install-test-tools.sh)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
