import { backoffDelay, sleep, type BackoffOptions } from "./backoff.js";
import { asTerminal, fromDetail, TidegateError, type ErrorDetail } from "./errors.js";
import type { Tokens } from "./tokens.js";

export interface RetryOptions extends BackoffOptions {
  /** Tries in all for a request that may be repeated (default 5; 1 disables retries). */
  attempts?: number;
  /** Longest `Retry-After` the client waits out; a longer one is returned as the error
   * (default 60 000 ms). */
  maxRetryAfterMs?: number;
}

export interface HttpRequest {
  method: "GET" | "POST" | "PATCH" | "DELETE";
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  headers?: Record<string, string>;
  /** May the request be sent again after a network error, without changing its effect?
   * (429 and 503 are retried either way: the server applied nothing.) */
  repeatable: boolean;
  /** Milliseconds the server may hold the request before answering (long polls). */
  waitMs?: number;
  signal?: AbortSignal;
}

export interface HttpResponse<T> {
  status: number;
  body: T;
  headers: Headers;
}

/** HTTP calls with the token, typed errors and retries. */
export class Http {
  constructor(
    private readonly baseUrl: string,
    private readonly tokens: Tokens,
    private readonly fetchImpl: typeof fetch,
    private readonly retry: RetryOptions,
    private readonly timeoutMs: number,
  ) {}

  async request<T>(request: HttpRequest): Promise<HttpResponse<T>> {
    const attempts = Math.max(1, this.retry.attempts ?? 5);
    let refreshedAfter401 = false;
    for (let attempt = 0; ; attempt++) {
      let response: Response;
      try {
        response = await this.send(request, await this.tokens.current());
      } catch (cause) {
        if (cause instanceof TidegateError && cause.code !== "network_error" && cause.code !== "timeout") throw cause;
        const error = cause instanceof TidegateError ? cause : networkError(cause);
        if (!request.repeatable || attempt + 1 >= attempts || request.signal?.aborted) throw error;
        await sleep(backoffDelay(attempt, this.retry), request.signal);
        continue;
      }
      if (response.ok) {
        const text = await response.text();
        return { status: response.status, headers: response.headers, body: (text ? JSON.parse(text) : undefined) as T };
      }
      const error = await errorOf(response);
      if (response.status === 401 && this.tokens.refreshable && !refreshedAfter401) {
        // One more try with a fresh token; a second 401 means the new one is refused too.
        refreshedAfter401 = true;
        await this.tokens.refresh();
        attempt--;
        continue;
      }
      const retryable = response.status === 429 || response.status === 503;
      const wait = error.retryAfterMs ?? backoffDelay(attempt, this.retry);
      if (!retryable || attempt + 1 >= attempts || wait > (this.retry.maxRetryAfterMs ?? 60_000)) {
        throw response.status === 401 || response.status === 403 ? asTerminal(error) : error;
      }
      await sleep(wait, request.signal);
      if (request.signal?.aborted) throw error;
    }
  }

  private async send(request: HttpRequest, token: string | undefined): Promise<Response> {
    const url = new URL(request.path, this.baseUrl);
    for (const [name, value] of Object.entries(request.query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, String(value));
    }
    const headers: Record<string, string> = { Accept: "application/json", ...request.headers };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (request.body !== undefined) headers["Content-Type"] = "application/json";
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), this.timeoutMs + (request.waitMs ?? 0));
    const abort = () => timeout.abort();
    request.signal?.addEventListener("abort", abort);
    try {
      return await this.fetchImpl(url, {
        method: request.method,
        headers,
        body: request.body === undefined ? undefined : JSON.stringify(request.body),
        signal: timeout.signal,
      });
    } catch (cause) {
      if (request.signal?.aborted) throw new TidegateError("closed", "the request was cancelled", { cause });
      if (timeout.signal.aborted) {
        throw new TidegateError("timeout", `no answer within ${this.timeoutMs + (request.waitMs ?? 0)} ms`, { cause });
      }
      throw networkError(cause);
    } finally {
      clearTimeout(timer);
      request.signal?.removeEventListener("abort", abort);
    }
  }
}

function networkError(cause: unknown): TidegateError {
  return new TidegateError("network_error", `no answer from the server: ${String(cause)}`, { cause });
}

async function errorOf(response: Response): Promise<TidegateError> {
  const retryAfter = Number(response.headers.get("Retry-After"));
  const retryAfterMs = Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined;
  const text = await response.text().catch(() => "");
  try {
    const detail = (JSON.parse(text) as { error?: ErrorDetail }).error;
    if (detail && typeof detail.code === "string") {
      return fromDetail(detail, { status: response.status, retryAfterMs });
    }
  } catch {
    // Not the SPEC's error body (a proxy in between, say): fall through.
  }
  return new TidegateError("http_error", `HTTP ${response.status}: ${text.slice(0, 200)}`, {
    status: response.status,
    retryAfterMs,
  });
}
