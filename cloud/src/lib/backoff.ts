/**
 * Capped exponential backoff with jitter ("equal jitter": half the step is fixed, half random), so that
 * many workers hitting the same outage spread their retries instead of stampeding together.
 */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly baseMs = 250,
    private readonly capMs = 10_000,
    private readonly random: () => number = Math.random,
  ) {}

  /** Failures in a row so far. */
  get failures(): number {
    return this.attempt;
  }

  /** The delay before the next try; each call counts one more failure. */
  next(): number {
    const step = Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt += 1;
    return Math.round(step / 2 + (step / 2) * this.random());
  }

  reset(): void {
    this.attempt = 0;
  }
}

/** Resolves after `ms`, or early (without error) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
