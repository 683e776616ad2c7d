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

/** The longest server hint (`reconnect.after_ms`) honoured, ms. */
const MAX_HINT_MS = 300_000;

/**
 * Attempt n (from 0) waits a uniformly random time in [0, min(cap, base · 2^n)): "full jitter",
 * so a crowd of clients cut at the same moment spreads its reconnects instead of arriving together.
 */
export class Backoff {
  private attempt = 0;
  private readonly baseMs: number;
  private readonly capMs: number;
  private readonly random: () => number;

  constructor(opts: BackoffOptions = {}) {
    this.baseMs = opts.baseMs ?? 500;
    this.capMs = opts.capMs ?? 30_000;
    this.random = opts.random ?? Math.random;
  }

  /** The delay before the next attempt; counts the attempt. */
  next(): number {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt += 1;
    return Math.floor(this.random() * ceiling);
  }

  /**
   * The server said when to come back (`reconnect.after_ms`, already spread over its clients):
   * that wins (up to 5 minutes), and counts as an attempt.
   */
  hinted(afterMs: number): number {
    this.attempt += 1;
    return Number.isFinite(afterMs) ? Math.max(0, Math.min(afterMs, MAX_HINT_MS)) : 0;
  }

  /** A connection stayed up: the next attempt starts from the base again. */
  reset(): void {
    this.attempt = 0;
  }

  /** Attempts since the last reset. */
  get attempts(): number {
    return this.attempt;
  }
}
