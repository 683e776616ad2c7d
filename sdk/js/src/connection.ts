/**
 * The connection: one transport at a time to Herald. It picks the transport (WebSocket, then SSE,
 * then long-poll after repeated failures to open one, trying the WebSocket again in the
 * background), authenticates and refreshes the token, watches heartbeats, reconnects with backoff
 * (or when the server says), and carries its `state`. What it carries is a `ConnectionChannels`
 * (the channel table, in the client): told when a connection is welcomed or lost, and handed the
 * frames about channels.
 */
import { Backoff, type BackoffOptions } from './backoff.js';
import type { EventSink } from './events.js';
import type { ClientFrame, ServerFrame } from './frames.js';
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

/** The events the connection reports. */
export interface ConnectionEvents {
  /** The connection state changed. */
  state: StateChange;
  /** Something went wrong that the client handled or cannot fix: a refused request, a bad frame, a failing token function. */
  error: HeraldError;
  /** The token expires soon (seconds since the Unix epoch); a token function is called for a new one. */
  token_expiring: { expiresAt: number };
}

/** Connection options (the client's, but for the channel table's). */
export interface ConnectionOptions {
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

/** What the connection asks of what it carries (the channel table). */
export interface ConnectionChannels {
  /** What a stream (SSE, long-poll) is opened with: its channels and their cursors. */
  streamRequest(): { channels: string[]; cursors: string[] };
  /** A connection was welcomed (`replaying`: after an earlier one). */
  welcomed(onWebSocket: boolean, replaying: boolean): void;
  /** The connection ended. */
  disconnected(): void;
  /** A frame: true when it was only about channels; false when it may answer a request. */
  onFrame(f: ServerFrame): boolean;
  /** Some channel is still being resumed after a reconnect: the state stays `recovering`. */
  readonly replaying: boolean;
}

/** Nothing to carry (until `carry` is called). */
const NO_CHANNELS: ConnectionChannels = {
  streamRequest: () => ({ channels: [], cursors: [] }),
  welcomed: () => undefined,
  disconnected: () => undefined,
  onFrame: () => false,
  replaying: false,
};

/** Close codes the server sends on purpose: it was reached, so the transport itself works. */
const SERVER_CLOSE_CODES = new Set([1001, 1008, 1009, 4001, 4002, 4008, 4029]);

type Timer = 'reconnect' | 'watchdog' | 'stable' | 'upgrade' | 'probe' | 'token';

/** A Herald connection, reconnecting until paused, closed or failed. `start()` opens it. */
export class Connection {
  private readonly baseUrl: string;
  private readonly env: Environment;
  private readonly kinds: TransportKind[];
  private readonly backoff: Backoff;
  private readonly tokens: TokenSource;
  private readonly requests: Requests;
  private readonly timers = new Map<Timer, ReturnType<typeof setTimeout>>();
  private readonly o: Required<Pick<ConnectionOptions, 'stableAfterMs' | 'fallbackAfter' | 'upgradeEveryMs' | 'connectTimeoutMs' | 'requestTimeoutMs' | 'pollTimeoutMs' | 'tokenInQuery'>>;
  private channels = NO_CHANNELS;
  private modeNow: 'running' | 'paused' | 'closed' | 'failed' = 'running';
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
  private welcomedNow = false;
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

  constructor(
    opts: ConnectionOptions,
    private readonly events: EventSink<ConnectionEvents>,
  ) {
    this.baseUrl = opts.url.replace(/^ws/, 'http').replace(/\/+$/, '');
    if (!/^https?:\/\/[^/]/.test(this.baseUrl)) throw new TypeError(`url must be http(s):// or ws(s)://, not ${opts.url}`);
    this.env = opts.environment ?? defaultEnvironment();
    this.kinds = (opts.transports ?? ['websocket', 'sse', 'poll']).filter((k) => (k === 'websocket' ? this.env.WebSocket : k === 'sse' ? this.env.EventSource : this.env.fetch) !== undefined);
    if (this.kinds.length === 0) throw new TypeError('none of the transports is available in this environment');
    this.backoff = new Backoff(opts.backoff);
    this.tokens = new TokenSource(opts.token);
    this.o = {
      stableAfterMs: opts.stableAfterMs ?? 10_000,
      fallbackAfter: opts.fallbackAfter ?? 2,
      upgradeEveryMs: opts.upgradeEveryMs ?? 60_000,
      connectTimeoutMs: opts.connectTimeoutMs ?? 15_000,
      requestTimeoutMs: opts.requestTimeoutMs ?? 10_000,
      pollTimeoutMs: Math.min(opts.pollTimeoutMs ?? 25_000, 60_000),
      tokenInQuery: opts.tokenInQuery ?? false,
    };
    this.requests = new Requests(this.o.requestTimeoutMs);
  }

  /** Sets what the connection carries (before `start`). */
  carry(channels: ConnectionChannels): void {
    this.channels = channels;
  }

  /** Opens the first connection. */
  start(): Promise<void> {
    return this.open('starting');
  }

  /** The connection state. */
  get state(): ConnectionState {
    return this.stateNow;
  }

  /** The transport in use (or about to be tried). */
  get transportKind(): TransportKind {
    return this.transport?.kind ?? this.kinds[this.kindIndex];
  }

  /** `running`, or paused by the app, or closed by it, or failed for good. */
  get mode(): 'running' | 'paused' | 'closed' | 'failed' {
    return this.modeNow;
  }

  /** The transport's `welcome` came. */
  get welcomed(): boolean {
    return this.welcomedNow;
  }

  /** The transport is a WebSocket. */
  get onWebSocket(): boolean {
    return this.transport?.kind === 'websocket';
  }

  /** A transport is open, or SSE or long-poll waits for a channel to stream. */
  get active(): boolean {
    return this.transport !== undefined || this.idleStream;
  }

  // ---- the app's controls -------------------------------------------------------------------

  /** Closes and stays disconnected until `resume()`; see `HeraldClient.pause`. */
  pause(reason = 'paused by the app'): void {
    if (this.modeNow !== 'running') return;
    this.modeNow = 'paused';
    this.teardown();
    this.setState('disconnected', reason);
  }

  /** Reconnects after `pause()`, or now while waiting out a backoff. */
  resume(): void {
    if (this.modeNow === 'running' && this.timers.has('reconnect')) return void this.open('resuming');
    if (this.modeNow !== 'paused') return;
    this.modeNow = 'running';
    this.backoff.reset();
    void this.open('resuming');
  }

  /** Closes for good. */
  close(): void {
    if (this.modeNow === 'closed') return;
    this.modeNow = 'closed';
    this.teardown();
    this.setState('disconnected', 'closed by the app');
  }

  /** Cuts the connection as a network fault would, and reconnects at once. */
  dropConnection(): void {
    if (this.modeNow !== 'running' || !this.active) return;
    this.teardown();
    this.reconnect('the connection was dropped', 0);
  }

  // ---- what the channels and the client use -------------------------------------------------

  /** Sends a frame on the transport; false when none is open or it sends nothing (SSE, long-poll). */
  send(frame: ClientFrame): boolean {
    return this.transport?.send(frame) ?? false;
  }

  /** A fresh request id. */
  nextId(): number {
    return this.requests.id();
  }

  /** Sends a request frame with a fresh id and waits for its reply. */
  request(frame: ClientFrame, what: string): Promise<ServerFrame> {
    const id = this.requests.id();
    if (!this.send({ ...frame, id })) return Promise.reject(new HeraldError('disconnected', `not connected: ${what} was not sent`));
    return this.requests.wait(id, what);
  }

  /** SSE and long-poll: opens the stream again (another channel set), if one is open or idle. */
  reopenStream(reason: string): void {
    if (this.transport?.kind !== 'websocket' && this.active) this.reopen(reason);
  }

  /** `connected` once every channel resumed after a reconnect is subscribed again; until then `recovering`. */
  settle(reason: string): void {
    if (!this.welcomedNow) return;
    const replaying = this.channels.replaying;
    this.setState(replaying ? 'recovering' : 'connected', replaying ? 'resuming channels from their cursors' : reason);
  }

  /** `POST /v1/publish` with the client token (SSE, long-poll, or between connections); a refused token is renewed once. */
  async publishOverHttp(body: string, channel: string, retryRefused = true): Promise<{ cursor: string; messageId: string; duplicate: boolean }> {
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

  // ---- connecting ---------------------------------------------------------------------------

  private async open(reason: string): Promise<void> {
    if (this.modeNow !== 'running') return;
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
    if (epoch !== this.epoch || this.modeNow !== 'running') return;
    this.token = token;
    const { channels, cursors } = this.channels.streamRequest();
    if (kind !== 'websocket' && channels.length === 0) {
      this.idleStream = true;
      this.setState('connected', `${kind}: nothing to stream until a channel is subscribed`);
      return;
    }
    const req: TransportRequest = { baseUrl: this.baseUrl, token, channels, cursors };
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
    this.welcomedNow = false;
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
    this.channels.disconnected();
  }

  /** SSE and long-poll: opens the stream again (another channel set, a new token). */
  private reopen(reason: string): void {
    this.teardown();
    void this.open(reason);
  }

  /** Schedules the next attempt, falling back to the next transport after repeated failures to open this one. */
  private reconnect(reason: string, delayMs?: number): void {
    if (this.modeNow !== 'running') return;
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
    const welcomed = this.welcomedNow;
    const effective = code ?? this.closeHint;
    this.teardown();
    if (this.modeNow !== 'running') return;
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
    this.modeNow = 'failed';
    this.teardown();
    this.setState('failed', reason);
  }

  /** Declares the connection dead when nothing was heard for two heartbeats (or no `welcome` came in time). */
  private watch(): void {
    const limit = this.welcomedNow ? 2 * this.heartbeatMs : this.o.connectTimeoutMs;
    const idle = Date.now() - this.lastHeard;
    if (idle < limit) return this.timer('watchdog', limit - idle, () => this.watch());
    const welcomed = this.welcomedNow;
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
    if (epoch !== this.epoch || !this.welcomedNow) return;
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
        // Frames about channels go to them; replies (`subscribed`, `published`, `presence`,
        // `refreshed`, `pong`) settle their request; unknown types are ignored.
        if (!this.channels.onFrame(f)) this.requests.settle(f);
    }
  }

  private onWelcome(f: ServerFrame): void {
    if (this.welcomedNow) return;
    this.welcomedNow = true;
    this.failures = 0;
    this.refusals = 0;
    if (typeof f.heartbeat_ms === 'number' && f.heartbeat_ms > 0) this.heartbeatMs = f.heartbeat_ms;
    this.watch();
    this.timer('stable', this.o.stableAfterMs, () => this.backoff.reset());
    const replaying = this.everWelcomed;
    this.everWelcomed = true;
    const onWebSocket = this.transport?.kind === 'websocket';
    this.channels.welcomed(onWebSocket, replaying);
    if (!onWebSocket) {
      this.scheduleUpgrade();
      // The server warns WebSockets before their token expires; the fallbacks watch it themselves.
      this.scheduleTokenRefresh(f.expires_at ?? jwtExpiry(this.token));
    }
    this.settle(`connected over ${this.transportKind}`);
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
