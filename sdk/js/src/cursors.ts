/** Per-channel cursor bookkeeping: where each channel resumes from. */

/**
 * Each channel's cursor: that of the last record handed to the application or, before the first
 * record, that of the `subscribed` reply. A reconnect resubscribes each channel with this as
 * `since`.
 */
export class CursorStore {
  private readonly byChannel = new Map<string, string>();

  /** The cursor to resume `channel` from, if any. */
  get(channel: string): string | undefined {
    return this.byChannel.get(channel);
  }

  /**
   * A `subscribed` reply. A fresh subscription starts at the reply's cursor. A resume keeps the
   * stored cursor: the records after it are still on their way, and a cut before they are
   * processed must resume from it again. `historyLost` (a resume answered `recovered:false`: that
   * history is gone) takes the reply's cursor, so the next resume does not ask for it again.
   */
  subscribed(channel: string, cursor: string | undefined, historyLost = false): void {
    if (cursor !== undefined && (historyLost || !this.byChannel.has(channel))) this.byChannel.set(channel, cursor);
  }

  /** A record of `channel` was processed (or, on SSE and long-poll, the shared stream moved past `cursor`). */
  processed(channel: string, cursor: string): void {
    this.byChannel.set(channel, cursor);
  }

  /** Forgets a channel (unsubscribed). */
  forget(channel: string): void {
    this.byChannel.delete(channel);
  }

  /**
   * The distinct cursors of `channels`, for a stream that carries them all (SSE, long-poll): the
   * server starts at the oldest, so no channel misses a record.
   */
  list(channels: string[]): string[] {
    const out: string[] = [];
    for (const c of channels) {
      const v = this.byChannel.get(c);
      if (v !== undefined && !out.includes(v)) out.push(v);
    }
    return out;
  }
}
