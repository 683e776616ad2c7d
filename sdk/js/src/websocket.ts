/** The WebSocket transport: `GET /v1/ws`, authenticated by its first frame. */
import { encodeFrame, parseFrames } from './frames.js';
import type { Environment, Transport, TransportEvents, TransportRequest } from './transport.js';

/** The subprotocol of JSON frames. */
const SUBPROTOCOL = 'herald.v1.json';

/**
 * Opens a WebSocket. Browsers cannot set headers on one, so the token goes in an `auth` frame
 * first; `tokenInQuery` puts it in `?token=` instead, for where neither works (it then shows in
 * proxy logs).
 */
export function openWebSocket(env: Environment, req: TransportRequest, ev: TransportEvents, tokenInQuery = false): Transport {
  const Ctor = env.WebSocket;
  if (!Ctor) throw new Error('no WebSocket in this environment');
  let url = req.baseUrl.replace(/^http/, 'ws') + '/v1/ws';
  if (tokenInQuery) url += '?token=' + encodeURIComponent(req.token);
  const ws = new Ctor(url, SUBPROTOCOL);
  let done = false;
  const detach = () => {
    done = true;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
  };
  ws.onopen = () => {
    if (!tokenInQuery) ws.send(encodeFrame({ type: 'auth', token: req.token }));
  };
  ws.onmessage = (m) => {
    if (typeof m.data !== 'string') return ev.garbage('a binary message');
    const parsed = parseFrames(m.data);
    for (const e of parsed.errors) ev.garbage(e);
    if (parsed.frames.length > 0) ev.frames(parsed.frames);
  };
  // The close event that follows carries the code.
  ws.onerror = () => undefined;
  ws.onclose = (c) => {
    detach();
    ev.closed(c.code, c.reason || `closed (${c.code})`);
  };
  return {
    kind: 'websocket',
    send(frame) {
      if (done || ws.readyState !== 1) return false;
      ws.send(encodeFrame(frame));
      return true;
    },
    close() {
      if (done) return;
      detach();
      try {
        ws.close(1000, 'client closed');
      } catch {
        // Already closing.
      }
    },
  };
}
