/** Reconnect delays: exponential backoff with full jitter. */
/** Backoff settings. */
export interface BackoffOptions {
    /** The first ceiling, ms (default 500). */
    baseMs?: number;
    /** The largest ceiling, ms (default 30000). */
    capMs?: number;
    /** Uniform numbers in [0, 1) (default `Math.random`; tests pass their own). */
    random?: () => number;
}
/**
 * Attempt n (from 0) waits a uniformly random time in [0, min(cap, base · 2^n)): "full jitter",
 * so a crowd of clients cut at the same moment spreads its reconnects instead of arriving together.
 */
export declare class Backoff {
    private attempt;
    private readonly baseMs;
    private readonly capMs;
    private readonly random;
    constructor(opts?: BackoffOptions);
    /** The delay before the next attempt; counts the attempt. */
    next(): number;
    /**
     * The server said when to come back (`reconnect.after_ms`, already spread over its clients):
     * that wins (up to 5 minutes), and counts as an attempt.
     */
    hinted(afterMs: number): number;
    /** A connection stayed up: the next attempt starts from the base again. */
    reset(): void;
    /** Attempts since the last reset. */
    get attempts(): number;
}
