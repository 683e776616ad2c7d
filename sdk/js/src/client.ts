/**
 * The Herald client: one connection, many channels. It resumes every channel from its cursor
 * after any cut, drops what it has already delivered, reconnects with backoff, and falls back
 * from WebSocket to SSE to long-poll (and back) where WebSockets are blocked.
 *
 * It is a façade over two parts: the `Connection` (connection.ts, with link.ts for each open
 * transport: transports, reconnects, heartbeats, tokens, state) and the `ChannelTable`
 * (channels.ts: subscriptions, cursors, dedupe, delivery), which rides on the connection.
 */
import { ChannelTable, type ChannelEvents } from './channels.js';
import { Connection } from './connection.js';
import { Emitter, type Listener } from './events.js';
import { validChannel, type PresenceMember } from './frames.js';
import type { ClientOptions } from './options.js';
import type { Published } from './publish.js';
import { HeraldError } from './requests.js';
import type { ConnectionEvents, ConnectionState } from './state.js';
import type { HeraldMessage, Subscription, SubscribeOptions } from './subscription.js';
import type { TransportKind } from './transport.js';

/** A channel's presence. */
export interface Presence {
  channel: string;
  occupancy: number;
  members: PresenceMember[];
}

/** The client's events. */
export interface HeraldEvents extends ConnectionEvents, ChannelEvents {}

/** Publish options. */
export interface PublishOptions {
  /** Per account, within the server's idempotency window, one key makes one record. */
  idempotencyKey?: string;
}

/**
 * A Herald client.
 *
 * ```ts
 * const herald = new HeraldClient({ url: 'https://herald.example.com', token: fetchToken });
 * herald.subscribe('incidents', (m) => render(m.data));
 * ```
 */
export class HeraldClient {
  private readonly events = new Emitter<HeraldEvents>();
  private readonly connection: Connection;
  private readonly channels: ChannelTable;

  constructor(opts: ClientOptions) {
    this.connection = new Connection(opts, this.events);
    this.channels = new ChannelTable(this.connection, this.events, opts.dedupeWindow ?? 1000);
    this.connection.carry(this.channels);
    // Connect once the caller has had the chance to subscribe and listen.
    void Promise.resolve().then(() => this.connection.start());
  }

  /** The connection state. */
  get state(): ConnectionState {
    return this.connection.state;
  }

  /** The transport in use (or about to be tried). */
  get transportKind(): TransportKind {
    return this.connection.transportKind;
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
    return this.channels.subscribe(channel, handler, opts);
  }

  /**
   * Publishes `data` on `channel`: over the WebSocket when connected on one, else over
   * `POST /v1/publish` with the client token. Not retried by itself: a publish that failed with
   * `disconnected` or `timeout` may or may not have been written; retry with the same
   * `idempotencyKey` to be sure of one record.
   */
  async publish(channel: string, data: unknown, opts: PublishOptions = {}): Promise<Published> {
    const c = this.connection;
    if (!validChannel(channel)) throw new HeraldError('invalid_channel', `"${channel}" is not a channel name`, channel);
    if (c.mode === 'closed' || c.mode === 'failed') throw new HeraldError('disconnected', `the client is ${c.mode}`, channel);
    const key = opts.idempotencyKey !== undefined ? { idempotency_key: opts.idempotencyKey } : {};
    if (c.onWebSocket && c.welcomed) {
      const f = await c.request({ type: 'publish', channel, data, ...key }, `publish on ${channel}`);
      return { cursor: String(f.cursor), messageId: String(f.message_id), duplicate: f.duplicate === true };
    }
    return c.publishOverHttp(JSON.stringify({ channel, data, ...key }), channel);
  }

  /** Who is on `channel` now. Needs the WebSocket: on SSE or long-poll it rejects with `not_supported`. */
  async presence(channel: string): Promise<Presence> {
    const c = this.connection;
    if (!c.onWebSocket || !c.welcomed) {
      if (c.active) throw new HeraldError('not_supported', `presence needs the WebSocket transport; the client is on ${c.transportKind} (WebSockets are blocked here)`, channel);
      throw new HeraldError('disconnected', 'not connected', channel);
    }
    const f = await c.request({ type: 'presence', channel }, `presence of ${channel}`);
    return { channel, occupancy: Number(f.occupancy ?? 0), members: f.members ?? [] };
  }

  /**
   * Closes the connection and stays disconnected (the app went to the background, or offline),
   * keeping every channel and its cursor; `resume()` reconnects and continues each channel exactly.
   */
  pause(reason = 'paused by the app'): void {
    this.connection.pause(reason);
  }

  /**
   * Reconnects after `pause()` (foreground, back online) and resumes every channel from its
   * cursor. While waiting to reconnect after a cut, it reconnects now instead of after the backoff.
   */
  resume(): void {
    this.connection.resume();
  }

  /** Closes for good. */
  close(): void {
    this.connection.close();
  }

  /** Cuts the connection as a network fault would, and reconnects at once (tests, "retry now" buttons). */
  dropConnection(): void {
    this.connection.dropConnection();
  }
}
