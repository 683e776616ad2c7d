/** Where the client's token comes from: a fixed string, or a function that fetches one. */
/** A token, or a function that fetches a fresh one (your backend minting it for the signed-in user). */
export type TokenProvider = string | (() => Promise<string>);
/** The current token; a function provider is asked again when the token is invalidated or refreshed. */
export declare class TokenSource {
    private readonly provider;
    private current;
    private inflight;
    constructor(provider: TokenProvider);
    /** Whether a new token can be had (the provider is a function). */
    get renewable(): boolean;
    /** The current token, fetched first if there is none. */
    get(): Promise<string>;
    /** A fresh token from the provider (a fixed string stays what it is). Concurrent calls share one fetch. */
    refresh(): Promise<string>;
    /** The server refused the current token: the next `get` fetches a new one. */
    invalidate(): void;
    private fetch;
}
/**
 * The `exp` claim (seconds since the Unix epoch) of a JWT, or undefined when `token` is not one.
 * Only long-poll needs it: the WebSocket is warned by the server (`token_expiring`) and SSE's
 * `welcome` says `expires_at`; a poll answer says neither.
 */
export declare function jwtExpiry(token: string): number | undefined;
