import { type Environment, type Transport, type TransportEvents, type TransportRequest } from './transport.js';
/**
 * Opens an event stream carrying every channel of the request in one ordered stream. The client,
 * not `EventSource`, reconnects: with every channel's own cursor, a fresh token and its backoff.
 */
export declare function openSse(env: Environment, req: TransportRequest, ev: TransportEvents): Transport;
