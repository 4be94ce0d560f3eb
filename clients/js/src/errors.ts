/** An error the server answered (`code` is the SPEC's error code, `status` the HTTP status
 * when it came over HTTP), or one the client raises itself: `network_error` (the request
 * never got an answer), `timeout`, `closed` (the client or subscription was closed),
 * `not_connected` (a socket operation while the socket is down). */
export class TidegateError extends Error {
  readonly code: string;
  readonly status: number | undefined;
  /** With `rate_limited` (and 503s that say so): how long to wait before trying again. */
  readonly retryAfterMs: number | undefined;
  /** True when retrying cannot help: the client gave up (403, a refused fresh token). */
  readonly terminal: boolean;
  /** The rest of the server's error body (`partition`, `log_start_offset`, …). */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(
    code: string,
    message: string,
    options: {
      status?: number;
      retryAfterMs?: number;
      terminal?: boolean;
      details?: Record<string, unknown>;
      cause?: unknown;
    } = {},
  ) {
    super(message);
    this.name = "TidegateError";
    this.code = code;
    this.status = options.status;
    this.retryAfterMs = options.retryAfterMs;
    this.terminal = options.terminal ?? false;
    this.details = options.details ?? {};
    if (options.cause !== undefined) (this as { cause?: unknown }).cause = options.cause;
  }
}

/** The `error` object of a server error body or WebSocket `error` message. */
export interface ErrorDetail {
  code: string;
  message: string;
  retry_after_ms?: number | null;
  [field: string]: unknown;
}

export function fromDetail(
  detail: ErrorDetail,
  options: { status?: number; retryAfterMs?: number; terminal?: boolean } = {},
): TidegateError {
  const { code, message, ...details } = detail;
  return new TidegateError(code, message, {
    ...options,
    retryAfterMs: options.retryAfterMs ?? detail.retry_after_ms ?? undefined,
    details,
  });
}

/** The same error, marked as one that retrying cannot fix. */
export function asTerminal(error: TidegateError): TidegateError {
  return new TidegateError(error.code, error.message, {
    status: error.status,
    retryAfterMs: error.retryAfterMs,
    terminal: true,
    details: { ...error.details },
  });
}
