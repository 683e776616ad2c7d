import type { TokenSource } from './token.js';
import type { FetchLike } from './transport.js';
/** What `publish` resolves to. */
export interface Published {
    cursor: string;
    messageId: string;
    /** The idempotency key had been used already: this is the first record's cursor and id. */
    duplicate: boolean;
}
/** Where and how to publish over HTTP. */
export interface HttpPublisher {
    fetch: FetchLike | undefined;
    /** `http(s)://host[:port]`, without a trailing slash. */
    baseUrl: string;
    tokens: TokenSource;
    timeoutMs: number;
}
/**
 * Publishes `body` (the JSON of `channel`, `data` and an optional `idempotency_key`) over HTTP;
 * a token refused with 401 is renewed once (when the provider is a function).
 */
export declare function publishOverHttp(http: HttpPublisher, body: string, channel: string, retryRefused?: boolean): Promise<Published>;
