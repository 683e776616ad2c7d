/** Message-id dedupe and per-channel cursor bookkeeping. */
/**
 * The last `window` message ids seen on one channel. Delivery is at-least-once on the wire (a
 * resume may resend what arrived just before a cut), so ids seen again are dropped here.
 */
export class Dedupe {
    constructor(window = 1000) {
        this.window = window;
        this.seen = new Set();
        this.order = [];
        this.head = 0;
    }
    /** True the first time `id` is seen (and remembers it); false for a repeat. */
    first(id) {
        if (this.seen.has(id))
            return false;
        this.seen.add(id);
        this.order.push(id);
        if (this.order.length - this.head > this.window) {
            this.seen.delete(this.order[this.head]);
            this.head += 1;
            if (this.head > 4096) {
                this.order.splice(0, this.head);
                this.head = 0;
            }
        }
        return true;
    }
    /** Ids remembered. */
    get size() {
        return this.seen.size;
    }
}
/**
 * Where each channel stands: the cursor of the last record processed (or, before the first
 * record, of the `subscribed` reply), which is what a resume sends back as `since`.
 */
export class Cursors {
    constructor() {
        this.byChannel = new Map();
    }
    /** The cursor to resume `channel` from, if any. */
    get(channel) {
        return this.byChannel.get(channel);
    }
    /**
     * A `subscribed` reply. A fresh subscription starts at the reply's cursor. A resume keeps the
     * stored cursor: the records after it are still to come, and a cut before they are processed
     * must resume from it again. `replace` (a resume answered `recovered:false`: that history is
     * gone) takes the reply's cursor, so the next resume does not ask for it again.
     */
    subscribed(channel, cursor, replace = false) {
        if (cursor !== undefined && (replace || !this.byChannel.has(channel)))
            this.byChannel.set(channel, cursor);
    }
    /** A record was handed to the application. */
    processed(channel, cursor) {
        if (cursor !== undefined)
            this.byChannel.set(channel, cursor);
    }
    /** Forgets a channel (unsubscribed). */
    forget(channel) {
        this.byChannel.delete(channel);
    }
    /** The cursors of `channels` that are known, for a stream that carries them all (SSE, long-poll). */
    list(channels) {
        const out = [];
        for (const c of channels) {
            const v = this.byChannel.get(c);
            if (v !== undefined && !out.includes(v))
                out.push(v);
        }
        return out;
    }
}
