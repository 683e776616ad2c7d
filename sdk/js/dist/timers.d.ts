/** Named timers: one of each name at a time. */
/** Timers by name: setting one replaces the pending timer of that name; `clear` cancels them all. */
export declare class Timers<Name extends string> {
    private readonly byName;
    /** Calls `f` in `ms` (instead of what was pending under `name`). */
    set(name: Name, ms: number, f: () => void): void;
    /** Whether a timer of `name` is pending. */
    has(name: Name): boolean;
    /** Cancels every pending timer. */
    clear(): void;
}
