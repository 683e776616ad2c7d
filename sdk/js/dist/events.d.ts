/** A small typed event emitter. */
/** A listener of one event. */
export type Listener<T> = (value: T) => void;
/**
 * Listeners by event name. A listener that throws does not stop the others or the client: its
 * exception is rethrown on a fresh task, where the environment reports it.
 */
export declare class Emitter<Events extends object> {
    private readonly listeners;
    /** Adds a listener; returns a function that removes it. */
    on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void;
    /** Calls every listener of `event` with `value`. */
    emit<K extends keyof Events>(event: K, value: Events[K]): void;
}
/** Where one part of the client reports its events: the client's `Emitter`, seen through the events that part sends. */
export interface EventSink<Events extends object> {
    emit<K extends keyof Events>(event: K, value: Events[K]): void;
}
/** Calls `f(value)`; an exception is rethrown on a fresh task, so the caller carries on. */
export declare function guarded<T>(f: (value: T) => void, value: T): void;
