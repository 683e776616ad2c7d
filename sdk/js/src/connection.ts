/**
 * The connection: one link to Herald at a time (link.ts), kept up until the app pauses or closes
 * it. It picks the transport (WebSocket, then SSE, then long-poll after repeated failures to open
 * one, and back to the WebSocket once a background probe of it is welcomed), fetches the token,
 * reconnects with backoff (or when the server says), decides what each close code means, and
 * carries the `state`. What it carries is a `ConnectionChannels` (the channel table, in the
 * client): told when a link is welcomed or lost, and handed the frames about channels.
 */
import { Backoff } from './backoff.js';
import type { EventSink } from './events.js';
import { Fallback } from './fallback.js';
import type { ClientFrame, ServerFrame } from './frames.js';
import { Link, type LinkHost } from './link.js';
import { connectionSettings, type ConnectionOptions, type ConnectionSettings } from './options.js';
import type { HttpApi } from './http.js';
import { HeraldError, Requests } from './requests.js';
import { Timers } from './timers.js';
import type { ConnectionEvents, ConnectionState } from './state.js';
import { TokenSource } from './token.js';
import type { Transport, TransportEvents, TransportKind, TransportRequest } from './transport.js';

/** What the connection asks of what it carries (the channel table). */
export interface ConnectionChannels {
  /** What a stream (SSE, long-poll) is opened with: its channels and their cursors. */
  streamRequest(): { channels: string[]; cursors: string[] };
  /** A link was welcomed (`replaying`: after an earlier one). */
  welcomed(onWebSocket: boolean, replaying: boolean): void;
  /** The link ended. */
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
const SERVER_CLOSE_CODES = new Set([1001, 1008, 1009, 4001, 4002, 4008, 4010, 4011, 4029]);

/** What the connection is doing: running, paused by the app, stopped by the server (`disconnect`), closed by the app, or failed for good. */
export type ConnectionMode = 'running' | 'paused' | 'stopped' | 'closed' | 'failed';

/** A Herald connection, reconnecting until paused, closed or failed. `start()` opens it. */
export class Connection {
  private readonly requests: Requests;
  private readonly tokens: TokenSource;
  /** What the links see of the connection. */
  private readonly host: LinkHost;
  private readonly o: ConnectionSettings;
  private readonly backoff: Backoff;
  private readonly fallback: Fallback;
  private readonly timers = new Timers<'reconnect' | 'stable'>();
  private channels = NO_CHANNELS;
  private modeNow: ConnectionMode = 'running';
  private stateNow: ConnectionState = 'connecting';
  private announced = false;
  private link: Link | undefined;
  /** On SSE or long-poll with no channel to stream: nothing is open, and a subscribe opens it. */
  private idleStream = false;
  private everWelcomed = false;
  /** Bumped by every teardown: async work of an older link stops when it sees a newer one. */
  private epoch = 0;
  /** Token refusals (4001/4002) since the last `welcome`. */
  private refusals = 0;
  /** The last heartbeat interval a `welcome` gave, ms. */
  private heartbeatMs = 25_000;

  constructor(
    opts: ConnectionOptions,
    private readonly events: EventSink<ConnectionEvents>,
  ) {
    this.o = connectionSettings(opts);
    this.backoff = new Backoff(opts.backoff);
    this.tokens = new TokenSource(opts.token);
    this.requests = new Requests(this.o.requestTimeoutMs);
    this.host = {
      events,
      requests: this.requests,
      tokens: this.tokens,
      connectTimeoutMs: this.o.connectTimeoutMs,
      welcomed: (f) => this.onWelcome(f),
      channelFrame: (f) => this.channels.onFrame(f),
      reconnectAsked: (f) => this.onReconnectFrame(f),
      disconnectAsked: (f) => this.onServerDisconnect(String(f.code ?? 'disconnected'), String(f.reason ?? ''), f.reconnect === true),
      closed: (code, reason, welcomed) => this.onClosed(code, reason, welcomed),
      dead: (welcomed, limitMs) => this.onDead(welcomed, limitMs),
      request: (frame, what) => this.request(frame, what),
      reopen: (reason) => this.reopen(reason),
    };
    this.fallback = new Fallback(this.o, {
      tokens: this.tokens,
      welcomed: () => this.welcomed,
      transportKind: () => this.transportKind,
      eventsOf: (transport) => this.eventsOf(transport),
      promote: (p, token, frames) => this.promote(p, token, frames),
    });
  }

  /** Sets what the connection carries (before `start`). */
  carry(channels: ConnectionChannels): void {
    this.channels = channels;
  }

  /** Opens the first link. */
  start(): Promise<void> {
    return this.open('starting');
  }

  /** The connection state. */
  get state(): ConnectionState {
    return this.stateNow;
  }

  /** The transport in use (or about to be tried). */
  get transportKind(): TransportKind {
    return this.link?.transport.kind ?? this.fallback.kind;
  }

  /** `running`, or paused by the app, or stopped by the server, or closed by the app, or failed for good. */
  get mode(): ConnectionMode {
    return this.modeNow;
  }

  /** The WebSocket's frame encoding (`json` on SSE, long-poll, and before a WebSocket is open). */
  get encoding(): 'json' | 'proto' {
    return this.link?.transport.encoding ?? 'json';
  }

  /** The HTTP API with the client token. */
  get http(): HttpApi {
    return { fetch: this.o.env.fetch, baseUrl: this.o.baseUrl, tokens: this.tokens, timeoutMs: this.o.requestTimeoutMs };
  }

  /** The link's `welcome` came. */
  get welcomed(): boolean {
    return this.link?.welcomed ?? false;
  }

  /** The link is a WebSocket. */
  get onWebSocket(): boolean {
    return this.link?.transport.kind === 'websocket';
  }

  /** A link is open, or SSE or long-poll waits for a channel to stream. */
  get active(): boolean {
    return this.link !== undefined || this.idleStream;
  }

  // ---- the app's controls -------------------------------------------------------------------

  /** Closes and stays disconnected until `resume()`; see `HeraldClient.pause`. */
  pause(reason = 'paused by the app'): void {
    if (this.modeNow !== 'running') return;
    this.modeNow = 'paused';
    this.teardown();
    this.setState('disconnected', reason);
  }

  /** Connects again after the server said not to reconnect, or after `pause()`. */
  connect(): void {
    if (this.modeNow !== 'paused' && this.modeNow !== 'stopped') return;
    this.modeNow = 'running';
    this.backoff.reset();
    void this.open('connecting again');
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

  /** Cuts the link as a network fault would, and reconnects at once. */
  dropConnection(): void {
    if (this.modeNow !== 'running' || !this.active) return;
    this.teardown();
    this.reconnect('the connection was dropped', 0);
  }

  // ---- what the channels and the client use -------------------------------------------------

  /** Sends a frame on the link; false when none is open or it sends nothing (SSE, long-poll). */
  send(frame: ClientFrame): boolean {
    return this.link?.send(frame) ?? false;
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
    if (!this.onWebSocket && this.active) this.reopen(reason);
  }

  /** `connected` once every channel resumed after a reconnect is subscribed again; until then `recovering`. */
  settle(reason: string): void {
    if (!this.welcomed) return;
    const replaying = this.channels.replaying;
    this.setState(replaying ? 'recovering' : 'connected', replaying ? 'resuming channels from their cursors' : reason);
  }

  // ---- opening and ending links -------------------------------------------------------------

  private async open(reason: string): Promise<void> {
    if (this.modeNow !== 'running') return;
    this.teardown();
    const epoch = this.epoch;
    const kind = this.fallback.kind;
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
    const { channels, cursors } = this.channels.streamRequest();
    if (kind !== 'websocket' && channels.length === 0) {
      this.idleStream = true;
      this.setState('connected', `${kind}: nothing to stream until a channel is subscribed`);
      return;
    }
    const req: TransportRequest = { baseUrl: this.o.baseUrl, token, channels, cursors };
    let t: Transport | undefined;
    const events = this.eventsOf(() => t);
    try {
      t = this.fallback.open(req, events);
    } catch (e) {
      this.fallback.failed();
      return this.reconnect(`${kind} could not be opened: ${message(e)}`);
    }
    this.link = new Link(this.host, t, token, this.heartbeatMs);
    this.link.watch();
  }

  /** Closes whatever is open and forgets the link (not the channels or cursors). */
  private teardown(): void {
    this.epoch += 1;
    this.idleStream = false;
    this.timers.clear();
    const l = this.link;
    this.link = undefined;
    l?.close();
    this.fallback.cancel();
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
    const next = this.fallback.advance();
    const why = next === undefined ? reason : `${reason}; trying ${next} next`;
    const delay = delayMs ?? this.backoff.next();
    this.setState('disconnected', why);
    this.timers.set('reconnect', delay, () => void this.open('reconnecting'));
  }

  /** The link's transport ended by itself. */
  private onClosed(code: number | undefined, reason: string, welcomed: boolean): void {
    this.teardown();
    if (this.modeNow !== 'running') return;
    switch (code) {
      case 1008:
        return this.fail(`refused: ${reason}`);
      case 4001:
      case 4002: {
        const what = code === 4001 ? 'the token was refused' : 'the token expired';
        if (!this.tokens.renewable || this.refusals >= 1) return this.fail(what);
        this.refusals += 1;
        this.tokens.invalidate();
        return this.reconnect(`${what}: fetching a new one`, 0);
      }
      case 4008:
        return this.reconnect('fell behind (lagged): resuming', Math.min(this.backoff.next(), 1000));
      // A close without the `disconnect` frame before it (which would have ended the link).
      case 4010:
        return this.onServerDisconnect('disconnected', reason, true);
      case 4011:
        return this.onServerDisconnect('revoked', reason, false);
      default:
        if (!welcomed && (code === undefined || !SERVER_CLOSE_CODES.has(code))) this.fallback.failed();
        return this.reconnect(reason);
    }
  }

  /** Nothing was heard on the link in time. */
  private onDead(welcomed: boolean, limitMs: number): void {
    this.teardown();
    if (!welcomed) this.fallback.failed();
    this.reconnect(welcomed ? `nothing heard for ${limitMs} ms: the connection is dead` : `no welcome within ${limitMs} ms`);
  }

  /** The server asked to reconnect, maybe saying when. */
  private onReconnectFrame(f: ServerFrame): void {
    const delay = this.backoff.hinted(Number(f.after_ms ?? 0));
    this.teardown();
    this.reconnect(`the server asked to reconnect in ${delay} ms (${f.reason ?? 'no reason given'})`, delay);
  }

  /**
   * The server ended the connection on purpose. With `reconnect` (never after `revoked`) it
   * reconnects with the usual backoff; otherwise it stays `disconnected` until `connect()`, which
   * after `revoked` fetches a new token first.
   */
  private onServerDisconnect(code: string, reason: string, reconnect: boolean): void {
    this.teardown();
    if (this.modeNow !== 'running') return;
    const why = `disconnected by the server (${code}${reason ? `: ${reason}` : ''})`;
    reconnect &&= code !== 'revoked';
    if (reconnect) {
      this.reconnect(why);
    } else {
      if (code === 'revoked') this.tokens.invalidate();
      this.modeNow = 'stopped';
      this.setState('disconnected', `${why}; connect() to reconnect`);
    }
    this.events.emit('disconnected', { code, reason, reconnect });
  }

  private fail(reason: string): void {
    this.modeNow = 'failed';
    this.teardown();
    this.setState('failed', reason);
  }

  /** The link's `welcome` came: it is connected (and, after a reconnect, recovering its channels). */
  private onWelcome(f: ServerFrame): void {
    const link = this.link;
    if (!link) return;
    link.markWelcomed(f);
    this.heartbeatMs = link.heartbeatMs;
    this.fallback.welcomed();
    this.refusals = 0;
    this.timers.set('stable', this.o.stableAfterMs, () => this.backoff.reset());
    const replaying = this.everWelcomed;
    this.everWelcomed = true;
    const onWebSocket = link.transport.kind === 'websocket';
    this.channels.welcomed(onWebSocket, replaying);
    if (!onWebSocket) {
      this.fallback.scheduleProbe();
      // The server warns WebSockets before their token expires; the fallbacks watch it themselves.
      link.scheduleTokenRefresh(link.streamTokenExpiry(f));
    }
    this.settle(`connected over ${this.transportKind}`);
  }

  // ---- frames -------------------------------------------------------------------------------

  /** A transport's events, routed by which it is when they come: the link's, the probe, or a stale one (ignored). */
  private eventsOf(transport: () => Transport | undefined): TransportEvents {
    return {
      frames: (frames) => {
        const t = transport();
        if (!t) return;
        if (this.fallback.isProbe(t)) return this.fallback.onProbeFrames(t, frames);
        if (t === this.link?.transport) this.link.onFrames(frames);
      },
      garbage: (d) => {
        if (transport() === this.link?.transport) this.events.emit('error', new HeraldError('bad_request', `the server sent ${d}`));
      },
      closed: (code, why) => {
        const t = transport();
        if (t && t === this.link?.transport) this.link.onClosed(code, why);
        else if (t && this.fallback.isProbe(t)) this.fallback.dropProbe(t);
      },
    };
  }

  /** The background WebSocket was welcomed: the connection moves to it. */
  private promote(p: Transport, token: string, frames: ServerFrame[]): void {
    this.teardown();
    this.fallback.backToFirst();
    this.setState('recovering', 'the WebSocket works again');
    this.link = new Link(this.host, p, token, this.heartbeatMs);
    this.link.onFrames(frames);
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
