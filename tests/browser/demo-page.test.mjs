// The demo page `herald dev` serves at `/` (built on the TypeScript SDK), in a real browser: live
// records appear, an update to an incident updates its row, a cut connection resumes with
// nothing lost or doubled, and the publish button works.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launchChromium, startHerald } from './harness.mjs';

test('the demo page shows live incidents, survives a cut connection and publishes', { timeout: 120_000 }, async () => {
  const herald = await startHerald('demo');
  const publish = (data) => herald.publish('demo', 'incidents', data);
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    await page.goto(herald.url + '/');
    // Connected, and the subscription confirmed by the server (it has a cursor).
    await page.waitForFunction(() => document.getElementById('state').textContent === 'connected' && window.incidents?.cursor !== undefined);
    await publish({ ent: 'incident', id: 'P1', type: 'triggered', title: 'one' });
    await publish({ ent: 'incident', id: 'P2', type: 'triggered', title: 'two' });
    await page.waitForFunction(() => document.querySelectorAll('li').length === 2);
    await publish({ ent: 'incident', id: 'P1', type: 'acknowledged', title: 'one' });
    await page.waitForFunction(() => document.querySelector('li .type').textContent === 'acknowledged');
    assert.deepEqual(await page.$$eval('li .id', (els) => els.map((e) => e.textContent)), ['P1', 'P2'], 'an update moves its row to the top, no new row');
    // Cut the socket, publish while it is down: the page resumes from its cursor.
    await page.evaluate(() => window.herald.dropConnection());
    await publish({ ent: 'incident', id: 'P3', type: 'triggered', title: 'three' });
    await publish({ ent: 'incident', id: 'P4', type: 'resolved', title: 'four' });
    await page.waitForFunction(() => document.querySelectorAll('li').length >= 4, null, { timeout: 30_000 });
    await page.click('#publish');
    await page.waitForFunction(() => document.querySelectorAll('li').length >= 5, null, { timeout: 30_000 });
    // Connected, and the subscription confirmed by the server (it has a cursor).
    await page.waitForFunction(() => document.getElementById('state').textContent === 'connected' && window.incidents?.cursor !== undefined);
    const ids = await page.$$eval('li .id', (els) => els.map((e) => e.textContent));
    assert.equal(ids.length, 5, `every incident once: ${ids}`);
    assert.deepEqual(ids.slice(1), ['P4', 'P3', 'P1', 'P2'], 'newest first, in order, nothing doubled');
    assert.match(await page.textContent('#hint'), /^published /);
  } finally {
    await browser.close();
    herald.stop();
  }
});
