/** Reconnect delays: exponential backoff with full jitter. */
/**
 * Attempt n waits a uniformly random time in [0, min(cap, base * 2^n)): "full jitter", so a
 * crowd of clients cut at the same moment spreads its reconnects instead of arriving together.
 */
export class Backoff {
    constructor(opts = {}) {
        this.attempt = 0;
        this.baseMs = opts.baseMs ?? 500;
        this.capMs = opts.capMs ?? 30000;
        this.random = opts.random ?? Math.random;
    }
    /** The delay before the next attempt, and counts it. */
    next() {
        const ceiling = Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.attempt, 30));
        this.attempt += 1;
        return Math.floor(this.random() * ceiling);
    }
    /**
     * The server said when to come back (`reconnect.after_ms`, already spread by the server): that
     * wins (up to 5 minutes), and counts as an attempt.
     */
    hinted(afterMs) {
        this.attempt += 1;
        return Math.max(0, Math.min(Number.isFinite(afterMs) ? afterMs : 0, 300000));
    }
    /** A connection stayed up: start again from the base. */
    reset() {
        this.attempt = 0;
    }
    /** Attempts since the last reset. */
    get attempts() {
        return this.attempt;
    }
}
