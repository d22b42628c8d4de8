import { describe, expect, it } from 'vitest';
import { recoveryOf, type Sample } from '../src/fault/recovery.js';

/** A commit count sampled every 100 ms from t=0 with `perSecond(t)` events per second. */
function series(ms: number, perSecond: (t: number) => number): Sample[] {
  const out: Sample[] = [];
  let c = 0;
  for (let t = 0; t <= ms; t += 100) {
    out.push({ t, committed: Math.round(c) });
    c += perSecond(t) / 10;
  }
  return out;
}

describe('time to recover from a fault (pure)', () => {
  it('a stall of 3 s at 100/s: recovered once a 1 s window is back to half the rate', () => {
    const s = series(20_000, (t) => (t >= 10_000 && t < 13_000 ? 0 : 100));
    const r = recoveryOf(s, 10_000);
    expect(r.baselinePerSecond).toBe(100);
    // The first window [t-1 s, t] with >= 50 events ends half a second after the stall.
    expect(r.recoverMs).toBeGreaterThanOrEqual(3_400);
    expect(r.recoverMs).toBeLessThanOrEqual(3_600);
    expect(r.duringPerSecond).toBeLessThan(20);
  });

  it('no visible stall: recovered after one window, the rate during it unchanged', () => {
    const r = recoveryOf(
      series(20_000, () => 100),
      10_000,
    );
    expect(r.recoverMs).toBe(1_000);
    expect(r.duringPerSecond).toBe(100);
  });

  it('never back before the run ended: not recovered', () => {
    const r = recoveryOf(
      series(20_000, (t) => (t >= 10_000 ? 10 : 100)),
      10_000,
    );
    expect(r.recoverMs).toBeUndefined();
    expect(r.duringPerSecond).toBe(10);
  });

  it('a backlog that drains fast after the stall counts as recovered', () => {
    const s = series(20_000, (t) => (t < 10_000 ? 100 : t < 15_000 ? 0 : 600));
    const r = recoveryOf(s, 10_000);
    expect(r.recoverMs).toBeGreaterThanOrEqual(5_000);
    expect(r.recoverMs).toBeLessThanOrEqual(5_200);
  });
});
