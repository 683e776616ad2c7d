/** The Server-Sent Events transport: `GET /v1/sse?channels=a,b&since=…&token=…`. */
import { parseFrames } from './frames.js';
import { streamQuery, type Environment, type Transport, type TransportEvents, type TransportRequest } from './transport.js';

/**
 * Opens an event stream carrying every channel of the request in one ordered stream. The client,
 * not `EventSource`, reconnects: with every channel's own cursor, a fresh token and its backoff.
 */
export function openSse(env: Environment, req: TransportRequest, ev: TransportEvents): Transport {
  const Ctor = env.EventSource;
  if (!Ctor) throw new Error('no EventSource in this environment');
  const es = new Ctor(req.baseUrl + '/v1/sse?' + streamQuery(req).toString());
  let done = false;
  es.onmessage = (m) => {
    const parsed = parseFrames(String(m.data));
    for (const e of parsed.errors) ev.garbage(e);
    if (parsed.frames.length > 0) ev.frames(parsed.frames);
  };
  // The server's `disconnect` comes as a named event (`event: disconnect`) just before the stream ends.
  es.addEventListener?.('disconnect', (m) => {
    if (done) return;
    let f: unknown;
    try {
      f = JSON.parse(String(m.data));
    } catch {
      return ev.garbage(`a disconnect event that is not JSON: ${String(m.data).slice(0, 80)}`);
    }
    ev.frames([{ ...(typeof f === 'object' && f !== null ? f : {}), type: 'disconnect' }]);
  });
  es.onerror = () => {
    // `EventSource` hides the HTTP status and would retry by itself: end it here instead.
    if (done) return;
    done = true;
    es.close();
    ev.closed(undefined, 'the event stream failed');
  };
  return {
    kind: 'sse',
    send: () => false,
    close() {
      done = true;
      es.onmessage = es.onerror = null;
      es.close();
    },
  };
}
