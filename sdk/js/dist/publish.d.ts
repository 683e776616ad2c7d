/** Publishing without the WebSocket: `POST /v1/publish` with the client token. */
import { type HttpApi } from './http.js';
/** What `publish` resolves to. */
export interface Published {
    cursor: string;
    messageId: string;
    /** The idempotency key had been used already: this is the first record's cursor and id. */
    duplicate: boolean;
}
/** Publishes `body` (the JSON of `channel`, `data` and an optional `idempotency_key`) over HTTP. */
export declare function publishOverHttp(http: HttpApi, body: string, channel: string): Promise<Published>;
