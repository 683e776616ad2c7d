import { type Environment, type Transport, type TransportEvents, type TransportRequest } from './transport.js';
/**
 * Polls in a loop, each request continuing from the cursor the last one returned. The first
 * request returns at once (`timeout_ms=0`) and stands for the `welcome` and `subscribed` frames a
 * stream would send; every answer ends with a `position` frame (the cursor reached, which covers
 * every channel of the request). An HTTP refusal ends the transport with the close code its error
 * code stands for (401 → 4001 or 4002, 429 → 4029, any other 4xx → 1008: the server will never
 * take this request).
 */
export declare function openPoll(env: Environment, req: TransportRequest, ev: TransportEvents, timeoutMs: number): Transport;
