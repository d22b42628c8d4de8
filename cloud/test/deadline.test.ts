import { describe, expect, it, vi } from 'vitest';
import { armDeadline, MAX_TIMER_DELAY_MS } from '../src/lib/deadline.js';

const tick = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('armDeadline (timers past 2^31-1 ms)', () => {
  it('does not fire early for a deadline 30 days ahead (a bare setTimeout would, after 1 ms)', async () => {
    const fn = vi.fn();
    const d = armDeadline(Date.now() + 30 * 86_400_000, fn);
    await tick(50);
    expect(fn).not.toHaveBeenCalled();
    d.clear();
    expect(30 * 86_400_000).toBeGreaterThan(MAX_TIMER_DELAY_MS);
  });

  it('re-arms in steps from the clock and fires once the clock reaches the deadline', async () => {
    let clock = 1_000_000;
    const fn = vi.fn();
    armDeadline(clock + 40 * 86_400_000, fn, () => clock, 5);
    await tick(40); // several 5 ms steps; the clock has not moved
    expect(fn).not.toHaveBeenCalled();
    clock += 40 * 86_400_000;
    await vi.waitFor(() => expect(fn).toHaveBeenCalledTimes(1));
    await tick(20);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('fires at once for a past deadline, and never after clear()', async () => {
    const past = vi.fn();
    armDeadline(Date.now() - 1000, past);
    await vi.waitFor(() => expect(past).toHaveBeenCalledTimes(1));
    const cleared = vi.fn();
    let clock = 0;
    const d = armDeadline(100, cleared, () => clock, 5);
    d.clear();
    clock = 200;
    await tick(30);
    expect(cleared).not.toHaveBeenCalled();
  });
});
