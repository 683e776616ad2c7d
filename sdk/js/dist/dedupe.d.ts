/** Message-id dedupe. */
/**
 * The last `window` message ids delivered on one channel. Delivery is at-least-once on the wire
 * (a resume may resend what arrived just before a cut), so an id seen again is dropped.
 */
export declare class Dedupe {
    readonly window: number;
    /** Insertion-ordered, so the first entry is the oldest. */
    private readonly seen;
    constructor(window?: number);
    /** True the first time `id` is offered (and remembers it); false for a repeat. */
    first(id: string): boolean;
    /** Ids remembered. */
    get size(): number;
}
