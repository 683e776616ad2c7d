// Serves this checkout's SDK build (sdk/js/dist/herald.js) at /sdk/herald.js in a browser
// context, instead of the copy compiled into the herald binary: the SDK tests then check the SDK
// of this tree even against a herald built from another commit (HERALD_BIN).
import { existsSync } from 'node:fs';
import assert from 'node:assert/strict';

export const SDK_DIST = new URL('../../sdk/js/dist/herald.js', import.meta.url).pathname;

/**
 * Routes the `import` of /sdk/herald.js in every page of `ctx` to this checkout's build. A page
 * navigated to that URL still loads from the server: a document that does not come from the
 * network is not on the loopback address space, and Chromium would then block its WebSockets to
 * 127.0.0.1 (local network access checks).
 */
export async function useLocalSdk(ctx) {
  assert.ok(existsSync(SDK_DIST), `${SDK_DIST} missing (cd sdk/js && npm run build)`);
  await ctx.route(/\/sdk\/herald\.js$/, (route) =>
    route.request().isNavigationRequest() ? route.continue() : route.fulfill({ path: SDK_DIST, contentType: 'text/javascript; charset=utf-8' }),
  );
}
