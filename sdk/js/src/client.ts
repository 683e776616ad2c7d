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
import { deviceFields, type DeviceOptions, type DeviceRef, type DeviceRegistration } from './devices.js';
import { validChannel, type ClientFrame, type PresenceMember } from './frames.js';
import { fetchHistory, historyPages, type HistoryOptions, type HistoryPage } from './history.js';
import { callHttp } from './http.js';
import type { ClientOptions } from './options.js';
import { publishOverHttp, type Published } from './publish.js';
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

  /** The WebSocket's frame encoding on this connection: `proto` once the server accepted it, else `json`. */
  get encoding(): 'json' | 'proto' {
    return this.connection.encoding;
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
    if (c.mode === 'closed' || c.mode === 'failed' || c.mode === 'stopped') throw new HeraldError('disconnected', `the client is ${c.mode}`, channel);
    const key = opts.idempotencyKey !== undefined ? { idempotency_key: opts.idempotencyKey } : {};
    if (c.onWebSocket && c.welcomed) {
      const f = await c.request({ type: 'publish', channel, data, ...key }, `publish on ${channel}`);
      return { cursor: String(f.cursor), messageId: String(f.message_id), duplicate: f.duplicate === true };
    }
    return publishOverHttp(c.http, JSON.stringify({ channel, data, ...key }), channel);
  }

  /**
   * A page of `channel`'s history over `GET /v1/history` with the client token: the newest
   * `limit` records, or those `before` a page, or `since` a cursor or `sinceMs` a time; oldest
   * first. `page.next` asks for the next page; subscribing with `since: page.cursor` after the
   * newest page continues live with nothing missed or repeated.
   */
  history<T = unknown>(channel: string, opts: HistoryOptions = {}): Promise<HistoryPage<T>> {
    return fetchHistory<T>(this.connection.http, channel, opts);
  }

  /** Every page of `channel`'s history from `opts` on: backward from the newest (or `before`), forward from `since`/`sinceMs`. */
  historyPages<T = unknown>(channel: string, opts: HistoryOptions = {}): AsyncGenerator<HistoryPage<T>, void, undefined> {
    return historyPages<T>(this.connection.http, channel, opts);
  }

  /**
   * Registers this device for push notifications to its user (docs/push.md): over the WebSocket
   * when connected on one, else over `POST /v1/devices`. Register again on every app start.
   */
  async registerDevice(device: DeviceOptions): Promise<DeviceRegistration> {
    return this.device({ type: 'register_device', ...deviceFields(device, true) }, 'POST', 'register the device');
  }

  /** Removes this device's registration: over the WebSocket when connected on one, else over `DELETE /v1/devices`. */
  async unregisterDevice(device: DeviceRef): Promise<DeviceRegistration> {
    return this.device({ type: 'unregister_device', ...deviceFields(device, false) }, 'DELETE', 'unregister the device');
  }

  private async device(frame: ClientFrame, method: 'POST' | 'DELETE', what: string): Promise<DeviceRegistration> {
    const c = this.connection;
    if (c.onWebSocket && c.welcomed) {
      try {
        const f = await c.request(frame, what);
        return { registered: f.registered === true };
      } catch (e) {
        // A server from before the device frames: its HTTP API does the same.
        if (!(e instanceof HeraldError) || e.code !== 'unknown_type') throw e;
      }
    }
    const { type: _type, ...body } = frame;
    await callHttp(c.http, { method, path: '/v1/devices', body: JSON.stringify(body), what });
    return { registered: method === 'POST' };
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

  /**
   * Connects again after the server ended the connection and said not to reconnect (the
   * `disconnected` event; after `revoked` with a new token from the token function), or after
   * `pause()`. Every channel resumes from its cursor.
   */
  connect(): void {
    this.connection.connect();
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
