/**
 * The channel table: a client's subscriptions, each with its cursor (where it resumes from), its
 * dedupe window and where it stands on the current connection. When a connection is welcomed it
 * subscribes every channel (from its cursor after a reconnect); it follows the app's pause,
 * resume and unsubscribe on the wire, and hands records and presence events to their handlers.
 * It reaches the server only through a `ChannelCarrier` (the connection, in the client).
 */
import { CursorStore } from './cursors.js';
import { Dedupe } from './dedupe.js';
import { guarded, type EventSink } from './events.js';
import { validChannel, type ClientFrame, type ServerFrame } from './frames.js';
import { HeraldError } from './requests.js';
import type { HeraldMessage, Subscription, SubscribeOptions } from './subscription.js';

/** The events the channel table reports. */
export interface ChannelEvents {
  /** Something went wrong that the client handled or cannot fix: a refused request, a bad frame, a failing token function. */
  error: HeraldError;
  /** A channel's history after its cursor is gone (past retention): refetch that state from your backend. */
  recovery_failed: { channel: string };
}

/** What the channel table needs of the connection it rides on. */
export interface ChannelCarrier {
  /** `closed` and `failed` take no new subscription. */
  readonly mode: 'running' | 'paused' | 'stopped' | 'closed' | 'failed';
  /** The transport is a WebSocket (channels are subscribed one by one); otherwise one stream carries them all. */
  readonly onWebSocket: boolean;
  /** The transport's `welcome` came. */
  readonly welcomed: boolean;
  /** Sends a frame; false when it could not be sent. */
  send(frame: ClientFrame): boolean;
  /** Sends a request frame with a fresh id and waits for its reply. */
  request(frame: ClientFrame, what: string): Promise<ServerFrame>;
  /** A fresh request id, for a frame whose reply is not awaited. */
  nextId(): number;
  /** SSE and long-poll carry a fixed channel set: reopen the stream, if one is open or idle. */
  reopenStream(reason: string): void;
  /** A channel was resumed or ended: the connection state may change (see `replaying`). */
  settle(reason: string): void;
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

/** The channels of one client, kept across connections. */
export class ChannelTable {
  private readonly cursors = new CursorStore();
  private readonly channels = new Map<string, Channel>();

  constructor(
    private readonly carrier: ChannelCarrier,
    private readonly events: EventSink<ChannelEvents>,
    /** Message ids remembered per channel. */
    private readonly dedupeWindow = 1000,
  ) {}

  /** Adds `channel`; see `HeraldClient.subscribe`. */
  subscribe<T = unknown>(channel: string, handler: (message: HeraldMessage<T>) => void, opts: SubscribeOptions = {}): Subscription {
    if (!validChannel(channel)) throw new HeraldError('invalid_channel', `"${channel}" is not a channel name (1 to 128 of A-Z a-z 0-9 _ - : . @ = ,)`, channel);
    if (this.channels.has(channel)) throw new HeraldError('already_subscribed', `already subscribed to ${channel}`, channel);
    const mode = this.carrier.mode;
    if (mode === 'closed' || mode === 'failed') throw new HeraldError('disconnected', `the client is ${mode}`, channel);
    const ch: Channel = {
      name: channel,
      handler: handler as (message: HeraldMessage) => void,
      opts,
      dedupe: new Dedupe(this.dedupeWindow),
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

  /** Some channel's (re)subscribe after a reconnect still waits for its reply. */
  get replaying(): boolean {
    return [...this.channels.values()].some((c) => c.replaying);
  }

  /** What a stream (SSE, long-poll) carries: every channel not paused by the app, and their cursors. */
  streamRequest(): { channels: string[]; cursors: string[] } {
    const channels = this.streamChannels();
    return { channels, cursors: this.cursors.list(channels) };
  }

  /**
   * A connection was welcomed (`replaying`: after an earlier one). On a WebSocket every channel
   * not paused is subscribed, from its cursor; a stream subscribed them all by opening.
   */
  welcomed(onWebSocket: boolean, replaying: boolean): void {
    if (onWebSocket) {
      for (const ch of this.channels.values()) if (!ch.paused) this.sendSubscribe(ch, replaying);
      return;
    }
    for (const ch of this.channels.values()) {
      if (ch.paused) continue;
      ch.wire = 'subscribing';
      ch.since = this.cursors.get(ch.name) !== undefined;
      ch.replaying = replaying && ch.since;
    }
  }

  /** The connection ended: no channel is on the wire any more (each keeps its cursor). */
  disconnected(): void {
    for (const ch of this.channels.values()) {
      ch.wire = 'none';
      ch.replaying = ch.stale = false;
    }
  }

  /**
   * A frame from the server. True when it was the channel table's alone; false for other frames
   * and for `subscribed`, which also answers a request.
   */
  onFrame(f: ServerFrame): boolean {
    switch (f.type) {
      case 'subscribed':
        this.onSubscribed(f);
        return false;
      case 'message':
        this.onMessage(f);
        return true;
      case 'position':
        // Long-poll: the stream's position covers every channel of the request.
        if (f.cursor !== undefined) for (const c of this.streamChannels()) this.cursors.processed(c, f.cursor);
        return true;
      case 'paused': {
        // Records queued before the pause may still follow; they are delivered (the server's
        // `resume` continues after them).
        const ch = this.channelOf(f);
        if (ch?.wire !== 'pausing') return true;
        ch.wire = 'paused';
        this.cursors.subscribed(ch.name, f.cursor);
        return true;
      }
      case 'unsubscribed':
        if (f.id === undefined) this.onEnded(f);
        return true;
      case 'join':
      case 'leave': {
        const ch = this.channelOf(f);
        if (ch?.opts.onPresence && f.member) guarded(ch.opts.onPresence, { type: f.type, channel: ch.name, member: f.member });
        return true;
      }
      default:
        return false;
    }
  }

  // ---- the app's changes --------------------------------------------------------------------

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
    this.carrier.settle('connected');
  }

  /**
   * A channel was added, removed, paused or resumed. On the WebSocket, its frames say so; SSE and
   * long-poll carry a fixed channel set, so the stream reopens with the cursors. With nothing open
   * yet, the next connection takes the change into account by itself.
   */
  private channelChanged(ch: Channel): void {
    if (this.carrier.onWebSocket) {
      if (this.carrier.welcomed) this.syncWire(ch);
    } else {
      this.carrier.reopenStream('the channels changed');
    }
  }

  /** Brings the server's view of `ch` on the WebSocket in line with the app's. */
  private syncWire(ch: Channel): void {
    const wanted = this.channels.get(ch.name) === ch;
    if (!wanted) {
      if (ch.wire !== 'none') this.carrier.send({ type: 'unsubscribe', id: this.carrier.nextId(), channel: ch.name });
      ch.wire = 'none';
    } else if (ch.paused) {
      if (ch.wire === 'subscribing' || ch.wire === 'live') {
        this.carrier.send({ type: 'pause', id: this.carrier.nextId(), channel: ch.name });
        ch.wire = 'pausing';
      }
    } else if (ch.wire === 'pausing' || ch.wire === 'paused') {
      ch.wire = 'subscribing';
      ch.since = true;
      this.track(ch, this.carrier.request({ type: 'resume', channel: ch.name }, `resume of ${ch.name}`));
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
    this.track(ch, this.carrier.request(frame, `subscribe to ${ch.name}`));
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
      this.carrier.settle('connected');
    });
  }

  /** The channels a stream carries (SSE, long-poll): every one not paused by the app. */
  private streamChannels(): string[] {
    return [...this.channels.values()].filter((c) => !c.paused).map((c) => c.name);
  }

  // ---- the server's frames ------------------------------------------------------------------

  private channelOf(f: ServerFrame): Channel | undefined {
    return f.channel === undefined ? undefined : this.channels.get(f.channel);
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
    this.carrier.settle('every channel resumed');
  }

  private onMessage(f: ServerFrame): void {
    const ch = this.channelOf(f);
    if (!ch || ch.stale) return;
    if (typeof f.id !== 'string' || typeof f.cursor !== 'string') {
      this.events.emit('error', new HeraldError('bad_request', 'the server sent a message without a string id and cursor', ch.name));
      return;
    }
    if (!this.carrier.onWebSocket) {
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
    this.carrier.settle('connected');
  }
}
