/** Message-id dedupe. */

/**
 * The last `window` message ids delivered on one channel. Delivery is at-least-once on the wire
 * (a resume may resend what arrived just before a cut), so an id seen again is dropped.
 */
export class Dedupe {
  /** Insertion-ordered, so the first entry is the oldest. */
  private readonly seen = new Set<string>();

  constructor(readonly window = 1000) {}

  /** True the first time `id` is offered (and remembers it); false for a repeat. */
  first(id: string): boolean {
    if (this.seen.has(id)) return false;
    this.seen.add(id);
    if (this.seen.size > this.window) {
      const oldest = this.seen.values().next();
      if (!oldest.done) this.seen.delete(oldest.value);
    }
    return true;
  }

  /** Ids remembered. */
  get size(): number {
    return this.seen.size;
  }
}
