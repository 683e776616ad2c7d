/** The client's options: what each means, its default, and the checks made when a client is built. */
import type { BackoffOptions } from './backoff.js';
import type { TokenProvider } from './token.js';
import { type Environment, type TransportKind } from './transport.js';
import type { Encoding } from './websocket.js';
/** Client options. */
export interface ClientOptions {
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
    /** Message ids remembered per channel for dedupe (default 1000). */
    dedupeWindow?: number;
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
    /**
     * The WebSocket's frames: `json` (the default) or `proto`, the compact binary encoding
     * (`herald.v1.proto`: about a third of JSON's overhead per record). A server that does not
     * offer it gets JSON. SSE and long-poll are always JSON.
     */
    encoding?: Encoding;
    /** Send the WebSocket's token in `?token=` instead of the `auth` frame (only where a proxy needs it; it shows in logs). */
    tokenInQuery?: boolean;
    /** Constructors to use instead of the environment's (tests, polyfills). */
    environment?: Environment;
}
/** The options the connection reads (all but the channel table's). */
export type ConnectionOptions = Omit<ClientOptions, 'dedupeWindow'>;
/** The connection's options, checked and with their defaults. */
export interface ConnectionSettings {
    /** `http(s)://host[:port]`, without a trailing slash. */
    baseUrl: string;
    env: Environment;
    /** The preferred transports the environment has, in order (never empty). */
    kinds: TransportKind[];
    stableAfterMs: number;
    fallbackAfter: number;
    upgradeEveryMs: number;
    connectTimeoutMs: number;
    requestTimeoutMs: number;
    pollTimeoutMs: number;
    tokenInQuery: boolean;
    encoding: Encoding;
}
/** Checks `opts` and fills in the defaults; a `TypeError` for a url that is not http(s) or ws(s), an unknown encoding, or when no transport is available. */
export declare function connectionSettings(opts: ConnectionOptions): ConnectionSettings;
