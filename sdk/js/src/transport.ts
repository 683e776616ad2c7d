/**
 * What the three transports of docs/protocol.md have in common: the WebSocket carries frames both
 * ways; Server-Sent Events and long-poll carry them from the server (the client publishes over
 * HTTP), every channel in one request.
 */
import type { ClientFrame, ServerFrame } from './frames.js';

/** Which transport. */
export type TransportKind = 'websocket' | 'sse' | 'poll';

/** What a transport reports to the client. */
export interface TransportEvents {
  /** Frames, in order. */
  frames(frames: ServerFrame[]): void;
  /** A line or event that was not a frame. */
  garbage(description: string): void;
  /** The transport ended by itself; `code` is a WebSocket close code (or its equivalent for an HTTP refusal). */
  closed(code: number | undefined, reason: string): void;
}

/** An open transport. */
export interface Transport {
  readonly kind: TransportKind;
  /** The WebSocket's frame encoding, once it is open (the others are JSON). */
  readonly encoding?: 'json' | 'proto';
  /** Sends a client frame (WebSocket only; the others return false). */
  send(frame: ClientFrame): boolean;
  /** Uses `token` from the next request on (long-poll only; SSE reopens instead). */
  setToken?(token: string): void;
  /** Ends it; no `closed` event follows. */
  close(): void;
}

/** What opening a transport needs. */
export interface TransportRequest {
  /** `http(s)://host[:port]`, without a trailing slash. */
  baseUrl: string;
  token: string;
  /** SSE and long-poll: every channel, and the cursors to resume them from (the server starts at the oldest). */
  channels: string[];
  cursors: string[];
}

/** The part of a WebSocket the SDK uses (browsers' and React Native's both fit). */
export interface WebSocketLike {
  readonly readyState: number;
  /** The subprotocol the server chose (`''` for none). */
  readonly protocol?: string;
  /** Set to `arraybuffer` for the compact encoding's binary messages. */
  binaryType?: string;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
}

/** The part of an `EventSource` the SDK uses. */
export interface EventSourceLike {
  onmessage: ((ev: { data: unknown }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  /** Named events (`event: disconnect`). */
  addEventListener?(type: string, listener: (ev: { data: unknown }) => void): void;
  close(): void;
}

/** The part of a `fetch` response the SDK uses. */
export interface ResponseLike {
  readonly status: number;
  text(): Promise<string>;
}

/** The part of `fetch` the SDK uses. */
export type FetchLike = (
  url: string,
  init?: { method?: string; headers?: Record<string, string>; body?: string; signal?: AbortSignal; cache?: 'no-store' },
) => Promise<ResponseLike>;

/** What the environment offers; browsers and React Native differ, and tests substitute fakes. */
export interface Environment {
  WebSocket?: new (url: string, protocols?: string | string[]) => WebSocketLike;
  EventSource?: new (url: string) => EventSourceLike;
  fetch?: FetchLike;
}

/** The environment's own constructors (React Native has no `EventSource`). */
export function defaultEnvironment(): Environment {
  const g = globalThis as unknown as Environment;
  return {
    WebSocket: g.WebSocket,
    EventSource: g.EventSource,
    fetch: typeof g.fetch === 'function' ? g.fetch.bind(globalThis) : undefined,
  };
}

/** The query of an SSE or long-poll request: channels, token and every cursor. */
export function streamQuery(req: TransportRequest): URLSearchParams {
  const q = new URLSearchParams({ channels: req.channels.join(','), token: req.token });
  if (req.cursors.length > 0) q.set('since', req.cursors.join(','));
  return q;
}

/** The close code a fatal protocol error stands for (docs/protocol.md, "Error codes"). */
export function closeCodeOf(code: string | undefined): number | undefined {
  switch (code) {
    case 'unauthorized':
      return 4001;
    case 'token_expired':
      return 4002;
    case 'lagged':
      return 4008;
    case 'rate_limited':
      return 4029;
    case 'forbidden':
      return 1008;
    case 'shutting_down':
      return 1001;
    case 'frame_too_large':
      return 1009;
    default:
      return undefined;
  }
}
