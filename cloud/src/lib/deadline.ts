/**
 * Node's timers hold a delay of at most 2^31-1 ms (24.8 days): a longer one prints TimeoutOverflowWarning and
 * fires after 1 ms. A deadline further away is reached in steps of at most that much, re-armed from the clock.
 */
export const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

export interface Deadline {
  clear(): void;
}

/**
 * Calls `fn` once, when `now()` has reached `atMs` (epoch ms), however far away that is; never earlier. A
 * deadline in the past fires on the next turn. `maxStepMs` is for tests (the longest single timer).
 */
export function armDeadline(
  atMs: number,
  fn: () => void,
  now: () => number = Date.now,
  maxStepMs: number = MAX_TIMER_DELAY_MS,
): Deadline {
  let timer: NodeJS.Timeout | undefined;
  let cleared = false;
  const step = (): void => {
    if (cleared) return;
    const left = atMs - now();
    if (left <= 0) {
      fn();
      return;
    }
    timer = setTimeout(step, Math.min(left, maxStepMs));
    timer.unref?.();
  };
  const step0 = Math.max(0, Math.min(atMs - now(), maxStepMs));
  timer = setTimeout(step, step0);
  timer.unref?.();
  return {
    clear: () => {
      cleared = true;
      clearTimeout(timer);
    },
  };
}
