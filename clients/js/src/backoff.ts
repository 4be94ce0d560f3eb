/** Exponential backoff with jitter, bounded: attempt n waits a random time between half
 * and all of min(maxDelayMs, initialDelayMs × 2ⁿ), so that clients cut off together do not
 * come back together. */
export interface BackoffOptions {
  /** First delay, in milliseconds (default 250). */
  initialDelayMs?: number;
  /** Longest delay, in milliseconds (default 30 000). */
  maxDelayMs?: number;
}

export function backoffDelay(attempt: number, options: BackoffOptions = {}): number {
  const initial = options.initialDelayMs ?? 250;
  const max = options.maxDelayMs ?? 30_000;
  const ceiling = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  return ceiling * (0.5 + Math.random() / 2);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done);
  });
}
