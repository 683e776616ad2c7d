// Takes docs/demo-page.png: the demo page with a few incidents (one of them updated), in headless
// Chromium against a real `herald dev`.
// usage: HERALD_BIN=…/herald node tests/browser/screenshot.mjs
import { launchChromium, startHerald } from './harness.mjs';

const herald = await startHerald('shot');
const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 560 } });
  await page.goto(herald.url + '/');
  await page.waitForFunction(() => document.getElementById('state').textContent === 'connected');
  const incidents = [
    ['PAM4FGS', 'triggered', 'Checkout API error rate above 5%'],
    ['PQ81XZT', 'triggered', 'Replica lag on orders-db-2'],
    ['PAM4FGS', 'acknowledged', 'Checkout API error rate above 5%'],
    ['PLK22MV', 'resolved', 'Certificate renewal failed on edge-eu-1'],
    ['PZ9C0QE', 'updated', 'Elevated p99 latency in eu-west'],
  ];
  for (const [id, type, title] of incidents) await herald.publish('demo', 'incidents', { ent: 'incident', id, type, title });
  await page.waitForFunction(() => document.querySelectorAll('li').length === 4);
  // Let the row highlight fade.
  await page.waitForTimeout(600);
  await page.screenshot({ path: new URL('../../docs/demo-page.png', import.meta.url).pathname });
} finally {
  await browser.close();
  herald.stop();
}
