// attachBrowserLifecycle against a fake window: offline/online, hidden/visible, pagehide/pageshow.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attachBrowserLifecycle } from '../../dist/herald.js';
import { FakeWebSocket, accept, advance, done, makeClient } from './fakes.mjs';

/** Installs a fake `window` (document, navigator, events) on globalThis for the test. */
function fakeWindow(t, { onLine = true } = {}) {
  const listeners = new Map();
  const on = (type, f) => listeners.set(type, (listeners.get(type) ?? new Set()).add(f));
  const off = (type, f) => listeners.get(type)?.delete(f);
  const doc = { visibilityState: 'visible', addEventListener: on, removeEventListener: off };
  const win = { document: doc, navigator: { onLine }, addEventListener: on, removeEventListener: off };
  for (const [k, v] of Object.entries(win)) {
    const had = Object.getOwnPropertyDescriptor(globalThis, k);
    Object.defineProperty(globalThis, k, { value: v, configurable: true, writable: true });
    t.after(() => (had ? Object.defineProperty(globalThis, k, had) : delete globalThis[k]));
  }
  return {
    fire(type, e = {}) {
      for (const f of listeners.get(type) ?? []) f(e);
    },
    hide() {
      doc.visibilityState = 'hidden';
      this.fire('visibilitychange');
    },
    show() {
      doc.visibilityState = 'visible';
      this.fire('visibilitychange');
    },
    count: () => [...listeners.values()].reduce((n, s) => n + s.size, 0),
  };
}

test('offline closes and online reopens; a page hidden for the delay closes, visible reopens; pagehide/pageshow too', async (t) => {
  const win = fakeWindow(t);
  const { c, states } = makeClient();
  c.subscribe('a', () => {});
  const detach = attachBrowserLifecycle(c, { backgroundDelayMs: 5000 });
  await accept();
  win.fire('offline');
  assert.equal(c.state, 'disconnected');
  assert.equal(FakeWebSocket.last().closedWith, 1000);
  await advance(60_000);
  assert.equal(FakeWebSocket.all.length, 1, 'stays closed while offline');
  win.fire('online');
  await accept();
  assert.equal(FakeWebSocket.all.length, 2);

  win.hide();
  await advance(4999);
  assert.equal(c.state, 'connected', 'a quick tab switch keeps the connection');
  win.show();
  win.hide();
  await advance(5000);
  assert.equal(c.state, 'disconnected', 'hidden for the delay: closed');
  win.fire('online');
  await advance(1000);
  assert.equal(FakeWebSocket.all.length, 2, 'online while hidden does not reopen');
  win.show();
  await accept();
  assert.equal(FakeWebSocket.all.length, 3);

  win.fire('pagehide', { persisted: true });
  assert.equal(c.state, 'disconnected');
  win.fire('pageshow', { persisted: true });
  await accept();
  assert.equal(FakeWebSocket.all.length, 4);
  assert.ok(states.filter((s) => s === 'disconnected').length >= 3);

  detach();
  assert.equal(win.count(), 0, 'every listener removed');
  win.fire('offline');
  assert.equal(c.state, 'connected');
  done(c);
});

test("background: 'keep' stays connected when hidden; a page that starts offline starts closed", async (t) => {
  const win = fakeWindow(t, { onLine: false });
  const { c } = makeClient();
  attachBrowserLifecycle(c, { background: 'keep', backgroundDelayMs: 10 });
  await advance(1000);
  assert.equal(FakeWebSocket.all.length, 0, 'offline at start: nothing opened');
  assert.equal(c.state, 'disconnected');
  win.fire('online');
  await accept();
  win.hide();
  await advance(40_000); // within two heartbeats
  assert.equal(c.state, 'connected');
  done(c);
});
