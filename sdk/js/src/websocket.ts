/** The WebSocket transport: `GET /v1/ws`, authenticated by its first frame, in JSON or the compact encoding. */
import { CompactReader, encodeCompact, PROTO_SUBPROTOCOL } from './compact.js';
import { encodeFrame, parseFrames, type ClientFrame } from './frames.js';
import type { Environment, Transport, TransportEvents, TransportRequest } from './transport.js';

/** The subprotocol of JSON frames. */
const JSON_SUBPROTOCOL = 'herald.v1.json';

/** The frame encodings a WebSocket can speak (SSE and long-poll are always JSON). */
export type Encoding = 'json' | 'proto';

/**
 * Opens a WebSocket. Browsers cannot set headers on one, so the token goes in an `auth` frame
 * first; `tokenInQuery` puts it in `?token=` instead, for where neither works (it then shows in
 * proxy logs). With `encoding: 'proto'` it asks for `herald.v1.proto`; a server that picks no
 * subprotocol gets JSON on this connection.
 */
export function openWebSocket(env: Environment, req: TransportRequest, ev: TransportEvents, tokenInQuery = false, encoding: Encoding = 'json'): Transport {
  const Ctor = env.WebSocket;
  if (!Ctor) throw new Error('no WebSocket in this environment');
  let url = req.baseUrl.replace(/^http/, 'ws') + '/v1/ws';
  if (tokenInQuery) url += '?token=' + encodeURIComponent(req.token);
  const ws = encoding === 'proto' ? new Ctor(url, [PROTO_SUBPROTOCOL]) : new Ctor(url, JSON_SUBPROTOCOL);
  if (encoding === 'proto') ws.binaryType = 'arraybuffer';
  /** Set at `open`, when the server's choice is known. */
  let reader: CompactReader | undefined;
  let done = false;
  const detach = () => {
    done = true;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
  };
  const write = (frame: ClientFrame) => ws.send(reader ? encodeCompact(frame) : encodeFrame(frame));
  /** A frame that cannot be read: the stream is out of step, so the connection ends (and resumes from its cursors). */
  const unreadable = (why: string) => {
    ev.garbage(why);
    if (done) return;
    detach();
    try {
      ws.close(1000, 'unreadable frame');
    } catch {
      // Already closing.
    }
    ev.closed(undefined, `the server sent an unreadable frame (${why})`);
  };
  ws.onopen = () => {
    if (encoding === 'proto' && ws.protocol === PROTO_SUBPROTOCOL) reader = new CompactReader();
    if (!tokenInQuery) write({ type: 'auth', token: req.token });
  };
  ws.onmessage = (m) => {
    if (typeof m.data === 'string') {
      const parsed = parseFrames(m.data);
      for (const e of parsed.errors) ev.garbage(e);
      if (parsed.frames.length > 0) ev.frames(parsed.frames);
      return;
    }
    if (!reader) return ev.garbage('a binary message');
    const bytes = m.data instanceof ArrayBuffer ? new Uint8Array(m.data) : ArrayBuffer.isView(m.data) ? new Uint8Array(m.data.buffer, m.data.byteOffset, m.data.byteLength) : undefined;
    if (!bytes) return unreadable('a binary message that is not an ArrayBuffer');
    const { frames, error } = reader.read(bytes);
    if (frames.length > 0) ev.frames(frames);
    if (error !== undefined) unreadable(`a compact frame that cannot be read: ${error}`);
  };
  // The close event that follows carries the code.
  ws.onerror = () => undefined;
  ws.onclose = (c) => {
    detach();
    ev.closed(c.code, c.reason || `closed (${c.code})`);
  };
  return {
    kind: 'websocket',
    get encoding() {
      return reader ? 'proto' : 'json';
    },
    send(frame) {
      if (done || ws.readyState !== 1) return false;
      write(frame);
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
