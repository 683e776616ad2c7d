/**
 * The three transports of docs/protocol.md behind one small interface: WebSocket (both ways),
 * Server-Sent Events and long-poll (server to client; the client publishes over HTTP).
 */
import { encodeFrame, parseBatch } from './frames.js';
/** The environment's own constructors. */
export function defaultEnvironment() {
    const g = globalThis;
    return {
        WebSocket: g.WebSocket,
        EventSource: g.EventSource,
        fetch: typeof g.fetch === 'function' ? g.fetch.bind(globalThis) : undefined,
    };
}
/** A WebSocket, authenticated by its first frame (browsers cannot set headers on it). */
export function openWebSocket(env, req, ev) {
    const Ctor = env.WebSocket;
    if (!Ctor)
        throw new Error('no WebSocket in this environment');
    const ws = new Ctor(req.baseUrl.replace(/^http/, 'ws') + '/v1/ws', 'herald.v1.json');
    let done = false;
    const finish = (code, reason) => {
        if (done)
            return;
        done = true;
        ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
        ev.closed(code, reason);
    };
    ws.onopen = () => ws.send(encodeFrame({ type: 'auth', token: req.token }));
    ws.onmessage = (m) => {
        if (typeof m.data !== 'string')
            return ev.garbage('binary message');
        const batch = parseBatch(m.data);
        batch.errors.forEach((e) => ev.garbage(e));
        if (batch.frames.length > 0)
            ev.frames(batch.frames);
    };
    ws.onerror = () => {
        /* the close event follows with the code */
    };
    ws.onclose = (c) => finish(c.code, c.reason || 'closed');
    return {
        kind: 'websocket',
        send(frame) {
            if (done || ws.readyState !== 1)
                return false;
            ws.send(encodeFrame(frame));
            return true;
        },
        close() {
            if (done)
                return;
            done = true;
            ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
            try {
                ws.close(1000, 'client closed');
            }
            catch {
                /* already closing */
            }
        },
    };
}
function streamQuery(req) {
    const q = new URLSearchParams({ channels: req.channels.join(','), token: req.token });
    if (req.cursors.length > 0)
        q.set('since', req.cursors.join(','));
    return q.toString();
}
/** Server-Sent Events: every channel in one ordered stream. The client, not the browser, reconnects. */
export function openSse(env, req, ev) {
    const Ctor = env.EventSource;
    if (!Ctor)
        throw new Error('no EventSource in this environment');
    const es = new Ctor(req.baseUrl + '/v1/sse?' + streamQuery(req));
    let done = false;
    es.onmessage = (m) => {
        const batch = parseBatch(String(m.data));
        batch.errors.forEach((e) => ev.garbage(e));
        if (batch.frames.length > 0)
            ev.frames(batch.frames);
    };
    es.onerror = () => {
        // EventSource would reconnect by itself with the last event id; the client resumes every
        // channel from its own cursors instead, with a fresh token and its own backoff.
        if (done)
            return;
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
export function openPoll(env, req, ev, timeoutMs = 25000) {
    const f = env.fetch;
    if (!f)
        throw new Error('no fetch in this environment');
    const abort = new AbortController();
    let done = false;
    let cursors = req.cursors;
    const loop = async () => {
        let first = true;
        while (!done) {
            const url = req.baseUrl + '/v1/poll?' + streamQuery({ ...req, cursors }) + `&timeout_ms=${first ? 1 : timeoutMs}`;
            let body;
            let status;
            try {
                const r = await f(url, { signal: abort.signal, cache: 'no-store' });
                status = r.status;
                body = await r.json();
            }
            catch (e) {
                if (!done) {
                    done = true;
                    ev.closed(undefined, `poll failed: ${e.message ?? e}`);
                }
                return;
            }
            if (done)
                return;
            if (status !== 200) {
                done = true;
                const code = body.error?.code;
                ev.frames([{ type: 'error', code, message: body.error?.message ?? `HTTP ${status}` }]);
                ev.closed(code === 'unauthorized' ? 4001 : code === 'token_expired' ? 4002 : code === 'rate_limited' ? 4029 : undefined, `poll refused: HTTP ${status}`);
                return;
            }
            const frames = [];
            if (first) {
                // The first answer stands for `welcome` and a `subscribed` per channel.
                frames.push({ type: 'welcome', heartbeat_ms: timeoutMs + 5000 });
                for (const channel of req.channels)
                    frames.push({ type: 'subscribed', channel, cursor: body.cursor, recovered: body.recovered });
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
