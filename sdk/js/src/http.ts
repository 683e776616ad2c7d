/**
 * Herald's HTTP API with the client token, for what does not need the WebSocket or must work
 * without it: publishing on SSE and long-poll, history, device registration.
 */
import { HeraldError } from './requests.js';
import type { TokenSource } from './token.js';
import type { FetchLike } from './transport.js';

/** Where and how to call the HTTP API. */
export interface HttpApi {
  fetch: FetchLike | undefined;
  /** `http(s)://host[:port]`, without a trailing slash. */
  baseUrl: string;
  tokens: TokenSource;
  timeoutMs: number;
}

/** One call: the method, the path with its query, the JSON body, and what it is (for error messages). */
export interface HttpCall {
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  body?: string;
  what: string;
  /** The channel it concerns, carried by its errors. */
  channel?: string;
}

/**
 * Makes `call` and resolves to its JSON answer when the status is 2xx. Otherwise a `HeraldError`
 * with the answer's code (`{"error":{"code","message"}}`), `timeout` or `disconnected` (the
 * request failed; it may or may not have reached the server). A token refused with 401 is
 * renewed once (when the provider is a function).
 */
export async function callHttp(http: HttpApi, call: HttpCall, retryRefused = true): Promise<Record<string, unknown>> {
  const { what, channel } = call;
  const f = http.fetch;
  if (!f) throw new HeraldError('not_supported', `no fetch in this environment for ${what} over HTTP`, channel);
  const token = await http.tokens.get();
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), http.timeoutMs);
  const headers: Record<string, string> = { authorization: 'Bearer ' + token };
  if (call.body !== undefined) headers['content-type'] = 'application/json';
  let status: number;
  let text: string;
  try {
    const r = await f(http.baseUrl + call.path, { method: call.method, headers, body: call.body, signal: abort.signal, cache: 'no-store' });
    status = r.status;
    text = await r.text();
  } catch (e) {
    if (abort.signal.aborted) throw new HeraldError('timeout', `no answer to ${what} within ${http.timeoutMs} ms`, channel);
    throw new HeraldError('disconnected', `${what} over HTTP failed: ${e instanceof Error ? e.message : String(e)}`, channel);
  } finally {
    clearTimeout(timer);
  }
  let answer: Record<string, unknown> & { error?: { code?: string; message?: string } };
  try {
    answer = JSON.parse(text) as typeof answer;
  } catch {
    throw new HeraldError('unavailable', `${what} answered HTTP ${status} without JSON`, channel);
  }
  if (status === 401 && retryRefused && http.tokens.renewable) {
    http.tokens.invalidate();
    return callHttp(http, call, false);
  }
  if (status < 200 || status > 299 || typeof answer !== 'object' || answer === null) throw new HeraldError(answer?.error?.code ?? 'internal', answer?.error?.message ?? `HTTP ${status}`, channel);
  return answer;
}
