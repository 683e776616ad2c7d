import type { Environment, Transport, TransportEvents, TransportRequest } from './transport.js';
/** The frame encodings a WebSocket can speak (SSE and long-poll are always JSON). */
export type Encoding = 'json' | 'proto';
/**
 * Opens a WebSocket. Browsers cannot set headers on one, so the token goes in an `auth` frame
 * first; `tokenInQuery` puts it in `?token=` instead, for where neither works (it then shows in
 * proxy logs). With `encoding: 'proto'` it asks for `herald.v1.proto`; a server that picks no
 * subprotocol gets JSON on this connection.
 */
export declare function openWebSocket(env: Environment, req: TransportRequest, ev: TransportEvents, tokenInQuery?: boolean, encoding?: Encoding): Transport;
