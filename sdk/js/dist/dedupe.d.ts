/** Message-id dedupe and per-channel cursor bookkeeping. */
/**
 * The last `window` message ids seen on one channel. Delivery is at-least-once on the wire (a
 * resume may resend what arrived just before a cut), so ids seen again are dropped here.
 */
export declare class Dedupe {
    readonly window: number;
    private readonly seen;
    private readonly order;
    private head;
    constructor(window?: number);
    /** True the first time `id` is seen (and remembers it); false for a repeat. */
    first(id: string): boolean;
    /** Ids remembered. */
    get size(): number;
}
/**
 * Where each channel stands: the cursor of the last record processed (or, before the first
 * record, of the `subscribed` reply), which is what a resume sends back as `since`.
 */
export declare class Cursors {
    private readonly byChannel;
    /** The cursor to resume `channel` from, if any. */
    get(channel: string): string | undefined;
    /**
     * A `subscribed` reply. A fresh subscription starts at the reply's cursor. A resume keeps the
     * stored cursor: the records after it are still to come, and a cut before they are processed
     * must resume from it again. `replace` (a resume answered `recovered:false`: that history is
     * gone) takes the reply's cursor, so the next resume does not ask for it again.
     */
    subscribed(channel: string, cursor: string | undefined, replace?: boolean): void;
    /** A record was handed to the application. */
    processed(channel: string, cursor: string | undefined): void;
    /** Forgets a channel (unsubscribed). */
    forget(channel: string): void;
    /** The cursors of `channels` that are known, for a stream that carries them all (SSE, long-poll). */
    list(channels: string[]): string[];
}
