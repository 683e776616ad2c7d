/**
 * The Herald client: one connection, many channels. It resumes every channel from its cursor
 * after any cut, drops what it has already delivered, reconnects with backoff, and falls back
 * from WebSocket to SSE to long-poll (and back) where WebSockets are blocked.
 */
import { Backoff, type BackoffOptions } from './backoff.js';
import { CursorStore } from './cursors.js';
import { Dedupe } from './dedupe.js';
import { Emitter, guarded, type Listener } from './events.js';
import { validChannel, type ClientFrame, type PresenceMember, type ServerFrame } from './frames.js';
import { openPoll } from './poll.js';
import { HeraldError, Requests } from './requests.js';
import { openSse } from './sse.js';
import { TokenSource, jwtExpiry, type TokenProvider } from './token.js';
import { closeCodeOf, defaultEnvironment, type Environment, type Transport, type TransportEvents, type TransportKind, type TransportRequest } from './transport.js';
import { openWebSocket } from './websocket.js';

/**
 * Connection states: `connecting` (the first connection), `connected`, `disconnected` (cut, or
 * paused by the app; a reconnect is scheduled unless paused), `recovering` (connected again and
 * resuming every channel from its cursor), `failed` (final: the origin is not allowed, or the
 * token was refused twice).
 */
export type ConnectionState = 'connecting' | 'connected' | 'disconnected' | 'recovering' | 'failed';

/** A `state` event. */
export interface StateChange {
  state: ConnectionState;
  /** Why: a close reason, an error code's meaning, `offline`, … */
  reason: string;
  /** The transport in use (or about to be tried). */
  transport: TransportKind;
}

/** A record, as a subscription handler receives it. */
export interface HeraldMessage<T = unknown> {
  channel: string;
  /** The stable message id (the dedupe key). */
  id: string;
  /** The position just after this record; the client resumes the channel from it. */
  cursor: string;
  /** Publish time, ms since the Unix epoch. */
  ts: number;
  data: T;
}

/** What `publish` resolves to. */
export interface Published {
  cursor: string;
  messageId: string;
  /** The idempotency key had been used already: this is the first record's cursor and id. */
  duplicate: boolean;
}

/** A channel's presence. */
export interface Presence {
  channel: string;
  occupancy: number;
  members: PresenceMember[];
}

/** A join or leave on a channel subscribed with `presence: true`. */
export interface PresenceEvent {
  type: 'join' | 'leave';
  channel: string;
  member: PresenceMember;
}

/** The client's events. */
export interface HeraldEvents {
  /** The connection state changed. */
  state: StateChange;
  /** Something went wrong that the client handled or cannot fix: a refused request, a bad frame, a failing token function. */
  error: HeraldError;
  /** A channel's history after its cursor is gone (past retention): refetch that state from your backend. */
  recovery_failed: { channel: string };
  /** The token expires soon (seconds since the Unix epoch); a token function is called for a new one. */
  token_expiring: { expiresAt: number };
}

/** Client options. */
export interface ClientOptions {
  /** Herald's address: `https://herald.example.com` (`wss://` works too). */
  url: string;
  /**
   * A token, or a function that fetches one: called at connect, when the token is about to expire,
   * and after the server refused it (once; a second refusal ends in `failed`).
   */
  token: TokenProvider;
  /** Reconnect backoff: full jitter, base 500 ms, cap 30 s. */
  backoff?: BackoffOptions;
  /** A connection up this long resets the backoff, ms (default 10000). */
  stableAfterMs?: number;
  /** Message ids remembered per channel for dedupe (default 1000). */
  dedupeWindow?: number;
  /** Transports in order of preference (default `['websocket', 'sse', 'poll']`; those the environment lacks are skipped). */
  transports?: TransportKind[];
  /** Consecutive failures to open a transport before the next is tried (default 2). */
  fallbackAfter?: number;
  /** On a fallback, how often to try the WebSocket again, ms (default 60000). */
  upgradeEveryMs?: number;
  /** How long opening a connection may take until its `welcome`, ms (default 15000). */
  connectTimeoutMs?: number;
  /** How long a request (publish, presence, subscribe, refresh) may wait for its reply, ms (default 10000). */
  requestTimeoutMs?: number;
  /** How long one long-poll request waits for records, ms (default 25000, at most 60000). */
  pollTimeoutMs?: number;
  /** Send the WebSocket's token in `?token=` instead of the `auth` frame (only where a proxy needs it; it shows in logs). */
  tokenInQuery?: boolean;
  /** Constructors to use instead of the environment's (tests, polyfills). */
  environment?: Environment;
}

/** Subscription options. */
export interface SubscribeOptions {
  /** Resume after this cursor (one stored across app restarts, say) instead of starting now. */
  since?: string;
  /** Also receive join/leave events, in `onPresence`. */
  presence?: boolean;
  /** Deliver at most this many times a second (0.01 to 1000; records in between arrive together). */
  maxRate?: number;
  /** Join and leave events, with `presence: true`. */
  onPresence?: (event: PresenceEvent) => void;
  /** The subscription ended without `unsubscribe()`: the server refused or ended it (the error code). */
  onEnd?: (code: string) => void;
}

/** Publish options. */
export interface PublishOptions {
  /** Per account, within the server's idempotency window, one key makes one record. */
  idempotencyKey?: string;
}

/** A subscription handle. */
export interface Subscription {
  readonly channel: string;
  /** The cursor the channel resumes from (store it to resume across app restarts with `since`). */
  readonly cursor: string | undefined;
  /** Stops delivery while the screen is hidden (the server keeps presence); `resume` continues exactly. */
  pause(): void;
  /** Continues after `pause`: what was published meanwhile arrives first, in order, then live records. */
  resume(): void;
  /** Ends the subscription. */
  unsubscribe(): void;
}

/** Where a channel stands on the current WebSocket. */
type Wire = 'none' | 'subscribing' | 'live' | 'pausing' | 'paused';

interface Channel {
  name: string;
  handler: (message: HeraldMessage) => void;
  opts: SubscribeOptions;
  dedupe: Dedupe;
  /** Paused by the app. */
  paused: boolean;
  wire: Wire;
  /** The pending (re)subscribe carries a cursor, so `recovered:false` means lost history. */
  since: boolean;
  /** Resubscribed after a reconnect, reply pending: the client is `recovering` until none is. */
  replaying: boolean;
  /**
   * A `subscribe` is on its way: records of the channel that come before its reply belong to an
   * earlier subscription on this connection (the server sends `subscribed` before the new one's
   * records) and are dropped; the new one's `since` covers them.
   */
  stale: boolean;
}

/** Close codes the server sends on purpose: it was reached, so the transport itself works. */
const SERVER_CLOSE_CODES = new Set([1001, 1008, 1009, 4001, 4002, 4008, 4029]);

type Timer = 'reconnect' | 'watchdog' | 'stable' | 'upgrade' | 'probe' | 'token';

/**
 * A Herald client.
 *
 * ```ts
 * const herald = new HeraldClient({ url: 'https://herald.example.com', token: fetchToken });
 * herald.subscribe('incidents', (m) => render(m.data));
 * ```
 */
export class HeraldClient {
  private readonly baseUrl: string;
  private readonly env: Environment;
  private readonly kinds: TransportKind[];
  private readonly backoff: Backoff;
  private readonly tokens: TokenSource;
  private readonly requests: Requests;
  private readonly cursors = new CursorStore();
  private readonly channels = new Map<string, Channel>();
  private readonly events = new Emitter<HeraldEvents>();
  private readonly timers = new Map<Timer, ReturnType<typeof setTimeout>>();
  private readonly o: Required<Pick<ClientOptions, 'stableAfterMs' | 'dedupeWindow' | 'fallbackAfter' | 'upgradeEveryMs' | 'connectTimeoutMs' | 'requestTimeoutMs' | 'pollTimeoutMs' | 'tokenInQuery'>>;
  private mode: 'running' | 'paused' | 'closed' | 'failed' = 'running';
  private stateNow: ConnectionState = 'connecting';
  private announced = false;
  private kindIndex = 0;
  private transport: Transport | undefined;
  /** On SSE or long-poll with no channel to stream: nothing is open, and a subscribe opens it. */
  private idleStream = false;
  /** A WebSocket tried in the background while on a fallback. */
  private probe: Transport | undefined;
  /** The token the current transport was opened with. */
  private token = '';
  private welcomed = false;
  private everWelcomed = false;
  /** Bumped by every teardown: async work of an older connection stops when it sees a newer one. */
  private epoch = 0;
  /** Consecutive failures to open the current transport (toward the fallback). */
  private failures = 0;
  /** Token refusals (4001/4002) since the last `welcome`. */
  private refusals = 0;
  private heartbeatMs = 25_000;
  private lastHeard = 0;
  /** The close code a fatal `error` frame announced (SSE has no close codes of its own). */
  private closeHint: number | undefined;

  constructor(opts: ClientOptions) {
    this.baseUrl = opts.url.replace(/^ws/, 'http').replace(/\/+$/, '');
    if (!/^https?:\/\/[^/]/.test(this.baseUrl)) throw new TypeError(`url must be http(s):// or ws(s)://, not ${opts.url}`);
    this.env = opts.environment ?? defaultEnvironment();
    this.kinds = (opts.transports ?? ['websocket', 'sse', 'poll']).filter((k) => (k === 'websocket' ? this.env.WebSocket : k === 'sse' ? this.env.EventSource : this.env.fetch) !== undefined);
    if (this.kinds.length === 0) throw new TypeError('none of the transports is available in this environment');
    this.backoff = new Backoff(opts.backoff);
    this.tokens = new TokenSource(opts.token);
    this.o = {
      stableAfterMs: opts.stableAfterMs ?? 10_000,
      dedupeWindow: opts.dedupeWindow ?? 1000,
      fallbackAfter: opts.fallbackAfter ?? 2,
      upgradeEveryMs: opts.upgradeEveryMs ?? 60_000,
      connectTimeoutMs: opts.connectTimeoutMs ?? 15_000,
      requestTimeoutMs: opts.requestTimeoutMs ?? 10_000,
      pollTimeoutMs: Math.min(opts.pollTimeoutMs ?? 25_000, 60_000),
      tokenInQuery: opts.tokenInQuery ?? false,
    };
    this.requests = new Requests(this.o.requestTimeoutMs);
    // Connect once the caller has had the chance to subscribe and listen.
    void Promise.resolve().then(() => this.open('starting'));
  }

  // ---- public API ---------------------------------------------------------------------------

  /** The connection state. */
  get state(): ConnectionState {
    return this.stateNow;
  }

  /** The transport in use (or about to be tried). */
  get transportKind(): TransportKind {
    return this.transport?.kind ?? this.kinds[this.kindIndex];
  }

  /** Listens for an event; returns a function that stops listening. */
  on<K extends keyof HeraldEvents>(event: K, listener: Listener<HeraldEvents[K]>): () => void {
    return this.events.on(event, listener);
  }

  /**
   * Subscribes `handler` to `channel`. Each record reaches it once, in publish order, across
   * reconnects and transport changes. One handler per channel.
   */
  subscribe<T = unknown>(channel: string, handler: (message: HeraldMessage<T>) => void, opts: SubscribeOptions = {}): Subscription {
    if (!validChannel(channel)) throw new HeraldError('invalid_channel', `"${channel}" is not a channel name (1 to 128 of A-Z a-z 0-9 _ - : . @ = ,)`, channel);
    if (this.channels.has(channel)) throw new HeraldError('already_subscribed', `already subscribed to ${channel}`, channel);
    if (this.mode === 'closed' || this.mode === 'failed') throw new HeraldError('disconnected', `the client is ${this.mode}`, channel);
    const ch: Channel = {
      name: channel,
      handler: handler as (message: HeraldMessage) => void,
      opts,
      dedupe: new Dedupe(this.o.dedupeWindow),
      paused: false,
      wire: 'none',
      since: false,
      replaying: false,
      stale: false,
    };
    if (opts.since !== undefined) this.cursors.processed(channel, opts.since);
    this.channels.set(channel, ch);
    this.channelChanged(ch);
    const cursors = this.cursors;
    return {
      channel,
      get cursor() {
        return cursors.get(channel);
      },
      pause: () => this.setPaused(ch, true),
      resume: () => this.setPaused(ch, false),
      unsubscribe: () => this.unsubscribe(ch),
    };
  }

  /**
   * Publishes `data` on `channel`: over the WebSocket when connected on one, else over
   * `POST /v1/publish` with the client token. Not retried by itself: a publish that failed with
   * `disconnected` or `timeout` may or may not have been written; retry with the same
   * `idempotencyKey` to be sure of one record.
   */
  async publish(channel: string, data: unknown, opts: PublishOptions = {}): Promise<Published> {
    if (!validChannel(channel)) throw new HeraldError('invalid_channel', `"${channel}" is not a channel name`, channel);
    if (this.mode === 'closed' || this.mode === 'failed') throw new HeraldError('disconnected', `the client is ${this.mode}`, channel);
    const key = opts.idempotencyKey !== undefined ? { idempotency_key: opts.idempotencyKey } : {};
    if (this.transport?.kind === 'websocket' && this.welcomed) {
      const f = await this.request({ type: 'publish', channel, data, ...key }, `publish on ${channel}`);
      return { cursor: String(f.cursor), messageId: String(f.message_id), duplicate: f.duplicate === true };
    }
    return this.publishOverHttp(JSON.stringify({ channel, data, ...key }), channel, true);
  }

  /** Who is on `channel` now. Needs the WebSocket: on SSE or long-poll it rejects with `not_supported`. */
  async presence(channel: string): Promise<Presence> {
    if (this.transport?.kind !== 'websocket' || !this.welcomed) {
      if (this.transport || this.idleStream) throw new HeraldError('not_supported', `presence needs the WebSocket transport; the client is on ${this.transportKind} (WebSockets are blocked here)`, channel);
      throw new HeraldError('disconnected', 'not connected', channel);
    }
    const f = await this.request({ type: 'presence', channel }, `presence of ${channel}`);
    return { channel, occupancy: Number(f.occupancy ?? 0), members: f.members ?? [] };
  }

  /**
   * Closes the connection and stays disconnected (the app went to the background, or offline),
   * keeping every channel and its cursor; `resume()` reconnects and continues each channel exactly.
   */
  pause(reason = 'paused by the app'): void {
    if (this.mode !== 'running') return;
    this.mode = 'paused';
    this.teardown();
    this.setState('disconnected', reason);
  }

  /**
   * Reconnects after `pause()` (foreground, back online) and resumes every channel from its
   * cursor. While waiting to reconnect after a cut, it reconnects now instead of after the backoff.
   */
  resume(): void {
    if (this.mode === 'running' && this.timers.has('reconnect')) return void this.open('resuming');
    if (this.mode !== 'paused') return;
    this.mode = 'running';
    this.backoff.reset();
    void this.open('resuming');
  }

  /** Closes for good. */
  close(): void {
    if (this.mode === 'closed') return;
    this.mode = 'closed';
    this.teardown();
    this.setState('disconnected', 'closed by the app');
  }

  /** Cuts the connection as a network fault would, and reconnects at once (tests, "retry now" buttons). */
  dropConnection(): void {
    if (this.mode !== 'running' || (!this.transport && !this.idleStream)) return;
    this.teardown();
    this.reconnect('the connection was dropped', 0);
  }

  // ---- channels -----------------------------------------------------------------------------

  private setPaused(ch: Channel, paused: boolean): void {
    if (this.channels.get(ch.name) !== ch || ch.paused === paused) return;
    ch.paused = paused;
    this.channelChanged(ch);
  }

  private unsubscribe(ch: Channel): void {
    if (this.channels.get(ch.name) !== ch) return;
    this.channels.delete(ch.name);
    this.cursors.forget(ch.name);
    this.channelChanged(ch);
    this.settle('connected');
  }

  /**
   * A channel was added, removed, paused or resumed. On the WebSocket, its frames say so; SSE and
   * long-poll carry a fixed channel set, so the stream reopens with the cursors. With nothing open
   * yet, the next connection takes the change into account by itself.
   */
  private channelChanged(ch: Channel): void {
    if (this.transport?.kind === 'websocket') {
      if (this.welcomed) this.syncWire(ch);
    } else if (this.transport || this.idleStream) {
      this.reopen('the channels changed');
    }
  }

  /** Brings the server's view of `ch` on the WebSocket in line with the app's. */
  private syncWire(ch: Channel): void {
    const wanted = this.channels.get(ch.name) === ch;
    if (!wanted) {
      if (ch.wire !== 'none') this.send({ type: 'unsubscribe', id: this.requests.id(), channel: ch.name });
      ch.wire = 'none';
    } else if (ch.paused) {
      if (ch.wire === 'subscribing' || ch.wire === 'live') {
        this.send({ type: 'pause', id: this.requests.id(), channel: ch.name });
        ch.wire = 'pausing';
      }
    } else if (ch.wire === 'pausing' || ch.wire === 'paused') {
      ch.wire = 'subscribing';
      ch.since = true;
      this.track(ch, this.request({ type: 'resume', channel: ch.name }, `resume of ${ch.name}`));
    } else if (ch.wire === 'none') {
      this.sendSubscribe(ch, false);
    }
  }

  private sendSubscribe(ch: Channel, replaying: boolean): void {
    const since = this.cursors.get(ch.name);
    const frame: ClientFrame = { type: 'subscribe', channel: ch.name };
    if (since !== undefined) frame.since = since;
    if (ch.opts.presence) frame.presence = true;
    if (ch.opts.maxRate !== undefined) frame.max_rate = ch.opts.maxRate;
    ch.wire = 'subscribing';
    ch.since = since !== undefined;
    ch.replaying = replaying && ch.since;
    ch.stale = true;
    this.track(ch, this.request(frame, `subscribe to ${ch.name}`));
  }

  /** A (re)subscribe the server refused ends the channel; one cut short by a reconnect is redone by it. */
  private track(ch: Channel, reply: Promise<ServerFrame>): void {
    reply.catch((e: HeraldError) => {
      if (e.code === 'disconnected') return;
      this.events.emit('error', new HeraldError(e.code, e.message, ch.name));
      if (e.code === 'timeout' || this.channels.get(ch.name) !== ch) return;
      this.channels.delete(ch.name);
      this.cursors.forget(ch.name);
      ch.wire = 'none';
      ch.replaying = false;
      if (ch.opts.onEnd) guarded(ch.opts.onEnd, e.code);
      this.settle('connected');
    });
  }

  /** The channels a stream carries (SSE, long-poll): every one not paused by the app. */
  private streamChannels(): string[] {
    return [...this.channels.values()].filter((c) => !c.paused).map((c) => c.name);
  }

  // ---- connection ---------------------------------------------------------------------------

  private async open(reason: string): Promise<void> {
    if (this.mode !== 'running') return;
    this.teardown();
    const epoch = this.epoch;
    const kind = this.kinds[this.kindIndex];
    this.setState(this.everWelcomed ? 'recovering' : 'connecting', `${reason}: opening ${kind}`);
    let token: string;
    try {
      token = await this.tokens.get();
    } catch (e) {
      if (epoch !== this.epoch) return;
      this.events.emit('error', new HeraldError('unauthorized', `the token function failed: ${message(e)}`));
      return this.reconnect('no token');
    }
    if (epoch !== this.epoch || this.mode !== 'running') return;
    this.token = token;
    const channels = this.streamChannels();
    if (kind !== 'websocket' && channels.length === 0) {
      this.idleStream = true;
      this.setState('connected', `${kind}: nothing to stream until a channel is subscribed`);
      return;
    }
    const req: TransportRequest = { baseUrl: this.baseUrl, token, channels, cursors: this.cursors.list(channels) };
    let t: Transport | undefined;
    const events = this.eventsOf(() => t);
    try {
      t = kind === 'websocket' ? openWebSocket(this.env, req, events, this.o.tokenInQuery) : kind === 'sse' ? openSse(this.env, req, events) : openPoll(this.env, req, events, this.o.pollTimeoutMs);
    } catch (e) {
      this.failures += 1;
      return this.reconnect(`${kind} could not be opened: ${message(e)}`);
    }
    this.transport = t;
    this.lastHeard = Date.now();
    this.watch();
  }

  /** Closes whatever is open and forgets the connection's state (not the channels or cursors). */
  private teardown(): void {
    this.epoch += 1;
    this.welcomed = false;
    this.idleStream = false;
    this.closeHint = undefined;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    const t = this.transport;
    const p = this.probe;
    this.transport = this.probe = undefined;
    t?.close();
    p?.close();
    this.requests.abandon();
    for (const ch of this.channels.values()) {
      ch.wire = 'none';
      ch.replaying = ch.stale = false;
    }
  }

  /** SSE and long-poll: opens the stream again (another channel set, a new token). */
  private reopen(reason: string): void {
    this.teardown();
    void this.open(reason);
  }

  /** Schedules the next attempt, falling back to the next transport after repeated failures to open this one. */
  private reconnect(reason: string, delayMs?: number): void {
    if (this.mode !== 'running') return;
    let why = reason;
    if (this.failures >= this.o.fallbackAfter && this.kinds.length > 1) {
      this.kindIndex = (this.kindIndex + 1) % this.kinds.length;
      this.failures = 0;
      why += `; trying ${this.kinds[this.kindIndex]} next`;
    }
    const delay = delayMs ?? this.backoff.next();
    this.setState('disconnected', why);
    this.timer('reconnect', delay, () => void this.open('reconnecting'));
  }

  private onClosed(code: number | undefined, reason: string): void {
    const welcomed = this.welcomed;
    const effective = code ?? this.closeHint;
    this.teardown();
    if (this.mode !== 'running') return;
    switch (effective) {
      case 1008:
        return this.fail(`refused: ${reason}`);
      case 4001:
      case 4002: {
        const what = effective === 4001 ? 'the token was refused' : 'the token expired';
        if (!this.tokens.renewable || this.refusals >= 1) return this.fail(what);
        this.refusals += 1;
        this.tokens.invalidate();
        return this.reconnect(`${what}: fetching a new one`, 0);
      }
      case 4008:
        return this.reconnect('fell behind (lagged): resuming', Math.min(this.backoff.next(), 1000));
      default:
        if (!welcomed && (effective === undefined || !SERVER_CLOSE_CODES.has(effective))) this.failures += 1;
        return this.reconnect(reason);
    }
  }

  private fail(reason: string): void {
    this.mode = 'failed';
    this.teardown();
    this.setState('failed', reason);
  }

  /** Declares the connection dead when nothing was heard for two heartbeats (or no `welcome` came in time). */
  private watch(): void {
    const limit = this.welcomed ? 2 * this.heartbeatMs : this.o.connectTimeoutMs;
    const idle = Date.now() - this.lastHeard;
    if (idle < limit) return this.timer('watchdog', limit - idle, () => this.watch());
    const welcomed = this.welcomed;
    this.teardown();
    if (!welcomed) this.failures += 1;
    this.reconnect(welcomed ? `nothing heard for ${limit} ms: the connection is dead` : `no welcome within ${limit} ms`);
  }

  private timer(name: Timer, ms: number, f: () => void): void {
    const old = this.timers.get(name);
    if (old) clearTimeout(old);
    this.timers.set(
      name,
      setTimeout(() => {
        this.timers.delete(name);
        f();
      }, ms),
    );
  }

  // ---- back to the WebSocket ----------------------------------------------------------------

  /** On a fallback, tries the WebSocket again now and then, in the background. */
  private scheduleUpgrade(): void {
    if (this.kinds[0] !== 'websocket' || this.transportKind === 'websocket') return;
    this.timer('upgrade', this.o.upgradeEveryMs, () => void this.startProbe());
  }

  private async startProbe(): Promise<void> {
    const epoch = this.epoch;
    let token: string;
    try {
      token = await this.tokens.get();
    } catch {
      return this.scheduleUpgrade();
    }
    if (epoch !== this.epoch || !this.welcomed) return;
    let p: Transport | undefined;
    const events = this.eventsOf(() => p);
    try {
      p = openWebSocket(this.env, { baseUrl: this.baseUrl, token, channels: [], cursors: [] }, events, this.o.tokenInQuery);
    } catch {
      return this.scheduleUpgrade();
    }
    const probe = p;
    this.probe = probe;
    this.timer('probe', this.o.connectTimeoutMs, () => this.dropProbe(probe));
  }

  private dropProbe(p: Transport): void {
    if (this.probe !== p) return;
    this.probe = undefined;
    p.close();
    this.scheduleUpgrade();
  }

  /** The probe's first frames: a `welcome` moves the client to it; anything else (an error) ends it. */
  private onProbeFrames(p: Transport, frames: ServerFrame[]): void {
    if (frames[0]?.type !== 'welcome') return this.dropProbe(p);
    this.probe = undefined;
    this.teardown();
    this.kindIndex = 0;
    this.failures = 0;
    this.setState('recovering', 'the WebSocket works again');
    this.transport = p;
    this.onFrames(p, frames);
  }

  // ---- frames -------------------------------------------------------------------------------

  /** A transport's events, routed by which it is when they come: the connection, the probe, or a stale one (ignored). */
  private eventsOf(transport: () => Transport | undefined): TransportEvents {
    return {
      frames: (frames) => {
        const t = transport();
        if (t) this.onFrames(t, frames);
      },
      garbage: (d) => {
        if (transport() === this.transport) this.events.emit('error', new HeraldError('bad_request', `the server sent ${d}`));
      },
      closed: (code, why) => {
        const t = transport();
        if (t && t === this.transport) this.onClosed(code, why);
        else if (t && t === this.probe) this.dropProbe(t);
      },
    };
  }

  private onFrames(t: Transport, frames: ServerFrame[]): void {
    if (t === this.probe) return this.onProbeFrames(t, frames);
    if (t !== this.transport) return;
    this.lastHeard = Date.now();
    for (const f of frames) {
      this.onFrame(f);
      // A frame may end the connection (`reconnect`); the rest belonged to it.
      if (t !== this.transport) return;
    }
  }

  private onFrame(f: ServerFrame): void {
    switch (f.type) {
      case 'welcome':
        return this.onWelcome(f);
      case 'subscribed':
        this.onSubscribed(f);
        this.requests.settle(f);
        return;
      case 'message':
        return this.onMessage(f);
      case 'position':
        // Long-poll: the stream's position covers every channel of the request.
        if (f.cursor !== undefined) for (const c of this.streamChannels()) this.cursors.processed(c, f.cursor);
        return;
      case 'paused': {
        // Records queued before the pause may still follow; they are delivered (the server's
        // `resume` continues after them).
        const ch = this.channelOf(f);
        if (ch?.wire !== 'pausing') return;
        ch.wire = 'paused';
        this.cursors.subscribed(ch.name, f.cursor);
        return;
      }
      case 'unsubscribed':
        if (f.id === undefined) this.onEnded(f);
        return;
      case 'join':
      case 'leave': {
        const ch = this.channelOf(f);
        if (ch?.opts.onPresence && f.member) guarded(ch.opts.onPresence, { type: f.type, channel: ch.name, member: f.member });
        return;
      }
      case 'ping':
        this.send({ type: 'pong' });
        return;
      case 'token_expiring':
        void this.refreshToken(Number(f.expires_at ?? 0));
        return;
      case 'reconnect': {
        const delay = this.backoff.hinted(Number(f.after_ms ?? 0));
        this.teardown();
        return this.reconnect(`the server asked to reconnect in ${delay} ms (${f.reason ?? 'no reason given'})`, delay);
      }
      case 'error':
        return this.onError(f);
      default:
        // Replies (`published`, `presence`, `refreshed`, `pong`); unknown types are ignored.
        this.requests.settle(f);
    }
  }

  private channelOf(f: ServerFrame): Channel | undefined {
    return f.channel === undefined ? undefined : this.channels.get(f.channel);
  }

  private onWelcome(f: ServerFrame): void {
    if (this.welcomed) return;
    this.welcomed = true;
    this.failures = 0;
    this.refusals = 0;
    if (typeof f.heartbeat_ms === 'number' && f.heartbeat_ms > 0) this.heartbeatMs = f.heartbeat_ms;
    this.watch();
    this.timer('stable', this.o.stableAfterMs, () => this.backoff.reset());
    const replaying = this.everWelcomed;
    this.everWelcomed = true;
    if (this.transport?.kind === 'websocket') {
      for (const ch of this.channels.values()) if (!ch.paused) this.sendSubscribe(ch, replaying);
    } else {
      for (const ch of this.channels.values()) {
        if (ch.paused) continue;
        ch.wire = 'subscribing';
        ch.since = this.cursors.get(ch.name) !== undefined;
        ch.replaying = replaying && ch.since;
      }
      this.scheduleUpgrade();
      // The server warns WebSockets before their token expires; the fallbacks watch it themselves.
      this.scheduleTokenRefresh(f.expires_at ?? jwtExpiry(this.token));
    }
    this.settle(`connected over ${this.transportKind}`);
  }

  private onSubscribed(f: ServerFrame): void {
    const ch = this.channelOf(f);
    // Paused before the reply came: still a reply to the subscribe.
    if (!ch || (ch.wire !== 'subscribing' && ch.wire !== 'pausing')) return;
    const lost = ch.since && f.recovered === false;
    this.cursors.subscribed(ch.name, f.cursor, lost);
    if (ch.wire === 'subscribing') ch.wire = 'live';
    ch.since = ch.replaying = ch.stale = false;
    if (lost) this.events.emit('recovery_failed', { channel: ch.name });
    this.settle('every channel resumed');
  }

  /** `connected` once every channel resumed after a reconnect is subscribed again; until then `recovering`. */
  private settle(reason: string): void {
    if (!this.welcomed) return;
    const replaying = [...this.channels.values()].some((c) => c.replaying);
    this.setState(replaying ? 'recovering' : 'connected', replaying ? 'resuming channels from their cursors' : reason);
  }

  private onMessage(f: ServerFrame): void {
    const ch = this.channelOf(f);
    if (!ch || ch.stale) return;
    if (typeof f.id !== 'string' || typeof f.cursor !== 'string') {
      this.events.emit('error', new HeraldError('bad_request', 'the server sent a message without a string id and cursor', ch.name));
      return;
    }
    if (this.transport?.kind !== 'websocket') {
      // One ordered stream for every channel: its position covers them all.
      for (const c of this.streamChannels()) this.cursors.processed(c, f.cursor);
    }
    if (!ch.dedupe.first(f.id)) return;
    this.cursors.processed(ch.name, f.cursor);
    guarded(ch.handler, { channel: ch.name, id: f.id, cursor: f.cursor, ts: Number(f.ts ?? 0), data: f.data });
  }

  /** `unsubscribed` without an id: the server ended the subscription. */
  private onEnded(f: ServerFrame): void {
    const ch = this.channelOf(f);
    if (!ch) return;
    ch.wire = 'none';
    if (f.code === 'lagged') {
      // A low-priority subscription shed by a backed-up connection: resume it from its cursor.
      if (!ch.paused) this.sendSubscribe(ch, false);
      return;
    }
    const code = f.code ?? 'internal';
    this.channels.delete(ch.name);
    this.cursors.forget(ch.name);
    ch.replaying = false;
    this.events.emit('error', new HeraldError(code, `the server ended the subscription to ${ch.name}`, ch.name));
    if (ch.opts.onEnd) guarded(ch.opts.onEnd, code);
    this.settle('connected');
  }

  private onError(f: ServerFrame): void {
    if (this.requests.settle(f)) return;
    // Without an id, the connection failed: the close that follows means what the code says.
    if (f.id === undefined) this.closeHint = closeCodeOf(f.code) ?? this.closeHint;
    this.events.emit('error', new HeraldError(f.code ?? 'internal', f.message ?? 'the server reported an error', f.channel));
  }

  // ---- tokens -------------------------------------------------------------------------------

  /** SSE and long-poll: refresh the token ahead of `expiresAt` as the server would warn (a minute, or half a short token's life). */
  private scheduleTokenRefresh(expiresAt: number | undefined): void {
    if (expiresAt === undefined) return;
    const remaining = expiresAt * 1000 - Date.now();
    const lead = Math.min(Math.max(remaining, 0), 120_000) / 2;
    this.timer('token', Math.max(0, remaining - lead), () => void this.refreshToken(expiresAt));
  }

  /** The token expires soon: fetch a new one and hand it to the connection. */
  private async refreshToken(expiresAt: number): Promise<void> {
    this.events.emit('token_expiring', { expiresAt });
    if (!this.tokens.renewable) return;
    const epoch = this.epoch;
    let token: string;
    try {
      token = await this.tokens.refresh();
    } catch (e) {
      this.events.emit('error', new HeraldError('unauthorized', `the token function failed: ${message(e)}`));
      return;
    }
    const t = this.transport;
    if (epoch !== this.epoch || !t) return;
    this.token = token;
    if (t.kind === 'websocket') {
      try {
        await this.request({ type: 'refresh', token }, 'refresh');
      } catch (e) {
        if (e instanceof HeraldError && e.code !== 'disconnected') this.events.emit('error', e);
      }
    } else if (t.setToken) {
      t.setToken(token);
      this.scheduleTokenRefresh(jwtExpiry(token));
    } else {
      this.reopen('reopening the stream with a new token');
    }
  }

  // ---- requests -----------------------------------------------------------------------------

  private send(frame: ClientFrame): boolean {
    return this.transport?.send(frame) ?? false;
  }

  /** Sends a request frame with a fresh id and waits for its reply. */
  private request(frame: ClientFrame, what: string): Promise<ServerFrame> {
    const id = this.requests.id();
    if (!this.send({ ...frame, id })) return Promise.reject(new HeraldError('disconnected', `not connected: ${what} was not sent`));
    return this.requests.wait(id, what);
  }

  /** `POST /v1/publish` with the client token (SSE, long-poll, or between connections); a refused token is renewed once. */
  private async publishOverHttp(body: string, channel: string, retryRefused: boolean): Promise<Published> {
    const f = this.env.fetch;
    if (!f) throw new HeraldError('not_supported', 'not connected over a WebSocket, and no fetch to publish over HTTP', channel);
    const token = await this.tokens.get();
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), this.o.requestTimeoutMs);
    let status: number;
    let text: string;
    try {
      const r = await f(this.baseUrl + '/v1/publish', { method: 'POST', headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' }, body, signal: abort.signal });
      status = r.status;
      text = await r.text();
    } catch (e) {
      if (abort.signal.aborted) throw new HeraldError('timeout', `no answer to publish on ${channel} within ${this.o.requestTimeoutMs} ms`, channel);
      throw new HeraldError('disconnected', `publish on ${channel} over HTTP failed: ${message(e)}`, channel);
    } finally {
      clearTimeout(timer);
    }
    let answer: { cursor?: unknown; message_id?: unknown; duplicate?: unknown; error?: { code?: string; message?: string } };
    try {
      answer = JSON.parse(text) as typeof answer;
    } catch {
      throw new HeraldError('unavailable', `publish on ${channel} answered HTTP ${status} without JSON`, channel);
    }
    if (status === 401 && retryRefused && this.tokens.renewable) {
      this.tokens.invalidate();
      return this.publishOverHttp(body, channel, false);
    }
    if (status !== 200) throw new HeraldError(answer.error?.code ?? 'internal', answer.error?.message ?? `HTTP ${status}`, channel);
    return { cursor: String(answer.cursor), messageId: String(answer.message_id), duplicate: answer.duplicate === true };
  }

  // ---- state --------------------------------------------------------------------------------

  private setState(state: ConnectionState, reason: string): void {
    if (state === this.stateNow && this.announced) return;
    this.announced = true;
    this.stateNow = state;
    this.events.emit('state', { state, reason, transport: this.transportKind });
  }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
