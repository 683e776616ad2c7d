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

  /** The delay before the next attempt, and counts it. */
  next(): number {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt += 1;
    return Math.floor(this.random() * ceiling);
  }

  /**
   * The server said when to come back (`reconnect.after_ms`, already spread by the server): that
   * wins (up to 5 minutes), and counts as an attempt.
   */
  hinted(afterMs: number): number {
    this.attempt += 1;
    return Math.max(0, Math.min(Number.isFinite(afterMs) ? afterMs : 0, 300_000));
  }

  /** A connection stayed up: start again from the base. */
  reset(): void {
    this.attempt = 0;
  }

  /** Attempts since the last reset. */
  get attempts(): number {
    return this.attempt;
  }
}
