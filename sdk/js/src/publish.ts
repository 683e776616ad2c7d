/** Publishing without the WebSocket: `POST /v1/publish` with the client token. */
import { callHttp, type HttpApi } from './http.js';

/** What `publish` resolves to. */
export interface Published {
  cursor: string;
  messageId: string;
  /** The idempotency key had been used already: this is the first record's cursor and id. */
  duplicate: boolean;
}

/** Publishes `body` (the JSON of `channel`, `data` and an optional `idempotency_key`) over HTTP. */
export async function publishOverHttp(http: HttpApi, body: string, channel: string): Promise<Published> {
  const answer = await callHttp(http, { method: 'POST', path: '/v1/publish', body, what: `publish on ${channel}`, channel });
  return { cursor: String(answer.cursor), messageId: String(answer.message_id), duplicate: answer.duplicate === true };
}
