import { type EventSink } from './events.js';
import { type ClientFrame, type ServerFrame } from './frames.js';
import { HeraldError } from './requests.js';
import type { HeraldMessage, Subscription, SubscribeOptions } from './subscription.js';
/** The events the channel table reports. */
export interface ChannelEvents {
    /** Something went wrong that the client handled or cannot fix: a refused request, a bad frame, a failing token function. */
    error: HeraldError;
    /** A channel's history after its cursor is gone (past retention): refetch that state from your backend. */
    recovery_failed: {
        channel: string;
    };
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
/** The channels of one client, kept across connections. */
export declare class ChannelTable {
    private readonly carrier;
    private readonly events;
    /** Message ids remembered per channel. */
    private readonly dedupeWindow;
    private readonly cursors;
    private readonly channels;
    constructor(carrier: ChannelCarrier, events: EventSink<ChannelEvents>, 
    /** Message ids remembered per channel. */
    dedupeWindow?: number);
    /** Adds `channel`; see `HeraldClient.subscribe`. */
    subscribe<T = unknown>(channel: string, handler: (message: HeraldMessage<T>) => void, opts?: SubscribeOptions): Subscription;
    /** Some channel's (re)subscribe after a reconnect still waits for its reply. */
    get replaying(): boolean;
    /** What a stream (SSE, long-poll) carries: every channel not paused by the app, and their cursors. */
    streamRequest(): {
        channels: string[];
        cursors: string[];
    };
    /**
     * A connection was welcomed (`replaying`: after an earlier one). On a WebSocket every channel
     * not paused is subscribed, from its cursor; a stream subscribed them all by opening.
     */
    welcomed(onWebSocket: boolean, replaying: boolean): void;
    /** The connection ended: no channel is on the wire any more (each keeps its cursor). */
    disconnected(): void;
    /**
     * A frame from the server. True when it was the channel table's alone; false for other frames
     * and for `subscribed`, which also answers a request.
     */
    onFrame(f: ServerFrame): boolean;
    private setPaused;
    private unsubscribe;
    /**
     * A channel was added, removed, paused or resumed. On the WebSocket, its frames say so; SSE and
     * long-poll carry a fixed channel set, so the stream reopens with the cursors. With nothing open
     * yet, the next connection takes the change into account by itself.
     */
    private channelChanged;
    /** Brings the server's view of `ch` on the WebSocket in line with the app's. */
    private syncWire;
    private sendSubscribe;
    /** A (re)subscribe the server refused ends the channel; one cut short by a reconnect is redone by it. */
    private track;
    /** The channels a stream carries (SSE, long-poll): every one not paused by the app. */
    private streamChannels;
    private channelOf;
    private onSubscribed;
    private onMessage;
    /** `unsubscribed` without an id: the server ended the subscription. */
    private onEnded;
}
