/**
 * Which transport the connection opens: the preferred ones the environment has, in order; the
 * next one after `fallbackAfter` consecutive failures to open the current one; and, while on a
 * fallback, the way back: now and then a WebSocket is opened in the background (the probe), and
 * once it is welcomed the connection moves to it.
 */
import type { ServerFrame } from './frames.js';
import type { ConnectionSettings } from './options.js';
import type { TokenSource } from './token.js';
import type { Transport, TransportEvents, TransportKind, TransportRequest } from './transport.js';
/** What the probe needs of the connection. */
export interface ProbeHost {
    readonly tokens: TokenSource;
    /** Whether the connection's link is welcomed (only then is the WebSocket tried again). */
    welcomed(): boolean;
    /** The transport in use. */
    transportKind(): TransportKind;
    /** The events of a transport, routed by the connection to the link or the probe. */
    eventsOf(transport: () => Transport | undefined): TransportEvents;
    /** The probe was welcomed: the connection moves to it, starting with these frames. */
    promote(probe: Transport, token: string, frames: ServerFrame[]): void;
}
/** The transport ladder and the way back up it. */
export declare class Fallback {
    private readonly o;
    private readonly host;
    private readonly timers;
    private index;
    /** Consecutive failures to open the current transport. */
    private failures;
    /** A WebSocket tried in the background while on a fallback, and the token it was opened with. */
    private probe;
    private probeToken;
    /** Bumped by `cancel`: a probe started before it does not go on. */
    private generation;
    constructor(o: ConnectionSettings, host: ProbeHost);
    /** The transport to open next. */
    get kind(): TransportKind;
    /** Opens a transport of the current kind. */
    open(req: TransportRequest, events: TransportEvents): Transport;
    /** Opening the current transport failed (it threw, ended before its `welcome`, or none came in time). */
    failed(): void;
    /** A `welcome` came on the current transport. */
    welcomed(): void;
    /** Before the next attempt: after repeated failures, the next transport (returned); else undefined. */
    advance(): TransportKind | undefined;
    /** On a fallback, tries the WebSocket again in `upgradeEveryMs`, in the background. */
    scheduleProbe(): void;
    /** Whether `t` is the probe. */
    isProbe(t: Transport): boolean;
    /** The probe's first frames: a `welcome` moves the connection to it; anything else (an error) ends it. */
    onProbeFrames(p: Transport, frames: ServerFrame[]): void;
    /** Closes the probe `p` (it failed, or took too long) and tries again later. */
    dropProbe(p: Transport): void;
    /** The connection's link ended: no probe, none scheduled. */
    cancel(): void;
    /** The connection moved to the WebSocket: the ladder starts again from the top. */
    backToFirst(): void;
    private startProbe;
}
