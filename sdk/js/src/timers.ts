/** Named timers: one of each name at a time. */

/** Timers by name: setting one replaces the pending timer of that name; `clear` cancels them all. */
export class Timers<Name extends string> {
  private readonly byName = new Map<Name, ReturnType<typeof setTimeout>>();

  /** Calls `f` in `ms` (instead of what was pending under `name`). */
  set(name: Name, ms: number, f: () => void): void {
    const old = this.byName.get(name);
    if (old) clearTimeout(old);
    this.byName.set(
      name,
      setTimeout(() => {
        this.byName.delete(name);
        f();
      }, ms),
    );
  }

  /** Whether a timer of `name` is pending. */
  has(name: Name): boolean {
    return this.byName.has(name);
  }

  /** Cancels every pending timer. */
  clear(): void {
    for (const t of this.byName.values()) clearTimeout(t);
    this.byName.clear();
  }
}
