/** Requests over the WebSocket: client-chosen ids, replies matched by id, a timeout on each. */
import type { ServerFrame } from './frames.js';

/**
 * An error with a protocol error code (docs/protocol.md, "Error codes"), or one of the SDK's own:
 * `timeout` (no reply in time), `disconnected` (the connection ended before the reply),
 * `not_supported` (not possible on the current transport).
 */
export class HeraldError extends Error {
  constructor(
    /** The error code. */
    readonly code: string,
    message: string,
    /** The channel it concerns, when it concerns one. */
    readonly channel?: string,
  ) {
    super(`${code}: ${message}`);
    this.name = 'HeraldError';
  }
}

interface Pending {
  what: string;
  resolve(frame: ServerFrame): void;
  reject(err: HeraldError): void;
  timer: ReturnType<typeof setTimeout>;
}

/** The requests waiting for their reply on one connection. */
export class Requests {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  constructor(private readonly timeoutMs: number) {}

  /** A fresh request id. */
  id(): number {
    return this.nextId++;
  }

  /** Waits for the reply to request `id` (`what` names it in a timeout's message). */
  wait(id: number, what: string): Promise<ServerFrame> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new HeraldError('timeout', `no reply to ${what} within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.set(id, { what, resolve, reject, timer });
    });
  }

  /** Settles the request a reply (or `error` frame) answers; false when it answers none. */
  settle(frame: ServerFrame): boolean {
    if (typeof frame.id !== 'number') return false;
    const p = this.pending.get(frame.id);
    if (!p) return false;
    this.pending.delete(frame.id);
    clearTimeout(p.timer);
    if (frame.type === 'error') p.reject(new HeraldError(frame.code ?? 'internal', frame.message ?? `${p.what} failed`, frame.channel));
    else p.resolve(frame);
    return true;
  }

  /** The connection ended: every waiting request fails. */
  abandon(): void {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new HeraldError('disconnected', `the connection ended before the reply to ${p.what}`));
    }
    this.pending.clear();
  }
}
