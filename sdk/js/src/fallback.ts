/**
 * Which transport the connection opens: the preferred ones the environment has, in order; the
 * next one after `fallbackAfter` consecutive failures to open the current one; and, while on a
 * fallback, the way back: now and then a WebSocket is opened in the background (the probe), and
 * once it is welcomed the connection moves to it.
 */
import type { ServerFrame } from './frames.js';
import type { ConnectionSettings } from './options.js';
import { openPoll } from './poll.js';
import { openSse } from './sse.js';
import { Timers } from './timers.js';
import type { TokenSource } from './token.js';
import type { Transport, TransportEvents, TransportKind, TransportRequest } from './transport.js';
import { openWebSocket } from './websocket.js';

/** What the probe needs of the connection. */
export interface ProbeHost {
  readonly tokens: TokenSource;
  /** Whether the connection's link is welcomed (only then is the WebSocket tried again). */
  welcomed(): boolean;
  /** The transport in use. */
  transportKind(): TransportKind;
  /** The events of a transport, routed by the connection to the link or the probe. */
  eventsOf(transport: () => Transport | undefined): TransportEvents;
  /** The probe was welcomed: the connection moves to it, starting with these frames. */
  promote(probe: Transport, token: string, frames: ServerFrame[]): void;
}

/** The transport ladder and the way back up it. */
export class Fallback {
  private readonly timers = new Timers<'upgrade' | 'probe'>();
  private index = 0;
  /** Consecutive failures to open the current transport. */
  private failures = 0;
  /** A WebSocket tried in the background while on a fallback, and the token it was opened with. */
  private probe: Transport | undefined;
  private probeToken = '';
  /** Bumped by `cancel`: a probe started before it does not go on. */
  private generation = 0;

  constructor(
    private readonly o: ConnectionSettings,
    private readonly host: ProbeHost,
  ) {}

  /** The transport to open next. */
  get kind(): TransportKind {
    return this.o.kinds[this.index];
  }

  /** Opens a transport of the current kind. */
  open(req: TransportRequest, events: TransportEvents): Transport {
    const kind = this.kind;
    return kind === 'websocket' ? openWebSocket(this.o.env, req, events, this.o.tokenInQuery, this.o.encoding) : kind === 'sse' ? openSse(this.o.env, req, events) : openPoll(this.o.env, req, events, this.o.pollTimeoutMs);
  }

  /** Opening the current transport failed (it threw, ended before its `welcome`, or none came in time). */
  failed(): void {
    this.failures += 1;
  }

  /** A `welcome` came on the current transport. */
  welcomed(): void {
    this.failures = 0;
  }

  /** Before the next attempt: after repeated failures, the next transport (returned); else undefined. */
  advance(): TransportKind | undefined {
    const kinds = this.o.kinds;
    if (this.failures >= this.o.fallbackAfter && kinds.length > 1) {
      this.index = (this.index + 1) % kinds.length;
      this.failures = 0;
      return kinds[this.index];
    }
    return undefined;
  }

  // ---- back to the WebSocket ----------------------------------------------------------------

  /** On a fallback, tries the WebSocket again in `upgradeEveryMs`, in the background. */
  scheduleProbe(): void {
    if (this.o.kinds[0] !== 'websocket' || this.host.transportKind() === 'websocket') return;
    this.timers.set('upgrade', this.o.upgradeEveryMs, () => void this.startProbe());
  }

  /** Whether `t` is the probe. */
  isProbe(t: Transport): boolean {
    return t === this.probe;
  }

  /** The probe's first frames: a `welcome` moves the connection to it; anything else (an error) ends it. */
  onProbeFrames(p: Transport, frames: ServerFrame[]): void {
    if (frames[0]?.type !== 'welcome') return this.dropProbe(p);
    this.probe = undefined;
    this.host.promote(p, this.probeToken, frames);
  }

  /** Closes the probe `p` (it failed, or took too long) and tries again later. */
  dropProbe(p: Transport): void {
    if (this.probe !== p) return;
    this.probe = undefined;
    p.close();
    this.scheduleProbe();
  }

  /** The connection's link ended: no probe, none scheduled. */
  cancel(): void {
    this.generation += 1;
    this.timers.clear();
    const p = this.probe;
    this.probe = undefined;
    p?.close();
  }

  /** The connection moved to the WebSocket: the ladder starts again from the top. */
  backToFirst(): void {
    this.index = 0;
    this.failures = 0;
  }

  private async startProbe(): Promise<void> {
    const generation = this.generation;
    let token: string;
    try {
      token = await this.host.tokens.get();
    } catch {
      return this.scheduleProbe();
    }
    if (generation !== this.generation || !this.host.welcomed()) return;
    let p: Transport | undefined;
    const events = this.host.eventsOf(() => p);
    try {
      p = openWebSocket(this.o.env, { baseUrl: this.o.baseUrl, token, channels: [], cursors: [] }, events, this.o.tokenInQuery, this.o.encoding);
    } catch {
      return this.scheduleProbe();
    }
    const probe = p;
    this.probe = probe;
    this.probeToken = token;
    this.timers.set('probe', this.o.connectTimeoutMs, () => this.dropProbe(probe));
  }
}
