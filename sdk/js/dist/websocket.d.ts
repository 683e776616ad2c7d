import type { Environment, Transport, TransportEvents, TransportRequest } from './transport.js';
/**
 * Opens a WebSocket. Browsers cannot set headers on one, so the token goes in an `auth` frame
 * first; `tokenInQuery` puts it in `?token=` instead, for where neither works (it then shows in
 * proxy logs).
 */
export declare function openWebSocket(env: Environment, req: TransportRequest, ev: TransportEvents, tokenInQuery?: boolean): Transport;
