export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
  /** 0..1: the fraction of the delay that is randomised ("equal jitter"). */
  jitter: number;
}

export const defaultBackoff: BackoffPolicy = { initialMs: 500, maxMs: 30_000, jitter: 0.5 };

/**
 * Capped exponential backoff with jitter: attempt 0 waits about `initialMs`, each next attempt doubles,
 * never more than `maxMs`. Jitter spreads reconnecting cameras and agents so that they do not stampede.
 */
export function backoffDelay(
  attempt: number,
  policy: BackoffPolicy,
  random: () => number = Math.random,
): number {
  const exp = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.max(0, Math.min(attempt, 30)));
  const jitterPart = exp * policy.jitter;
  return Math.round(exp - jitterPart + random() * jitterPart);
}
