/**
 * The Herald client: one connection, many channels; resumes every channel from its cursor after
 * any cut, drops what it has already delivered, reconnects with backoff, and falls back from
 * WebSocket to SSE to long-poll (and back) where WebSockets are blocked.
 */
import { Backoff, BackoffOptions } from './backoff.js';
import { Cursors, Dedupe } from './dedupe.js';
import { PresenceMember, ServerFrame } from './frames.js';
import { Environment, StreamRequest, Transport, TransportKind, defaultEnvironment, openPoll, openSse, openWebSocket } from './transport.js';

/** Connection states, as the `state` event reports them. */
export type ConnectionState = 'connecting' | 'connected' | 'disconnected' | 'recovering' | 'failed';

/** A `state` event. */
export interface StateChange {
  state: ConnectionState;
  /** Why (a close reason, an error code, `paused by the app`, …). */
  reason: string;
  /** The transport in use or being tried. */
  transport: TransportKind;
}

/** A record as the application sees it. */
export interface HeraldMessage<T = unknown> {
  channel: string;
  /** Stable message id (dedupe key). */
  id: string;
  /** Position after this record; the SDK resumes from it. */
  cursor: string;
  /** Publish time, ms since the Unix epoch. */
  ts: number;
  data: T;
}

/** What `publish` resolves to. */
export interface Published {
  cursor: string;
  messageId: string;
  duplicate: boolean;
}

/** A channel's presence. */
export interface Presence {
  occupancy: number;
  members: PresenceMember[];
}

/** A request the server refused, with its protocol error code. */
export class HeraldError extends Error {
  constructor(readonly code: string, message: string) {
    super(`${code}: ${message}`);
    this.name = 'HeraldError';
  }
}

/** Client options. */
export interface ClientOptions {
  /** `https://herald.example.com` (or `http://127.0.0.1:8080`). */
  url: string;
  /** A token, or a function that fetches one (called at connect, before expiry, and after a refused token). */
  token: string | (() => Promise<string>);
  /** Reconnect backoff (full jitter; default base 500 ms, cap 30 s). */
  backoff?: BackoffOptions;
  /** Message ids remembered per channel for dedupe (default 1000). */
  dedupeWindow?: number;
  /** Transports to use, in order of preference (default all three). */
  transports?: TransportKind[];
  /** Consecutive failures to open a transport before falling back to the next (default 2). */
  fallbackAfter?: number;
  /** While on a fallback, how often to try the WebSocket again, ms (default 60000). */
  upgradeEveryMs?: number;
  /** How long a request (publish, presence, …) may wait for its reply, ms (default 10000). */
  requestTimeoutMs?: number;
  /** Constructors to use instead of the environment's (tests, React Native polyfills). */
  environment?: Environment;
}

/** Subscription options. */
export interface SubscribeOptions {
  /** Resume after this cursor (e.g. one stored across app restarts) instead of starting now. */
  since?: string;
  /** Also receive join/leave events (`onPresence`). */
  presence?: boolean;
  /** Deliver at most this many times per second (records in between arrive together). */
  maxRate?: number;
  /** Join/leave events, when `presence` is set. */
  onPresence?: (event: { type: 'join' | 'leave'; member: PresenceMember }) => void;
  /** The server ended the subscription (e.g. `forbidden` after a token refresh narrowed it). */
  onEnd?: (code: string) => void;
}

type Handler = (message: HeraldMessage) => void;

interface Channel {
  name: string;
  handler: Handler;
  opts: SubscribeOptions;
  dedupe: Dedupe;
  /** Paused by the app. */
  paused: boolean;
  /** The server holds it paused on the current connection (`resume` continues it there). */
  serverPaused: boolean;
  /** Waiting for the reply to (re)subscribing on the current connection. */
  awaiting: boolean;
  /** A `since` went with the current (re)subscribe. */
  resuming: boolean;
  /** The id of the current (re)subscribe request. */
  subscribeId?: number;
}

interface Pending {
  resolve(frame: ServerFrame): void;
  reject(err: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

type Listener<T> = (value: T) => void;

interface EventMap {
  state: StateChange;
  /** A channel's history after its cursor was past retention: refetch its state from your backend. */
  recovery_failed: { channel: string };
  /** Something went wrong that the SDK handled (a bad frame, a refused refresh, …). */
  error: HeraldError;
  /** The token expires soon; emitted whether or not a token function refreshes it. */
  token_expiring: { expiresAt: number };
}

/** A subscription handle. */
export class Subscription {
  constructor(private readonly client: HeraldClient, readonly channel: string) {}

  /** Stops delivery (the screen is hidden); presence stays, and `resume` continues exactly. */
  pause(): void {
    this.client.pauseChannel(this.channel);
  }

  /** Continues after `pause`: what was published meanwhile arrives first, in order, then live records. */
  resume(): void {
    this.client.resumeChannel(this.channel);
  }

  /** Ends the subscription. */
  unsubscribe(): void {
    this.client.unsubscribe(this.channel);
  }

  /** The cursor to resume from (store it to resume across app restarts). */
  get cursor(): string | undefined {
    return this.client.cursorOf(this.channel);
  }
}

export class HeraldClient {
  private readonly baseUrl: string;
  private readonly env: Environment;
  private readonly backoff: Backoff;
  private readonly kinds: TransportKind[];
  private readonly cursors = new Cursors();
  private readonly channels = new Map<string, Channel>();
  private readonly pending = new Map<number | string, Pending>();
  private readonly listeners = new Map<keyof EventMap, Set<Listener<never>>>();
  private transport: Transport | undefined;
  private kindIndex = 0;
  private failures = 0;
  private upgradeTimer: ReturnType<typeof setTimeout> | undefined;
  /** While trying the WebSocket again from a fallback: the fallback to return to if it fails. */
  private probingFrom: number | undefined;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private watchdog: ReturnType<typeof setTimeout> | undefined;
  private stableTimer: ReturnType<typeof setTimeout> | undefined;
  private heartbeatMs = 25_000;
  private welcomed = false;
  private stopped = false;
  private refusedTokens = 0;
  private currentToken: string | undefined;
  private nextId = 1;
  private stateNow: ConnectionState = 'disconnected';
  private nextDelayMs: number | undefined;

  constructor(private readonly opts: ClientOptions) {
    this.baseUrl = opts.url.replace(/\/+$/, '');
    this.env = opts.environment ?? defaultEnvironment();
    this.backoff = new Backoff(opts.backoff);
    this.kinds = (opts.transports ?? ['websocket', 'sse', 'poll']).filter((k) => this.available(k));
    if (this.kinds.length === 0) throw new Error('no usable transport in this environment');
    if (typeof opts.token === 'string') this.currentToken = opts.token;
    // Connect once the caller has had the chance to subscribe and listen.
    queueMicrotask(() => void this.connect());
  }

  // ---- public API ---------------------------------------------------------------------------

  /** The current connection state. */
  get state(): ConnectionState {
    return this.stateNow;
  }

  /** The transport in use (or being tried). */
  get transportKind(): TransportKind {
    return this.kinds[this.kindIndex];
  }

  /** Listens for an event; returns a function that stops listening. */
  on<K extends keyof EventMap>(event: K, listener: Listener<EventMap[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    const l = listener as Listener<never>;
    set.add(l);
    return () => set.delete(l);
  }

  /** Subscribes `handler` to `channel`. Each record reaches it once, in publish order, across reconnects. */
  subscribe<T = unknown>(channel: string, handler: (message: HeraldMessage<T>) => void, opts: SubscribeOptions = {}): Subscription {
    if (this.channels.has(channel)) throw new Error(`already subscribed to ${channel}`);
    const ch: Channel = { name: channel, handler: handler as Handler, opts, dedupe: new Dedupe(this.opts.dedupeWindow ?? 1000), paused: false, serverPaused: false, awaiting: false, resuming: false };
    if (opts.since) this.cursors.processed(channel, opts.since);
    this.channels.set(channel, ch);
    if (this.welcomed) {
      if (this.transport?.kind === 'websocket') this.sendSubscribe(ch);
      else this.restartStream('channels changed');
    }
    return new Subscription(this, channel);
  }

  /** Ends a subscription. */
  unsubscribe(channel: string): void {
    if (!this.channels.delete(channel)) return;
    this.cursors.forget(channel);
    if (!this.welcomed) return;
    if (this.transport?.kind === 'websocket') this.transport.send({ type: 'unsubscribe', id: this.id(), channel });
    else this.restartStream('channels changed');
  }

  /** Publishes `data` on `channel` (over the WebSocket, or over HTTP on the fallbacks). */
  async publish(channel: string, data: unknown, opts: { idempotencyKey?: string } = {}): Promise<Published> {
    if (this.transport?.kind === 'websocket' && this.welcomed) {
      const frame = await this.request({ type: 'publish', channel, data, ...(opts.idempotencyKey ? { idempotency_key: opts.idempotencyKey } : {}) });
      return { cursor: String(frame.cursor), messageId: String(frame.message_id), duplicate: frame.duplicate === true };
    }
    const f = this.env.fetch;
    if (!f) throw new HeraldError('unavailable', 'not connected, and no fetch to publish over HTTP');
    const token = await this.token(false);
    const r = await f(this.baseUrl + '/v1/publish', {
      method: 'POST',
      headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' },
      body: JSON.stringify({ channel, data, ...(opts.idempotencyKey ? { idempotency_key: opts.idempotencyKey } : {}) }),
    });
    const body = await r.json();
    if (r.status !== 200) throw new HeraldError(body?.error?.code ?? 'internal', body?.error?.message ?? `HTTP ${r.status}`);
    return { cursor: body.cursor, messageId: body.message_id, duplicate: body.duplicate === true };
  }

  /** Who is on `channel` now (WebSocket only). */
  async presence(channel: string): Promise<Presence> {
    if (this.transport?.kind !== 'websocket' || !this.welcomed) throw new HeraldError('unavailable', 'presence needs the WebSocket transport, connected');
    const f = await this.request({ type: 'presence', channel });
    return { occupancy: Number(f.occupancy ?? 0), members: f.members ?? [] };
  }

  /**
   * Closes the connection and stays closed (the app went to the background, or offline), keeping
   * every channel's cursor; `resume()` reconnects and continues each channel exactly.
   */
  pause(reason = 'paused by the app'): void {
    if (this.stopped) return;
    this.stopped = true;
    this.teardown();
    this.setState('disconnected', reason);
  }

  /** Reconnects after `pause()` (foreground, back online). */
  resume(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.backoff.reset();
    void this.connect();
  }

  /** Closes for good. */
  close(): void {
    this.pause('closed by the app');
  }

  /** The cursor `channel` would resume from. */
  cursorOf(channel: string): string | undefined {
    return this.cursors.get(channel);
  }

  /** Drops the current connection as a network cut would (tests, and "retry now" buttons). */
  dropConnection(): void {
    if (!this.transport) return;
    this.teardown();
    this.scheduleReconnect('connection dropped', 0);
  }

  // ---- channel pause (called by Subscription) -------------------------------------------------

  /** @internal */
  pauseChannel(channel: string): void {
    const ch = this.channels.get(channel);
    if (!ch || ch.paused) return;
    ch.paused = true;
    if (!this.welcomed) return;
    if (this.transport?.kind === 'websocket') this.transport.send({ type: 'pause', id: this.id(), channel });
    else this.restartStream('channels changed');
  }

  /** @internal */
  resumeChannel(channel: string): void {
    const ch = this.channels.get(channel);
    if (!ch || !ch.paused) return;
    ch.paused = false;
    if (!this.welcomed) return;
    if (this.transport?.kind !== 'websocket') return this.restartStream('channels changed');
    if (ch.serverPaused) {
      ch.serverPaused = false;
      ch.awaiting = true;
      ch.resuming = true;
      this.transport.send({ type: 'resume', id: this.id(), channel });
    } else {
      this.sendSubscribe(ch);
    }
  }

  // ---- connection ---------------------------------------------------------------------------

  private available(kind: TransportKind): boolean {
    if (kind === 'websocket') return !!this.env.WebSocket;
    if (kind === 'sse') return !!this.env.EventSource;
    return !!this.env.fetch;
  }

  private async token(force: boolean): Promise<string> {
    const t = this.opts.token;
    if (typeof t === 'string') return t;
    if (force || this.currentToken === undefined) this.currentToken = await t();
    return this.currentToken;
  }

  private async connect(forceToken = false): Promise<void> {
    if (this.stopped) return;
    this.teardown();
    const kind = this.kinds[this.kindIndex];
    this.setState(this.cursorsKnown() ? 'recovering' : 'connecting', `opening ${kind}`);
    let token: string;
    try {
      token = await this.token(forceToken);
    } catch (e) {
      this.emit('error', new HeraldError('unauthorized', `the token function failed: ${(e as Error).message ?? e}`));
      return this.scheduleReconnect('token function failed');
    }
    if (this.stopped) return;
    const live = this.liveChannels();
    const req: StreamRequest = { baseUrl: this.baseUrl, token, channels: live, cursors: this.cursors.list(live) };
    const events = {
      frames: (frames: ServerFrame[]) => {
        if (this.transport !== t) return;
        for (const f of frames) {
          this.onFrame(f);
          if (this.transport !== t) return;
        }
      },
      garbage: (d: string) => this.emit('error', new HeraldError('bad_request', `server sent ${d}`)),
      closed: (code: number | undefined, reason: string) => {
        if (this.transport === t) this.onClosed(code, reason);
      },
    };
    let t: Transport;
    try {
      if (kind === 'websocket') t = openWebSocket(this.env, req, events);
      else if (live.length === 0) {
        // SSE and long-poll need a channel: wait for a subscription.
        this.welcomed = true;
        this.setState('connected', `${kind}: nothing subscribed yet`);
        return;
      } else if (kind === 'sse') t = openSse(this.env, req, events);
      else t = openPoll(this.env, req, events);
    } catch (e) {
      this.failures += 1;
      return this.scheduleReconnect((e as Error).message);
    }
    this.transport = t;
    this.armWatchdog(this.heartbeatMs * 2);
  }

  private liveChannels(): string[] {
    return [...this.channels.values()].filter((c) => !c.paused).map((c) => c.name);
  }

  private cursorsKnown(): boolean {
    return [...this.channels.keys()].some((c) => this.cursors.get(c) !== undefined);
  }

  /** SSE and long-poll carry a fixed channel set: a change reopens the stream from the cursors. */
  private restartStream(reason: string): void {
    this.teardown();
    this.setState('recovering', reason);
    void this.connect();
  }

  private teardown(): void {
    this.welcomed = false;
    for (const t of [this.watchdog, this.stableTimer, this.reconnectTimer, this.upgradeTimer]) if (t) clearTimeout(t);
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

  private armWatchdog(ms: number): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => {
      this.teardown();
      this.failures += this.welcomed ? 0 : 1;
      this.scheduleReconnect('heartbeat timeout: nothing heard from the server');
    }, ms);
  }

  private onClosed(code: number | undefined, reason: string): void {
    const wasWelcomed = this.welcomed;
    this.teardown();
    if (!wasWelcomed) this.failures += 1;
    switch (code) {
      case 1008:
        return this.fail(`refused: ${reason || 'origin not allowed'}`);
      case 4001:
      case 4002:
        // A refused or expired token: fetch a new one once; a second refusal is final.
        this.refusedTokens += 1;
        if (typeof this.opts.token === 'string' || this.refusedTokens > 1) return this.fail(code === 4001 ? 'unauthorized' : 'token expired');
        return this.scheduleReconnect(code === 4001 ? 'unauthorized: fetching a new token' : 'token expired: fetching a new token', 0, true);
      case 4008:
        return this.scheduleReconnect('lagged: resuming', Math.min(this.backoff.next(), 1000));
      default:
        return this.scheduleReconnect(reason || 'connection closed');
    }
  }

  private fail(reason: string): void {
    this.stopped = true;
    this.setState('failed', reason);
  }

  private scheduleReconnect(reason: string, delayMs?: number, forceToken = false): void {
    if (this.stopped) return;
    if (this.probingFrom !== undefined) {
      // The WebSocket is still blocked: back to the fallback that worked, at once.
      this.kindIndex = this.probingFrom;
      this.probingFrom = undefined;
      this.failures = 0;
      delayMs ??= 0;
      reason += `; back to ${this.kinds[this.kindIndex]}`;
    } else if (this.failures >= (this.opts.fallbackAfter ?? 2) && this.kindIndex < this.kinds.length - 1) {
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
  private scheduleUpgrade(): void {
    if (this.kindIndex === 0 || this.kinds[0] !== 'websocket') return;
    this.upgradeTimer = setTimeout(() => {
      this.probingFrom = this.kindIndex;
      this.kindIndex = 0;
      void this.connect();
    }, this.opts.upgradeEveryMs ?? 60_000);
  }

  // ---- frames -------------------------------------------------------------------------------

  private onFrame(f: ServerFrame): void {
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
        for (const c of this.liveChannels()) this.cursors.processed(c, f.cursor);
        return;
      case 'paused': {
        // Records queued before the pause may still follow this reply; they are delivered, and
        // the cursor stays that of the last record processed.
        const ch = f.channel !== undefined ? this.channels.get(f.channel) : undefined;
        if (ch && ch.paused) ch.serverPaused = true;
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
        if (ch && f.member) ch.opts.onPresence?.({ type: f.type, member: f.member });
        return;
      }
      case 'token_expiring':
        void this.onTokenExpiring(f);
        return;
      case 'reconnect':
        this.nextDelayMs = this.backoff.hinted(Number(f.after_ms ?? 0));
        return;
      case 'error':
        if (f.id !== undefined && this.pending.has(f.id)) return this.reply(f);
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

  private onWelcome(f: ServerFrame): void {
    this.welcomed = true;
    this.probingFrom = undefined;
    this.failures = 0;
    this.refusedTokens = 0;
    if (typeof f.heartbeat_ms === 'number' && f.heartbeat_ms > 0) this.heartbeatMs = f.heartbeat_ms;
    this.armWatchdog(this.heartbeatMs * 2);
    // A connection that stays up a while resets the backoff.
    this.stableTimer = setTimeout(() => this.backoff.reset(), 10_000);
    const kind = this.transport?.kind ?? 'websocket';
    if (kind === 'websocket') {
      for (const ch of this.channels.values()) if (!ch.paused) this.sendSubscribe(ch);
    } else {
      for (const ch of this.channels.values()) {
        ch.awaiting = !ch.paused;
        ch.resuming = this.cursors.get(ch.name) !== undefined;
      }
    }
    this.scheduleUpgrade();
    this.settle('welcome');
  }

  private sendSubscribe(ch: Channel): void {
    const since = this.cursors.get(ch.name);
    const id = this.id();
    ch.awaiting = true;
    ch.resuming = since !== undefined;
    ch.subscribeId = id;
    const frame: Record<string, unknown> = { type: 'subscribe', id, channel: ch.name };
    if (since !== undefined) frame.since = since;
    if (ch.opts.presence) frame.presence = true;
    if (ch.opts.maxRate !== undefined) frame.max_rate = ch.opts.maxRate;
    this.transport?.send(frame);
  }

  private onSubscribed(f: ServerFrame): void {
    const ch = f.channel !== undefined ? this.channels.get(f.channel) : undefined;
    if (!ch) return;
    const lost = ch.resuming && f.recovered === false;
    this.cursors.subscribed(ch.name, f.cursor, lost);
    ch.awaiting = false;
    if (lost) this.emit('recovery_failed', { channel: ch.name });
    this.settle('subscribed');
  }

  /** `connected` once every channel is subscribed again (until then, `recovering`). */
  private settle(reason: string): void {
    if (!this.welcomed) return;
    const waiting = [...this.channels.values()].some((c) => c.awaiting && c.resuming);
    if (waiting) this.setState('recovering', 'resuming channels from their cursors');
    else this.setState('connected', reason);
  }

  private onMessage(f: ServerFrame): void {
    const ch = f.channel !== undefined ? this.channels.get(f.channel) : undefined;
    if (!ch || typeof f.id !== 'string') return;
    if (this.transport?.kind !== 'websocket') {
      // SSE: one ordered stream for every channel, so this position covers them all.
      for (const c of this.liveChannels()) if (c !== ch.name) this.cursors.processed(c, f.cursor);
    }
    if (!ch.dedupe.first(f.id)) return;
    this.cursors.processed(ch.name, f.cursor);
    ch.handler({ channel: ch.name, id: f.id, cursor: String(f.cursor), ts: Number(f.ts ?? 0), data: f.data });
  }

  private onUnsubscribed(f: ServerFrame): void {
    if (f.id !== undefined) return this.reply(f);
    const ch = f.channel !== undefined ? this.channels.get(f.channel) : undefined;
    if (!ch) return;
    if (f.code === 'lagged') {
      // A low-priority subscription shed by a backed-up connection: resume it from its cursor.
      return this.sendSubscribe(ch);
    }
    this.channels.delete(ch.name);
    this.cursors.forget(ch.name);
    ch.opts.onEnd?.(String(f.code ?? 'ended'));
  }

  private async onTokenExpiring(f: ServerFrame): Promise<void> {
    const expiresAt = Number(f.expires_at ?? 0);
    this.emit('token_expiring', { expiresAt });
    if (typeof this.opts.token === 'string') return;
    let token: string;
    try {
      token = await this.token(true);
    } catch (e) {
      return this.emit('error', new HeraldError('unauthorized', `the token function failed: ${(e as Error).message ?? e}`));
    }
    if (this.transport?.kind === 'websocket') {
      try {
        await this.request({ type: 'refresh', token });
      } catch (e) {
        this.emit('error', e instanceof HeraldError ? e : new HeraldError('internal', String(e)));
      }
    } else if (this.transport) {
      // SSE and long-poll take the token with the request: reopen the stream with the new one.
      this.restartStream('token refreshed');
    }
  }

  // ---- requests -----------------------------------------------------------------------------

  private id(): number {
    return this.nextId++;
  }

  private request(frame: Record<string, unknown>): Promise<ServerFrame> {
    return new Promise((resolve, reject) => {
      const id = this.id();
      if (!this.transport?.send({ ...frame, id })) return reject(new HeraldError('unavailable', 'not connected'));
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new HeraldError('timeout', `no reply to ${String(frame.type)} within the request timeout`));
      }, this.opts.requestTimeoutMs ?? 10_000);
      this.pending.set(id, { resolve, reject, timer });
    });
  }

  private reply(f: ServerFrame): void {
    if (f.id === undefined) return;
    const p = this.pending.get(f.id);
    if (!p) return;
    this.pending.delete(f.id);
    clearTimeout(p.timer);
    if (f.type === 'error') p.reject(new HeraldError(String(f.code ?? 'internal'), String(f.message ?? '')));
    else p.resolve(f);
  }

  // ---- events -------------------------------------------------------------------------------

  private setState(state: ConnectionState, reason: string): void {
    if (this.stateNow === state && state !== 'disconnected') return;
    this.stateNow = state;
    this.emit('state', { state, reason, transport: this.kinds[this.kindIndex] });
  }

  private emit<K extends keyof EventMap>(event: K, value: EventMap[K]): void {
    for (const l of this.listeners.get(event) ?? []) {
      try {
        (l as Listener<EventMap[K]>)(value);
      } catch (e) {
        setTimeout(() => {
          throw e;
        });
      }
    }
  }
}
