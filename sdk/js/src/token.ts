/** Where the client's token comes from: a fixed string, or a function that fetches one. */

/** A token, or a function that fetches a fresh one (your backend minting it for the signed-in user). */
export type TokenProvider = string | (() => Promise<string>);

/** The current token; a function provider is asked again when the token is invalidated or refreshed. */
export class TokenSource {
  private current: string | undefined;
  private inflight: Promise<string> | undefined;

  constructor(private readonly provider: TokenProvider) {
    if (typeof provider === 'string') this.current = provider;
  }

  /** Whether a new token can be had (the provider is a function). */
  get renewable(): boolean {
    return typeof this.provider !== 'string';
  }

  /** The current token, fetched first if there is none. */
  get(): Promise<string> {
    return this.current !== undefined ? Promise.resolve(this.current) : this.fetch();
  }

  /** A fresh token from the provider (a fixed string stays what it is). Concurrent calls share one fetch. */
  refresh(): Promise<string> {
    return typeof this.provider === 'string' ? Promise.resolve(this.provider) : this.fetch();
  }

  /** The server refused the current token: the next `get` fetches a new one. */
  invalidate(): void {
    if (this.renewable) this.current = undefined;
  }

  private fetch(): Promise<string> {
    const provider = this.provider;
    if (typeof provider === 'string') return Promise.resolve(provider);
    this.inflight ??= provider().then(
      (t) => {
        this.inflight = undefined;
        if (typeof t !== 'string' || t === '') throw new Error('the token function returned no token');
        this.current = t;
        return t;
      },
      (e: unknown) => {
        this.inflight = undefined;
        throw e;
      },
    );
    return this.inflight;
  }
}

/**
 * The `exp` claim (seconds since the Unix epoch) of a JWT, or undefined when `token` is not one.
 * Only long-poll needs it: the WebSocket is warned by the server (`token_expiring`) and SSE's
 * `welcome` says `expires_at`; a poll answer says neither.
 */
export function jwtExpiry(token: string): number | undefined {
  const payload = token.split('.')[1];
  if (payload === undefined || typeof atob !== 'function') return undefined;
  try {
    const json = atob(payload.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(payload.length / 4) * 4, '='));
    const exp = (JSON.parse(json) as { exp?: unknown }).exp;
    return typeof exp === 'number' ? exp : undefined;
  } catch {
    return undefined;
  }
}
