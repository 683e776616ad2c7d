/**
 * The Herald client: one connection, many channels; resumes every channel from its cursor after
 * any cut, drops what it has already delivered, reconnects with backoff, and falls back from
 * WebSocket to SSE to long-poll (and back) where WebSockets are blocked.
 */
import { Backoff } from './backoff.js';
import { Cursors, Dedupe } from './dedupe.js';
import { defaultEnvironment, openPoll, openSse, openWebSocket } from './transport.js';
/** A request the server refused, with its protocol error code. */
export class HeraldError extends Error {
    constructor(code, message) {
        super(`${code}: ${message}`);
        this.code = code;
        this.name = 'HeraldError';
    }
}
/** A subscription handle. */
export class Subscription {
    constructor(client, channel) {
        this.client = client;
        this.channel = channel;
    }
    /** Stops delivery (the screen is hidden); presence stays, and `resume` continues exactly. */
    pause() {
        this.client.pauseChannel(this.channel);
    }
    /** Continues after `pause`: what was published meanwhile arrives first, in order, then live records. */
    resume() {
        this.client.resumeChannel(this.channel);
    }
    /** Ends the subscription. */
    unsubscribe() {
        this.client.unsubscribe(this.channel);
    }
    /** The cursor to resume from (store it to resume across app restarts). */
    get cursor() {
        return this.client.cursorOf(this.channel);
    }
}
export class HeraldClient {
    constructor(opts) {
        this.opts = opts;
        this.cursors = new Cursors();
        this.channels = new Map();
        this.pending = new Map();
        this.listeners = new Map();
        this.kindIndex = 0;
        this.failures = 0;
        this.heartbeatMs = 25000;
        this.welcomed = false;
        this.stopped = false;
        this.refusedTokens = 0;
        this.nextId = 1;
        this.stateNow = 'disconnected';
        this.baseUrl = opts.url.replace(/\/+$/, '');
        this.env = opts.environment ?? defaultEnvironment();
        this.backoff = new Backoff(opts.backoff);
        this.kinds = (opts.transports ?? ['websocket', 'sse', 'poll']).filter((k) => this.available(k));
        if (this.kinds.length === 0)
            throw new Error('no usable transport in this environment');
        if (typeof opts.token === 'string')
            this.currentToken = opts.token;
        // Connect once the caller has had the chance to subscribe and listen.
        queueMicrotask(() => void this.connect());
    }
    // ---- public API ---------------------------------------------------------------------------
    /** The current connection state. */
    get state() {
        return this.stateNow;
    }
    /** The transport in use (or being tried). */
    get transportKind() {
        return this.kinds[this.kindIndex];
    }
    /** Listens for an event; returns a function that stops listening. */
    on(event, listener) {
        let set = this.listeners.get(event);
        if (!set)
            this.listeners.set(event, (set = new Set()));
        const l = listener;
        set.add(l);
        return () => set.delete(l);
    }
    /** Subscribes `handler` to `channel`. Each record reaches it once, in publish order, across reconnects. */
    subscribe(channel, handler, opts = {}) {
        if (this.channels.has(channel))
            throw new Error(`already subscribed to ${channel}`);
        const ch = { name: channel, handler: handler, opts, dedupe: new Dedupe(this.opts.dedupeWindow ?? 1000), paused: false, serverPaused: false, awaiting: false, resuming: false };
        if (opts.since)
            this.cursors.processed(channel, opts.since);
        this.channels.set(channel, ch);
        if (this.welcomed) {
            if (this.transport?.kind === 'websocket')
                this.sendSubscribe(ch);
            else
                this.restartStream('channels changed');
        }
        return new Subscription(this, channel);
    }
    /** Ends a subscription. */
    unsubscribe(channel) {
        if (!this.channels.delete(channel))
            return;
        this.cursors.forget(channel);
        if (!this.welcomed)
            return;
        if (this.transport?.kind === 'websocket')
            this.transport.send({ type: 'unsubscribe', id: this.id(), channel });
        else
            this.restartStream('channels changed');
    }
    /** Publishes `data` on `channel` (over the WebSocket, or over HTTP on the fallbacks). */
    async publish(channel, data, opts = {}) {
        if (this.transport?.kind === 'websocket' && this.welcomed) {
            const frame = await this.request({ type: 'publish', channel, data, ...(opts.idempotencyKey ? { idempotency_key: opts.idempotencyKey } : {}) });
            return { cursor: String(frame.cursor), messageId: String(frame.message_id), duplicate: frame.duplicate === true };
        }
        const f = this.env.fetch;
        if (!f)
            throw new HeraldError('unavailable', 'not connected, and no fetch to publish over HTTP');
        const token = await this.token(false);
        const r = await f(this.baseUrl + '/v1/publish', {
            method: 'POST',
            headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' },
            body: JSON.stringify({ channel, data, ...(opts.idempotencyKey ? { idempotency_key: opts.idempotencyKey } : {}) }),
        });
        const body = await r.json();
        if (r.status !== 200)
            throw new HeraldError(body?.error?.code ?? 'internal', body?.error?.message ?? `HTTP ${r.status}`);
        return { cursor: body.cursor, messageId: body.message_id, duplicate: body.duplicate === true };
    }
    /** Who is on `channel` now (WebSocket only). */
    async presence(channel) {
        if (this.transport?.kind !== 'websocket' || !this.welcomed)
            throw new HeraldError('unavailable', 'presence needs the WebSocket transport, connected');
        const f = await this.request({ type: 'presence', channel });
        return { occupancy: Number(f.occupancy ?? 0), members: f.members ?? [] };
    }
    /**
     * Closes the connection and stays closed (the app went to the background, or offline), keeping
     * every channel's cursor; `resume()` reconnects and continues each channel exactly.
     */
    pause(reason = 'paused by the app') {
        if (this.stopped)
            return;
        this.stopped = true;
        this.teardown();
        this.setState('disconnected', reason);
    }
    /** Reconnects after `pause()` (foreground, back online). */
    resume() {
        if (!this.stopped)
            return;
        this.stopped = false;
        this.backoff.reset();
        void this.connect();
    }
    /** Closes for good. */
    close() {
        this.pause('closed by the app');
    }
    /** The cursor `channel` would resume from. */
    cursorOf(channel) {
        return this.cursors.get(channel);
    }
    /** Drops the current connection as a network cut would (tests, and "retry now" buttons). */
    dropConnection() {
        if (!this.transport)
            return;
        this.teardown();
        this.scheduleReconnect('connection dropped', 0);
    }
    // ---- channel pause (called by Subscription) -------------------------------------------------
    /** @internal */
    pauseChannel(channel) {
        const ch = this.channels.get(channel);
        if (!ch || ch.paused)
            return;
        ch.paused = true;
        if (!this.welcomed)
            return;
        if (this.transport?.kind === 'websocket')
            this.transport.send({ type: 'pause', id: this.id(), channel });
        else
            this.restartStream('channels changed');
    }
    /** @internal */
    resumeChannel(channel) {
        const ch = this.channels.get(channel);
        if (!ch || !ch.paused)
            return;
        ch.paused = false;
        if (!this.welcomed)
            return;
        if (this.transport?.kind !== 'websocket')
            return this.restartStream('channels changed');
        if (ch.serverPaused) {
            ch.serverPaused = false;
            ch.awaiting = true;
            ch.resuming = true;
            this.transport.send({ type: 'resume', id: this.id(), channel });
        }
        else {
            this.sendSubscribe(ch);
        }
    }
    // ---- connection ---------------------------------------------------------------------------
    available(kind) {
        if (kind === 'websocket')
            return !!this.env.WebSocket;
        if (kind === 'sse')
            return !!this.env.EventSource;
        return !!this.env.fetch;
    }
    async token(force) {
        const t = this.opts.token;
        if (typeof t === 'string')
            return t;
        if (force || this.currentToken === undefined)
            this.currentToken = await t();
        return this.currentToken;
    }
    async connect(forceToken = false) {
        if (this.stopped)
            return;
        this.teardown();
        const kind = this.kinds[this.kindIndex];
        this.setState(this.cursorsKnown() ? 'recovering' : 'connecting', `opening ${kind}`);
        let token;
        try {
            token = await this.token(forceToken);
        }
        catch (e) {
            this.emit('error', new HeraldError('unauthorized', `the token function failed: ${e.message ?? e}`));
            return this.scheduleReconnect('token function failed');
        }
        if (this.stopped)
            return;
        const live = this.liveChannels();
        const req = { baseUrl: this.baseUrl, token, channels: live, cursors: this.cursors.list(live) };
        const events = {
            frames: (frames) => {
                if (this.transport !== t)
                    return;
                for (const f of frames) {
                    this.onFrame(f);
                    if (this.transport !== t)
                        return;
                }
            },
            garbage: (d) => this.emit('error', new HeraldError('bad_request', `server sent ${d}`)),
            closed: (code, reason) => {
                if (this.transport === t)
                    this.onClosed(code, reason);
            },
        };
        let t;
        try {
            if (kind === 'websocket')
                t = openWebSocket(this.env, req, events);
            else if (live.length === 0) {
                // SSE and long-poll need a channel: wait for a subscription.
                this.welcomed = true;
                this.setState('connected', `${kind}: nothing subscribed yet`);
                return;
            }
            else if (kind === 'sse')
                t = openSse(this.env, req, events);
            else
                t = openPoll(this.env, req, events);
        }
        catch (e) {
            this.failures += 1;
            return this.scheduleReconnect(e.message);
        }
        this.transport = t;
        this.armWatchdog(this.heartbeatMs * 2);
    }
    liveChannels() {
        return [...this.channels.values()].filter((c) => !c.paused).map((c) => c.name);
    }
    cursorsKnown() {
        return [...this.channels.keys()].some((c) => this.cursors.get(c) !== undefined);
    }
    /** SSE and long-poll carry a fixed channel set: a change reopens the stream from the cursors. */
    restartStream(reason) {
        this.teardown();
        this.setState('recovering', reason);
        void this.connect();
    }
    teardown() {
        this.welcomed = false;
        for (const t of [this.watchdog, this.stableTimer, this.reconnectTimer, this.upgradeTimer])
            if (t)
                clearTimeout(t);
        this.watchdog = this.stableTimer = this.reconnectTimer = this.upgradeTimer = undefined;
        const t = this.transport;
        this.transport = undefined;
        t?.close();
        for (const [id, p] of this.pending) {
            clearTimeout(p.timer);
            p.reject(new HeraldError('unavailable', 'the connection ended before the reply'));
            this.pending.delete(id);
        }
        for (const ch of this.channels.values()) {
            ch.awaiting = false;
            ch.serverPaused = false;
        }
    }
    armWatchdog(ms) {
        if (this.watchdog)
            clearTimeout(this.watchdog);
        this.watchdog = setTimeout(() => {
            this.teardown();
            this.failures += this.welcomed ? 0 : 1;
            this.scheduleReconnect('heartbeat timeout: nothing heard from the server');
        }, ms);
    }
    onClosed(code, reason) {
        const wasWelcomed = this.welcomed;
        this.teardown();
        if (!wasWelcomed)
            this.failures += 1;
        switch (code) {
            case 1008:
                return this.fail(`refused: ${reason || 'origin not allowed'}`);
            case 4001:
            case 4002:
                // A refused or expired token: fetch a new one once; a second refusal is final.
                this.refusedTokens += 1;
                if (typeof this.opts.token === 'string' || this.refusedTokens > 1)
                    return this.fail(code === 4001 ? 'unauthorized' : 'token expired');
                return this.scheduleReconnect(code === 4001 ? 'unauthorized: fetching a new token' : 'token expired: fetching a new token', 0, true);
            case 4008:
                return this.scheduleReconnect('lagged: resuming', Math.min(this.backoff.next(), 1000));
            default:
                return this.scheduleReconnect(reason || 'connection closed');
        }
    }
    fail(reason) {
        this.stopped = true;
        this.setState('failed', reason);
    }
    scheduleReconnect(reason, delayMs, forceToken = false) {
        if (this.stopped)
            return;
        if (this.probingFrom !== undefined) {
            // The WebSocket is still blocked: back to the fallback that worked, at once.
            this.kindIndex = this.probingFrom;
            this.probingFrom = undefined;
            this.failures = 0;
            delayMs ?? (delayMs = 0);
            reason += `; back to ${this.kinds[this.kindIndex]}`;
        }
        else if (this.failures >= (this.opts.fallbackAfter ?? 2) && this.kindIndex < this.kinds.length - 1) {
            this.kindIndex += 1;
            this.failures = 0;
            reason += `; falling back to ${this.kinds[this.kindIndex]}`;
        }
        const delay = delayMs ?? this.nextDelayMs ?? this.backoff.next();
        this.nextDelayMs = undefined;
        this.setState('disconnected', reason);
        this.reconnectTimer = setTimeout(() => void this.connect(forceToken), delay);
    }
    /** On a fallback, try the WebSocket again now and then. */
    scheduleUpgrade() {
        if (this.kindIndex === 0 || this.kinds[0] !== 'websocket')
            return;
        this.upgradeTimer = setTimeout(() => {
            this.probingFrom = this.kindIndex;
            this.kindIndex = 0;
            void this.connect();
        }, this.opts.upgradeEveryMs ?? 60000);
    }
    // ---- frames -------------------------------------------------------------------------------
    onFrame(f) {
        this.armWatchdog(this.heartbeatMs * 2);
        switch (f.type) {
            case 'welcome':
                return this.onWelcome(f);
            case 'subscribed':
                return this.onSubscribed(f);
            case 'message':
                return this.onMessage(f);
            case 'position':
                // Long-poll: the position reached covers every channel of the request.
                for (const c of this.liveChannels())
                    this.cursors.processed(c, f.cursor);
                return;
            case 'paused': {
                // Records queued before the pause may still follow this reply; they are delivered, and
                // the cursor stays that of the last record processed.
                const ch = f.channel !== undefined ? this.channels.get(f.channel) : undefined;
                if (ch && ch.paused)
                    ch.serverPaused = true;
                return;
            }
            case 'unsubscribed':
                return this.onUnsubscribed(f);
            case 'ping':
                this.transport?.send({ type: 'pong' });
                return;
            case 'join':
            case 'leave': {
                const ch = f.channel !== undefined ? this.channels.get(f.channel) : undefined;
                if (ch && f.member)
                    ch.opts.onPresence?.({ type: f.type, member: f.member });
                return;
            }
            case 'token_expiring':
                void this.onTokenExpiring(f);
                return;
            case 'reconnect':
                this.nextDelayMs = this.backoff.hinted(Number(f.after_ms ?? 0));
                return;
            case 'error':
                if (f.id !== undefined && this.pending.has(f.id))
                    return this.reply(f);
                if (f.id !== undefined) {
                    // A refused (re)subscribe.
                    const ch = [...this.channels.values()].find((c) => c.awaiting && c.subscribeId === f.id);
                    if (ch) {
                        this.channels.delete(ch.name);
                        ch.opts.onEnd?.(String(f.code));
                    }
                }
                this.emit('error', new HeraldError(String(f.code ?? 'internal'), String(f.message ?? '')));
                return;
            default:
                return this.reply(f);
        }
    }
    onWelcome(f) {
        this.welcomed = true;
        this.probingFrom = undefined;
        this.failures = 0;
        this.refusedTokens = 0;
        if (typeof f.heartbeat_ms === 'number' && f.heartbeat_ms > 0)
            this.heartbeatMs = f.heartbeat_ms;
        this.armWatchdog(this.heartbeatMs * 2);
        // A connection that stays up a while resets the backoff.
        this.stableTimer = setTimeout(() => this.backoff.reset(), 10000);
        const kind = this.transport?.kind ?? 'websocket';
        if (kind === 'websocket') {
            for (const ch of this.channels.values())
                if (!ch.paused)
                    this.sendSubscribe(ch);
        }
        else {
            for (const ch of this.channels.values()) {
                ch.awaiting = !ch.paused;
                ch.resuming = this.cursors.get(ch.name) !== undefined;
            }
        }
        this.scheduleUpgrade();
        this.settle('welcome');
    }
    sendSubscribe(ch) {
        const since = this.cursors.get(ch.name);
        const id = this.id();
        ch.awaiting = true;
        ch.resuming = since !== undefined;
        ch.subscribeId = id;
        const frame = { type: 'subscribe', id, channel: ch.name };
        if (since !== undefined)
            frame.since = since;
        if (ch.opts.presence)
            frame.presence = true;
        if (ch.opts.maxRate !== undefined)
            frame.max_rate = ch.opts.maxRate;
        this.transport?.send(frame);
    }
    onSubscribed(f) {
        const ch = f.channel !== undefined ? this.channels.get(f.channel) : undefined;
        if (!ch)
            return;
        const lost = ch.resuming && f.recovered === false;
        this.cursors.subscribed(ch.name, f.cursor, lost);
        ch.awaiting = false;
        if (lost)
            this.emit('recovery_failed', { channel: ch.name });
        this.settle('subscribed');
    }
    /** `connected` once every channel is subscribed again (until then, `recovering`). */
    settle(reason) {
        if (!this.welcomed)
            return;
        const waiting = [...this.channels.values()].some((c) => c.awaiting && c.resuming);
        if (waiting)
            this.setState('recovering', 'resuming channels from their cursors');
        else
            this.setState('connected', reason);
    }
    onMessage(f) {
        const ch = f.channel !== undefined ? this.channels.get(f.channel) : undefined;
        if (!ch || typeof f.id !== 'string')
            return;
        if (this.transport?.kind !== 'websocket') {
            // SSE: one ordered stream for every channel, so this position covers them all.
            for (const c of this.liveChannels())
                if (c !== ch.name)
                    this.cursors.processed(c, f.cursor);
        }
        if (!ch.dedupe.first(f.id))
            return;
        this.cursors.processed(ch.name, f.cursor);
        ch.handler({ channel: ch.name, id: f.id, cursor: String(f.cursor), ts: Number(f.ts ?? 0), data: f.data });
    }
    onUnsubscribed(f) {
        if (f.id !== undefined)
            return this.reply(f);
        const ch = f.channel !== undefined ? this.channels.get(f.channel) : undefined;
        if (!ch)
            return;
        if (f.code === 'lagged') {
            // A low-priority subscription shed by a backed-up connection: resume it from its cursor.
            return this.sendSubscribe(ch);
        }
        this.channels.delete(ch.name);
        this.cursors.forget(ch.name);
        ch.opts.onEnd?.(String(f.code ?? 'ended'));
    }
    async onTokenExpiring(f) {
        const expiresAt = Number(f.expires_at ?? 0);
        this.emit('token_expiring', { expiresAt });
        if (typeof this.opts.token === 'string')
            return;
        let token;
        try {
            token = await this.token(true);
        }
        catch (e) {
            return this.emit('error', new HeraldError('unauthorized', `the token function failed: ${e.message ?? e}`));
        }
        if (this.transport?.kind === 'websocket') {
            try {
                await this.request({ type: 'refresh', token });
            }
            catch (e) {
                this.emit('error', e instanceof HeraldError ? e : new HeraldError('internal', String(e)));
            }
        }
        else if (this.transport) {
            // SSE and long-poll take the token with the request: reopen the stream with the new one.
            this.restartStream('token refreshed');
        }
    }
    // ---- requests -----------------------------------------------------------------------------
    id() {
        return this.nextId++;
    }
    request(frame) {
        return new Promise((resolve, reject) => {
            const id = this.id();
            if (!this.transport?.send({ ...frame, id }))
                return reject(new HeraldError('unavailable', 'not connected'));
            const timer = setTimeout(() => {
                this.pending.delete(id);
                reject(new HeraldError('timeout', `no reply to ${String(frame.type)} within the request timeout`));
            }, this.opts.requestTimeoutMs ?? 10000);
            this.pending.set(id, { resolve, reject, timer });
        });
    }
    reply(f) {
        if (f.id === undefined)
            return;
        const p = this.pending.get(f.id);
        if (!p)
            return;
        this.pending.delete(f.id);
        clearTimeout(p.timer);
        if (f.type === 'error')
            p.reject(new HeraldError(String(f.code ?? 'internal'), String(f.message ?? '')));
        else
            p.resolve(f);
    }
    // ---- events -------------------------------------------------------------------------------
    setState(state, reason) {
        if (this.stateNow === state && state !== 'disconnected')
            return;
        this.stateNow = state;
        this.emit('state', { state, reason, transport: this.kinds[this.kindIndex] });
    }
    emit(event, value) {
        for (const l of this.listeners.get(event) ?? []) {
            try {
                l(value);
            }
            catch (e) {
                setTimeout(() => {
                    throw e;
                });
            }
        }
    }
}
