/** Reconnect delays: exponential backoff with full jitter. */
export interface BackoffOptions {
    /** The first ceiling, milliseconds (default 500). */
    baseMs?: number;
    /** The largest ceiling, milliseconds (default 30000). */
    capMs?: number;
    /** A source of uniform numbers in [0, 1) (tests pass their own). */
    random?: () => number;
}
/**
 * Attempt n waits a uniformly random time in [0, min(cap, base * 2^n)): "full jitter", so a
 * crowd of clients cut at the same moment spreads its reconnects instead of arriving together.
 */
export declare class Backoff {
    private attempt;
    private readonly baseMs;
    private readonly capMs;
    private readonly random;
    constructor(opts?: BackoffOptions);
    /** The delay before the next attempt, and counts it. */
    next(): number;
    /**
     * The server said when to come back (`reconnect.after_ms`, already spread by the server): that
     * wins (up to 5 minutes), and counts as an attempt.
     */
    hinted(afterMs: number): number;
    /** A connection stayed up: start again from the base. */
    reset(): void;
    /** Attempts since the last reset. */
    get attempts(): number;
}
