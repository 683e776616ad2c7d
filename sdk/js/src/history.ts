/** A channel's history over `GET /v1/history` with the client token (docs/protocol.md, "History"), a page at a time. */
import { validChannel, type ServerFrame } from './frames.js';
import { callHttp, type HttpApi } from './http.js';
import { HeraldError } from './requests.js';
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

/** Checks the options (a `bad_request` HeraldError, nothing sent) and builds the query. */
function query(channel: string, opts: HistoryOptions): URLSearchParams {
  if (!validChannel(channel)) throw new HeraldError('invalid_channel', `"${channel}" is not a channel name`, channel);
  const { limit, since, before, sinceMs } = opts;
  if (limit !== undefined && !(Number.isInteger(limit) && limit >= 1 && limit <= 1000)) throw new HeraldError('bad_request', `limit must be an integer from 1 to 1000, not ${limit}`, channel);
  if ([since, before, sinceMs].filter((x) => x !== undefined).length > 1) throw new HeraldError('bad_request', 'give at most one of since, before and sinceMs', channel);
  if (sinceMs !== undefined && !(Number.isInteger(sinceMs) && sinceMs >= 0)) throw new HeraldError('bad_request', `sinceMs must be a time in ms, not ${sinceMs}`, channel);
  const q = new URLSearchParams({ channel });
  if (limit !== undefined) q.set('limit', String(limit));
  if (since !== undefined) q.set('since', since);
  if (before !== undefined) q.set('before', before);
  if (sinceMs !== undefined) q.set('since_ms', String(sinceMs));
  return q;
}

/** One page of `channel`'s history. */
export async function fetchHistory<T = unknown>(http: HttpApi, channel: string, opts: HistoryOptions = {}): Promise<HistoryPage<T>> {
  const q = query(channel, opts);
  const a = await callHttp(http, { method: 'GET', path: `/v1/history?${q.toString()}`, what: `history of ${channel}`, channel });
  const frames = Array.isArray(a.messages) ? (a.messages as ServerFrame[]) : [];
  const messages = frames.map((f) => ({ channel, id: String(f.id), cursor: String(f.cursor), ts: Number(f.ts ?? 0), data: f.data as T }));
  const cursor = String(a.cursor);
  const before = typeof a.before === 'string' ? a.before : undefined;
  const more = a.more === true;
  const forward = opts.since !== undefined || opts.sinceMs !== undefined;
  const limit = opts.limit !== undefined ? { limit: opts.limit } : {};
  const next = !more ? undefined : forward ? { ...limit, since: cursor } : before !== undefined ? { ...limit, before } : undefined;
  return { channel, messages, cursor, before, more, complete: a.complete !== false, next };
}

/** Every page of `channel`'s history from `opts` on, in the direction the options give. */
export async function* historyPages<T = unknown>(http: HttpApi, channel: string, opts: HistoryOptions = {}): AsyncGenerator<HistoryPage<T>, void, undefined> {
  let next: HistoryOptions | undefined = opts;
  while (next) {
    const page: HistoryPage<T> = await fetchHistory<T>(http, channel, next);
    yield page;
    next = page.next;
  }
}
