// Takes docs/demo-page.png: the demo page with a few incidents, in headless Chromium.
// usage: HERALD_BIN=…/herald node tests/browser/screenshot.mjs
import { spawn } from 'node:child_process';
import readline from 'node:readline';
import { chromium } from 'playwright-core';

const BIN = process.env.HERALD_BIN ?? new URL('../../target/debug/herald', import.meta.url).pathname;
const KEY = 'shot-key-0123456789abcdef';
const srv = spawn(BIN, ['dev', '--listen', '127.0.0.1:0', '--dev-secret', 'shot-secret-0123456789', '--dev-api-key', KEY], { stdio: ['ignore', 'pipe', 'ignore'] });
const url = await new Promise((resolve) => readline.createInterface({ input: srv.stdout }).on('line', (l) => {
  const m = l.match(/herald listening on (\S+)/);
  if (m) resolve(m[1]);
}));
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu'] });
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 560 } });
  await page.goto(url + '/');
  await page.waitForFunction(() => document.getElementById('state').textContent === 'connected');
  const incidents = [
    ['PAM4FGS', 'triggered', 'Checkout API error rate above 5%'],
    ['PQ81XZT', 'triggered', 'Replica lag on orders-db-2'],
    ['PAM4FGS', 'acknowledged', 'Checkout API error rate above 5%'],
    ['PLK22MV', 'resolved', 'Certificate renewal failed on edge-eu-1'],
    ['PZ9C0QE', 'updated', 'Elevated p99 latency in eu-west'],
  ];
  for (const [id, type, title] of incidents) {
    await fetch(url + '/v1/publish', { method: 'POST', headers: { authorization: 'Bearer ' + KEY }, body: JSON.stringify({ account: 'demo', channel: 'incidents', data: { ent: 'incident', id, type, title } }) });
  }
  await page.waitForFunction(() => document.querySelectorAll('li').length === 4);
  await new Promise((r) => setTimeout(r, 600));
  await page.screenshot({ path: new URL('../../docs/demo-page.png', import.meta.url).pathname });
} finally {
  await browser.close();
  srv.kill();
}
