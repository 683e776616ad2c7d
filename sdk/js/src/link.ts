/**
 * One open transport of the connection, from its opening to its end: the token it was opened
 * with, its `welcome`, its heartbeats (nothing heard for two of them, or no `welcome` within the
 * connect timeout, and it is dead), its frames (pings answered, errors reported, channel frames and
 * replies handed on) and its token, refreshed before it expires. What a welcome, an end, a death
 * or a `reconnect` or `disconnect` frame means for the connection is for its `LinkHost` (the connection) to say.
 */
import type { EventSink } from './events.js';
import type { ClientFrame, ServerFrame } from './frames.js';
import { HeraldError, type Requests } from './requests.js';
import { Timers } from './timers.js';
import { jwtExpiry, type TokenSource } from './token.js';
import { closeCodeOf, type Transport } from './transport.js';

/** The events a link reports by itself. */
export interface LinkEvents {
  error: HeraldError;
  token_expiring: { expiresAt: number };
}

/** What a link needs of the connection that opened it. */
export interface LinkHost {
  readonly events: EventSink<LinkEvents>;
  readonly requests: Requests;
  readonly tokens: TokenSource;
  /** How long the link may take until its `welcome`, ms. */
  readonly connectTimeoutMs: number;
  /** The link's `welcome` came (and it was not welcomed yet). */
  welcomed(f: ServerFrame): void;
  /** A frame about channels, or a reply: false when it was not only about channels. */
  channelFrame(f: ServerFrame): boolean;
  /** The server asked to reconnect (a `reconnect` frame). */
  reconnectAsked(f: ServerFrame): void;
  /** The server ended the connection (a `disconnect` frame). */
  disconnectAsked(f: ServerFrame): void;
  /** The transport ended by itself, with `code` (or the one a fatal `error` frame announced). */
  closed(code: number | undefined, reason: string, welcomed: boolean): void;
  /** Nothing was heard for `limitMs`. */
  dead(welcomed: boolean, limitMs: number): void;
  /** Sends a request frame with a fresh id and waits for its reply. */
  request(frame: ClientFrame, what: string): Promise<ServerFrame>;
  /** SSE: the stream reopens to take a new token. */
  reopen(reason: string): void;
}

/** An open transport and what the connection knows of it. */
export class Link {
  private readonly timers = new Timers<'watchdog' | 'token'>();
  private welcomedNow = false;
  private ended = false;
  private lastHeard = Date.now();
  /** The close code a fatal `error` frame announced (SSE has no close codes of its own). */
  private closeHint: number | undefined;

  constructor(
    private readonly host: LinkHost,
    readonly transport: Transport,
    /** The token the transport was opened with (or refreshed to). */
    private token: string,
    /** The heartbeat interval, ms (the server's `welcome` says; until then, the last one's). */
    public heartbeatMs: number,
  ) {}

  /** The `welcome` came. */
  get welcomed(): boolean {
    return this.welcomedNow;
  }

  /** Sends a frame; false when it could not (a closed link, SSE, long-poll). */
  send(frame: ClientFrame): boolean {
    return this.transport.send(frame);
  }

  /** Ends the link: its timers stop, the transport closes, and nothing it started carries on. */
  close(): void {
    this.ended = true;
    this.timers.clear();
    this.transport.close();
  }

  /** The `welcome` came: the link is watched on heartbeats from now on. */
  markWelcomed(f: ServerFrame): void {
    this.welcomedNow = true;
    if (typeof f.heartbeat_ms === 'number' && f.heartbeat_ms > 0) this.heartbeatMs = f.heartbeat_ms;
    this.watch();
  }

  /** Declares the link dead when nothing was heard for two heartbeats (or no `welcome` came in time). */
  watch(): void {
    const limit = this.welcomedNow ? 2 * this.heartbeatMs : this.host.connectTimeoutMs;
    const idle = Date.now() - this.lastHeard;
    if (idle < limit) return this.timers.set('watchdog', limit - idle, () => this.watch());
    this.host.dead(this.welcomedNow, limit);
  }

  /** SSE and long-poll: the token's expiry, from the `welcome` or else from the token itself. */
  streamTokenExpiry(f: ServerFrame): number | undefined {
    return f.expires_at ?? jwtExpiry(this.token);
  }

  // ---- the transport's events ---------------------------------------------------------------

  /** Frames, in order. */
  onFrames(frames: ServerFrame[]): void {
    this.lastHeard = Date.now();
    for (const f of frames) {
      this.onFrame(f);
      // A frame may end the link (`reconnect`); the rest belonged to it.
      if (this.ended) return;
    }
  }

  /** The transport ended by itself. */
  onClosed(code: number | undefined, reason: string): void {
    this.host.closed(code ?? this.closeHint, reason, this.welcomedNow);
  }

  private onFrame(f: ServerFrame): void {
    switch (f.type) {
      case 'welcome':
        if (!this.welcomedNow) this.host.welcomed(f);
        return;
      case 'ping':
        this.send({ type: 'pong' });
        return;
      case 'token_expiring':
        void this.refreshToken(Number(f.expires_at ?? 0));
        return;
      case 'reconnect':
        return this.host.reconnectAsked(f);
      case 'disconnect':
        return this.host.disconnectAsked(f);
      case 'error':
        return this.onError(f);
      default:
        // Frames about channels go to them; replies (`subscribed`, `published`, `presence`,
        // `refreshed`, `pong`) settle their request; unknown types are ignored.
        if (!this.host.channelFrame(f)) this.host.requests.settle(f);
    }
  }

  private onError(f: ServerFrame): void {
    if (this.host.requests.settle(f)) return;
    // Without an id, the connection failed: the close that follows means what the code says.
    if (f.id === undefined) this.closeHint = closeCodeOf(f.code) ?? this.closeHint;
    this.host.events.emit('error', new HeraldError(f.code ?? 'internal', f.message ?? 'the server reported an error', f.channel));
  }

  // ---- tokens -------------------------------------------------------------------------------

  /** SSE and long-poll: refresh the token ahead of `expiresAt` as the server would warn (a minute, or half a short token's life). */
  scheduleTokenRefresh(expiresAt: number | undefined): void {
    if (expiresAt === undefined) return;
    const remaining = expiresAt * 1000 - Date.now();
    const lead = Math.min(Math.max(remaining, 0), 120_000) / 2;
    this.timers.set('token', Math.max(0, remaining - lead), () => void this.refreshToken(expiresAt));
  }

  /** The token expires soon: fetch a new one and hand it to the transport. */
  private async refreshToken(expiresAt: number): Promise<void> {
    this.host.events.emit('token_expiring', { expiresAt });
    const tokens = this.host.tokens;
    if (!tokens.renewable) return;
    let token: string;
    try {
      token = await tokens.refresh();
    } catch (e) {
      this.host.events.emit('error', new HeraldError('unauthorized', `the token function failed: ${e instanceof Error ? e.message : String(e)}`));
      return;
    }
    if (this.ended) return;
    this.token = token;
    const t = this.transport;
    if (t.kind === 'websocket') {
      try {
        await this.host.request({ type: 'refresh', token }, 'refresh');
      } catch (e) {
        if (e instanceof HeraldError && e.code !== 'disconnected') this.host.events.emit('error', e);
      }
    } else if (t.setToken) {
      t.setToken(token);
      this.scheduleTokenRefresh(jwtExpiry(token));
    } else {
      this.host.reopen('reopening the stream with a new token');
    }
  }
}
