/**
 * The three transports of docs/protocol.md behind one small interface: WebSocket (both ways),
 * Server-Sent Events and long-poll (server to client; the client publishes over HTTP).
 */
import { ServerFrame } from './frames.js';
/** Which transport. */
export type TransportKind = 'websocket' | 'sse' | 'poll';
/** What a transport reports to the client. */
export interface TransportEvents {
    /** Frames, in order. */
    frames(frames: ServerFrame[]): void;
    /** A line that was not a frame. */
    garbage(description: string): void;
    /** The transport ended; `code` is the WebSocket close code when there was one. */
    closed(code: number | undefined, reason: string): void;
}
/** A live transport. */
export interface Transport {
    readonly kind: TransportKind;
    /** Sends a client frame (WebSocket only; the others return false). */
    send(frame: Record<string, unknown>): boolean;
    /** Ends it; no `closed` event follows. */
    close(): void;
}
/** What opening a stream needs. */
export interface StreamRequest {
    /** `http(s)://host[:port]`, no trailing slash. */
    baseUrl: string;
    token: string;
    /** For SSE and long-poll: every channel, and the cursors to resume them from. */
    channels: string[];
    cursors: string[];
}
type WebSocketCtor = new (url: string, protocols?: string | string[]) => WebSocket;
type EventSourceCtor = new (url: string) => EventSource;
/** What the environment offers (browsers and React Native differ; tests substitute fakes). */
export interface Environment {
    WebSocket?: WebSocketCtor;
    EventSource?: EventSourceCtor;
    fetch?: typeof fetch;
}
/** The environment's own constructors. */
export declare function defaultEnvironment(): Environment;
/** A WebSocket, authenticated by its first frame (browsers cannot set headers on it). */
export declare function openWebSocket(env: Environment, req: StreamRequest, ev: TransportEvents): Transport;
/** Server-Sent Events: every channel in one ordered stream. The client, not the browser, reconnects. */
export declare function openSse(env: Environment, req: StreamRequest, ev: TransportEvents): Transport;
/** Long-poll: one request at a time, each resuming where the last ended. */
export declare function openPoll(env: Environment, req: StreamRequest, ev: TransportEvents, timeoutMs?: number): Transport;
export {};
