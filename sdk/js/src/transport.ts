/**
 * The three transports of docs/protocol.md behind one small interface: WebSocket (both ways),
 * Server-Sent Events and long-poll (server to client; the client publishes over HTTP).
 */
import { ServerFrame, encodeFrame, parseBatch } from './frames.js';

/** Which transport. */
export type TransportKind = 'websocket' | 'sse' | 'poll';

/** What a transport reports to the client. */
export interface TransportEvents {
  /** Frames, in order. */
  frames(frames: ServerFrame[]): void;
  /** A line that was not a frame. */
  garbage(description: string): void;
  /** The transport ended; `code` is the WebSocket close code when there was one. */
  closed(code: number | undefined, reason: string): void;
}

/** A live transport. */
export interface Transport {
  readonly kind: TransportKind;
  /** Sends a client frame (WebSocket only; the others return false). */
  send(frame: Record<string, unknown>): boolean;
  /** Ends it; no `closed` event follows. */
  close(): void;
}

/** What opening a stream needs. */
export interface StreamRequest {
  /** `http(s)://host[:port]`, no trailing slash. */
  baseUrl: string;
  token: string;
  /** For SSE and long-poll: every channel, and the cursors to resume them from. */
  channels: string[];
  cursors: string[];
}

type WebSocketCtor = new (url: string, protocols?: string | string[]) => WebSocket;
type EventSourceCtor = new (url: string) => EventSource;

/** What the environment offers (browsers and React Native differ; tests substitute fakes). */
export interface Environment {
  WebSocket?: WebSocketCtor;
  EventSource?: EventSourceCtor;
  fetch?: typeof fetch;
}

/** The environment's own constructors. */
export function defaultEnvironment(): Environment {
  const g = globalThis as unknown as Environment;
  return {
    WebSocket: g.WebSocket,
    EventSource: g.EventSource,
    fetch: typeof g.fetch === 'function' ? g.fetch.bind(globalThis) : undefined,
  };
}

/** A WebSocket, authenticated by its first frame (browsers cannot set headers on it). */
export function openWebSocket(env: Environment, req: StreamRequest, ev: TransportEvents): Transport {
  const Ctor = env.WebSocket;
  if (!Ctor) throw new Error('no WebSocket in this environment');
  const ws = new Ctor(req.baseUrl.replace(/^http/, 'ws') + '/v1/ws', 'herald.v1.json');
  let done = false;
  const finish = (code: number | undefined, reason: string) => {
    if (done) return;
    done = true;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    ev.closed(code, reason);
  };
  ws.onopen = () => ws.send(encodeFrame({ type: 'auth', token: req.token }));
  ws.onmessage = (m: MessageEvent) => {
    if (typeof m.data !== 'string') return ev.garbage('binary message');
    const batch = parseBatch(m.data);
    batch.errors.forEach((e) => ev.garbage(e));
    if (batch.frames.length > 0) ev.frames(batch.frames);
  };
  ws.onerror = () => {
    /* the close event follows with the code */
  };
  ws.onclose = (c: CloseEvent) => finish(c.code, c.reason || 'closed');
  return {
    kind: 'websocket',
    send(frame) {
      if (done || ws.readyState !== 1) return false;
      ws.send(encodeFrame(frame));
      return true;
    },
    close() {
      if (done) return;
      done = true;
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      try {
        ws.close(1000, 'client closed');
      } catch {
        /* already closing */
      }
    },
  };
}

function streamQuery(req: StreamRequest): string {
  const q = new URLSearchParams({ channels: req.channels.join(','), token: req.token });
  if (req.cursors.length > 0) q.set('since', req.cursors.join(','));
  return q.toString();
}

/** Server-Sent Events: every channel in one ordered stream. The client, not the browser, reconnects. */
export function openSse(env: Environment, req: StreamRequest, ev: TransportEvents): Transport {
  const Ctor = env.EventSource;
  if (!Ctor) throw new Error('no EventSource in this environment');
  const es = new Ctor(req.baseUrl + '/v1/sse?' + streamQuery(req));
  let done = false;
  es.onmessage = (m: MessageEvent) => {
    const batch = parseBatch(String(m.data));
    batch.errors.forEach((e) => ev.garbage(e));
    if (batch.frames.length > 0) ev.frames(batch.frames);
  };
  es.onerror = () => {
    // EventSource would reconnect by itself with the last event id; the client resumes every
    // channel from its own cursors instead, with a fresh token and its own backoff.
    if (done) return;
    done = true;
    es.close();
    ev.closed(undefined, 'event stream failed');
  };
  return {
    kind: 'sse',
    send: () => false,
    close() {
      done = true;
      es.close();
    },
  };
}

/** Long-poll: one request at a time, each resuming where the last ended. */
export function openPoll(env: Environment, req: StreamRequest, ev: TransportEvents, timeoutMs = 25_000): Transport {
  const f = env.fetch;
  if (!f) throw new Error('no fetch in this environment');
  const abort = new AbortController();
  let done = false;
  let cursors = req.cursors;
  const loop = async () => {
    let first = true;
    while (!done) {
      const url = req.baseUrl + '/v1/poll?' + streamQuery({ ...req, cursors }) + `&timeout_ms=${first ? 1 : timeoutMs}`;
      let body: { cursor?: string; recovered?: boolean; messages?: ServerFrame[]; error?: { code?: string; message?: string } };
      let status: number;
      try {
        const r = await f(url, { signal: abort.signal, cache: 'no-store' });
        status = r.status;
        body = await r.json();
      } catch (e) {
        if (!done) {
          done = true;
          ev.closed(undefined, `poll failed: ${(e as Error).message ?? e}`);
        }
        return;
      }
      if (done) return;
      if (status !== 200) {
        done = true;
        const code = body.error?.code;
        ev.frames([{ type: 'error', code, message: body.error?.message ?? `HTTP ${status}` }]);
        ev.closed(code === 'unauthorized' ? 4001 : code === 'token_expired' ? 4002 : code === 'rate_limited' ? 4029 : undefined, `poll refused: HTTP ${status}`);
        return;
      }
      const frames: ServerFrame[] = [];
      if (first) {
        // The first answer stands for `welcome` and a `subscribed` per channel.
        frames.push({ type: 'welcome', heartbeat_ms: timeoutMs + 5_000 });
        for (const channel of req.channels) frames.push({ type: 'subscribed', channel, cursor: body.cursor, recovered: body.recovered });
        first = false;
      }
      frames.push(...(body.messages ?? []));
      // The position reached covers every channel of the request.
      if (body.cursor) {
        cursors = [body.cursor];
        frames.push({ type: 'position', cursor: body.cursor });
      }
      ev.frames(frames);
    }
  };
  void loop();
  return {
    kind: 'poll',
    send: () => false,
    close() {
      done = true;
      abort.abort();
    },
  };
}
