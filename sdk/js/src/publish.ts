/** Publishing without the WebSocket: `POST /v1/publish` with the client token. */
import { HeraldError } from './requests.js';
import type { TokenSource } from './token.js';
import type { FetchLike } from './transport.js';

/** What `publish` resolves to. */
export interface Published {
  cursor: string;
  messageId: string;
  /** The idempotency key had been used already: this is the first record's cursor and id. */
  duplicate: boolean;
}

/** Where and how to publish over HTTP. */
export interface HttpPublisher {
  fetch: FetchLike | undefined;
  /** `http(s)://host[:port]`, without a trailing slash. */
  baseUrl: string;
  tokens: TokenSource;
  timeoutMs: number;
}

/**
 * Publishes `body` (the JSON of `channel`, `data` and an optional `idempotency_key`) over HTTP;
 * a token refused with 401 is renewed once (when the provider is a function).
 */
export async function publishOverHttp(http: HttpPublisher, body: string, channel: string, retryRefused = true): Promise<Published> {
  const f = http.fetch;
  if (!f) throw new HeraldError('not_supported', 'not connected over a WebSocket, and no fetch to publish over HTTP', channel);
  const token = await http.tokens.get();
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), http.timeoutMs);
  let status: number;
  let text: string;
  try {
    const r = await f(http.baseUrl + '/v1/publish', { method: 'POST', headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' }, body, signal: abort.signal });
    status = r.status;
    text = await r.text();
  } catch (e) {
    if (abort.signal.aborted) throw new HeraldError('timeout', `no answer to publish on ${channel} within ${http.timeoutMs} ms`, channel);
    throw new HeraldError('disconnected', `publish on ${channel} over HTTP failed: ${e instanceof Error ? e.message : String(e)}`, channel);
  } finally {
    clearTimeout(timer);
  }
  let answer: { cursor?: unknown; message_id?: unknown; duplicate?: unknown; error?: { code?: string; message?: string } };
  try {
    answer = JSON.parse(text) as typeof answer;
  } catch {
    throw new HeraldError('unavailable', `publish on ${channel} answered HTTP ${status} without JSON`, channel);
  }
  if (status === 401 && retryRefused && http.tokens.renewable) {
    http.tokens.invalidate();
    return publishOverHttp(http, body, channel, false);
  }
  if (status !== 200) throw new HeraldError(answer.error?.code ?? 'internal', answer.error?.message ?? `HTTP ${status}`, channel);
  return { cursor: String(answer.cursor), messageId: String(answer.message_id), duplicate: answer.duplicate === true };
}
