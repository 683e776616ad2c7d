import type { TokenSource } from './token.js';
import type { FetchLike } from './transport.js';
/** Where and how to call the HTTP API. */
export interface HttpApi {
    fetch: FetchLike | undefined;
    /** `http(s)://host[:port]`, without a trailing slash. */
    baseUrl: string;
    tokens: TokenSource;
    timeoutMs: number;
}
/** One call: the method, the path with its query, the JSON body, and what it is (for error messages). */
export interface HttpCall {
    method: 'GET' | 'POST' | 'DELETE';
    path: string;
    body?: string;
    what: string;
    /** The channel it concerns, carried by its errors. */
    channel?: string;
}
/**
 * Makes `call` and resolves to its JSON answer when the status is 2xx. Otherwise a `HeraldError`
 * with the answer's code (`{"error":{"code","message"}}`), `timeout` or `disconnected` (the
 * request failed; it may or may not have reached the server). A token refused with 401 is
 * renewed once (when the provider is a function).
 */
export declare function callHttp(http: HttpApi, call: HttpCall, retryRefused?: boolean): Promise<Record<string, unknown>>;
