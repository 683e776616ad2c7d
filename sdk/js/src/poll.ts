/** The long-poll transport: `GET /v1/poll?channels=a,b&since=…&token=…`, one request at a time. */
import type { ServerFrame } from './frames.js';
import { closeCodeOf, streamQuery, type Environment, type Transport, type TransportEvents, type TransportRequest } from './transport.js';

/** A poll answer (docs/protocol.md, "Long-poll"). */
interface PollAnswer {
  cursor?: string;
  recovered?: boolean;
  messages?: ServerFrame[];
  error?: { code?: string; message?: string };
}

/**
 * Polls in a loop, each request continuing from the cursor the last one returned. The first
 * request returns at once (`timeout_ms=0`) and stands for the `welcome` and `subscribed` frames a
 * stream would send; every answer ends with a `position` frame (the cursor reached, which covers
 * every channel of the request). An HTTP refusal ends the transport with the close code its error
 * code stands for (401 → 4001 or 4002, 429 → 4029, any other 4xx → 1008: the server will never
 * take this request).
 */
export function openPoll(env: Environment, req: TransportRequest, ev: TransportEvents, timeoutMs: number): Transport {
  const f = env.fetch;
  if (!f) throw new Error('no fetch in this environment');
  const abort = new AbortController();
  let done = false;
  let token = req.token;
  let cursors = req.cursors;
  const end = (code: number | undefined, reason: string) => {
    if (done) return;
    done = true;
    ev.closed(code, reason);
  };
  const loop = async () => {
    let first = true;
    while (!done) {
      const q = streamQuery({ ...req, token, cursors });
      q.set('timeout_ms', String(first ? 0 : timeoutMs));
      let status: number;
      let text: string;
      try {
        const r = await f(`${req.baseUrl}/v1/poll?${q.toString()}`, { signal: abort.signal, cache: 'no-store' });
        status = r.status;
        text = await r.text();
      } catch (e) {
        return end(undefined, `poll failed: ${e instanceof Error ? e.message : String(e)}`);
      }
      if (done) return;
      let answer: PollAnswer;
      try {
        answer = JSON.parse(text) as PollAnswer;
      } catch {
        return end(undefined, `poll answered HTTP ${status} without JSON`);
      }
      if (status !== 200) {
        const code = answer.error?.code;
        ev.frames([{ type: 'error', code: code ?? 'unavailable', message: answer.error?.message ?? `HTTP ${status}` }]);
        const close = status === 401 || status === 429 ? closeCodeOf(code) : status >= 400 && status < 500 ? 1008 : undefined;
        return end(close, `poll refused: HTTP ${status}${code ? ` ${code}` : ''}`);
      }
      const frames: ServerFrame[] = [];
      if (first) {
        first = false;
        frames.push({ type: 'welcome', heartbeat_ms: timeoutMs + 5_000 });
        for (const channel of req.channels) frames.push({ type: 'subscribed', channel, cursor: answer.cursor, recovered: answer.recovered });
      }
      frames.push(...(answer.messages ?? []));
      if (answer.cursor) {
        cursors = [answer.cursor];
        frames.push({ type: 'position', cursor: answer.cursor });
      }
      ev.frames(frames);
    }
  };
  void loop();
  return {
    kind: 'poll',
    send: () => false,
    setToken(t) {
      token = t;
    },
    close() {
      done = true;
      abort.abort();
    },
  };
}
