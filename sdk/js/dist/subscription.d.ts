/** What a subscriber sees: the records a handler receives, the options, the handle, presence events. */
import type { PresenceMember } from './frames.js';
/** A record, as a subscription handler receives it. */
export interface HeraldMessage<T = unknown> {
    channel: string;
    /** The stable message id (the dedupe key). */
    id: string;
    /** The position just after this record; the client resumes the channel from it. */
    cursor: string;
    /** Publish time, ms since the Unix epoch. */
    ts: number;
    data: T;
}
/** A join or leave on a channel subscribed with `presence: true`. */
export interface PresenceEvent {
    type: 'join' | 'leave';
    channel: string;
    member: PresenceMember;
}
/** Subscription options. */
export interface SubscribeOptions {
    /** Resume after this cursor (one stored across app restarts, say) instead of starting now. */
    since?: string;
    /** Also receive join/leave events, in `onPresence`. */
    presence?: boolean;
    /** Deliver at most this many times a second (0.01 to 1000; records in between arrive together). */
    maxRate?: number;
    /** Join and leave events, with `presence: true`. */
    onPresence?: (event: PresenceEvent) => void;
    /** The subscription ended without `unsubscribe()`: the server refused or ended it (the error code). */
    onEnd?: (code: string) => void;
}
/** A subscription handle. */
export interface Subscription {
    readonly channel: string;
    /** The cursor the channel resumes from (store it to resume across app restarts with `since`). */
    readonly cursor: string | undefined;
    /** Stops delivery while the screen is hidden (the server keeps presence); `resume` continues exactly. */
    pause(): void;
    /** Continues after `pause`: what was published meanwhile arrives first, in order, then live records. */
    resume(): void;
    /** Ends the subscription. */
    unsubscribe(): void;
}
