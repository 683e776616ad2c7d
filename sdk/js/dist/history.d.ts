import { type HttpApi } from './http.js';
import type { HeraldMessage } from './subscription.js';
/** Which records: the newest `limit` (no other option), those before a cursor, after a cursor, or since a time. */
export interface HistoryOptions {
    /** Records per page, 1 to 1000 (default 100). */
    limit?: number;
    /** The records after this cursor (a message's `cursor`, a page's `cursor`): pages go forward. */
    since?: string;
    /** The records just before this position (a page's `before`): pages go backward. */
    before?: string;
    /** The records published at or after this time (ms since the Unix epoch): pages go forward. */
    sinceMs?: number;
}
/** One page of a channel's history. */
export interface HistoryPage<T = unknown> {
    channel: string;
    /** Oldest first, as a subscription handler receives them. */
    messages: HeraldMessage<T>[];
    /**
     * After this page: the next forward page's `since` and, at the channel's end, where a
     * subscription with `since` set to it misses nothing and repeats nothing.
     */
    cursor: string;
    /** The previous page's `before` (undefined at the start of the channel). */
    before: string | undefined;
    /** Records follow (forward) or precede (backward) this page. */
    more: boolean;
    /** False when part of the range is past retention, or the server's scan limit was reached. */
    complete: boolean;
    /** The options of the next page in the same direction; undefined after the last. */
    next: HistoryOptions | undefined;
}
/** One page of `channel`'s history. */
export declare function fetchHistory<T = unknown>(http: HttpApi, channel: string, opts?: HistoryOptions): Promise<HistoryPage<T>>;
/** Every page of `channel`'s history from `opts` on, in the direction the options give. */
export declare function historyPages<T = unknown>(http: HttpApi, channel: string, opts?: HistoryOptions): AsyncGenerator<HistoryPage<T>, void, undefined>;
