import { describe, expect, it } from 'vitest';
import { MotionGate, type MotionGateOptions } from '../src/pipeline/motion-gate.js';

const W = 320;
const H = 180;
const OPTS: MotionGateOptions = {
  width: 64,
  pixelThreshold: 20,
  minChangedFraction: 0.002,
  backgroundHalfLifeMs: 3_000,
  maxSkipMs: 2_000,
};

/** A flat grey frame with optional noise and a dark square at (x, y). */
function frame(
  opts: { square?: { x: number; y: number; size: number }; noise?: number; seed?: number } = {},
) {
  const data = new Uint8Array(W * H * 3);
  let s = opts.seed ?? 1;
  for (let i = 0; i < data.length; i++) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    const n = opts.noise ? (s % (2 * opts.noise + 1)) - opts.noise : 0;
    data[i] = 128 + n;
  }
  const q = opts.square;
  if (q)
    for (let y = q.y; y < Math.min(H, q.y + q.size); y++)
      for (let x = q.x; x < Math.min(W, q.x + q.size); x++)
        data.fill(20, (y * W + x) * 3, (y * W + x) * 3 + 3);
  return { data, width: W, height: H };
}

describe('MotionGate', () => {
  it('runs on the first frame, then skips a still scene except every maxSkipMs', () => {
    const g = new MotionGate(OPTS);
    const decisions = [];
    // 20 s at 5 fps of a static scene with sensor noise of +-8 grey levels.
    for (let i = 0; i < 100; i++) decisions.push(g.decide(frame({ noise: 8, seed: i + 1 }), i * 200, 0));
    expect(decisions[0]).toMatchObject({ run: true, reason: 'first' });
    const runs = decisions.filter((d) => d.run);
    expect(runs.map((d) => d.reason).slice(1)).toEqual(Array(runs.length - 1).fill('periodic'));
    // One run per 2 s: 10 of 100 frames (>= 5x fewer inferences than running every frame).
    expect(runs).toHaveLength(10);
    expect(Math.max(...decisions.map((d) => d.changed))).toBe(0);
  });

  it('runs when something moves, and the changed fraction reflects its size', () => {
    const g = new MotionGate(OPTS);
    g.decide(frame(), 0, 0);
    expect(g.decide(frame(), 200, 0)).toMatchObject({ run: false, reason: 'still' });
    const d = g.decide(frame({ square: { x: 100, y: 50, size: 40 } }), 400, 0);
    expect(d).toMatchObject({ run: true, reason: 'motion' });
    // 40x40 px of a 320x180 frame is 2.8 % of it.
    expect(d.changed).toBeGreaterThan(0.015);
    expect(d.changed).toBeLessThan(0.05);
    // Moving on: still motion.
    expect(g.decide(frame({ square: { x: 120, y: 50, size: 40 } }), 600, 0).reason).toBe('motion');
  });

  it('a change smaller than minChangedFraction is not motion', () => {
    const g = new MotionGate({ ...OPTS, minChangedFraction: 0.05 });
    g.decide(frame(), 0, 0);
    expect(g.decide(frame({ square: { x: 100, y: 50, size: 40 } }), 200, 0)).toMatchObject({
      run: false,
      reason: 'still',
    });
  });

  it('keeps detecting while tracks are live, even when the object stands still', () => {
    const g = new MotionGate(OPTS);
    const parked = frame({ square: { x: 100, y: 50, size: 40 } });
    g.decide(frame(), 0, 0);
    expect(g.decide(parked, 200, 0).reason).toBe('motion');
    // The object stops: after the background absorbed it, only the live track keeps the detector on.
    const reasons = [];
    for (let t = 400; t <= 30_000; t += 200) reasons.push(g.decide(parked, t, 1));
    expect(reasons.every((d) => d.run)).toBe(true);
    expect(reasons.at(-1)).toMatchObject({ reason: 'tracks' });
    // Without live tracks the same still frame is skipped (periodic aside).
    expect(g.decide(parked, 30_200, 0)).toMatchObject({ run: false, reason: 'still' });
  });

  it('the background absorbs a lasting change (a light switched on), so it stops counting as motion', () => {
    const g = new MotionGate(OPTS);
    g.decide(frame(), 0, 0);
    const lit = { ...frame(), data: frame().data.map((v) => v + 60) };
    expect(g.decide(lit, 200, 0).reason).toBe('motion');
    let last = g.decide(lit, 400, 0);
    for (let t = 600; t <= 20_000; t += 200) last = g.decide(lit, t, 0);
    expect(last.changed).toBe(0);
  });

  it('maxSkipMs 0 runs every frame; a new frame size starts a new background', () => {
    const g = new MotionGate({ ...OPTS, maxSkipMs: 0 });
    for (let i = 0; i < 5; i++) expect(g.decide(frame(), i * 200, 0).run).toBe(true);
    const g2 = new MotionGate(OPTS);
    g2.decide(frame(), 0, 0);
    const small = { data: new Uint8Array(160 * 90 * 3).fill(128), width: 160, height: 90 };
    expect(g2.decide(small, 200, 0)).toMatchObject({ run: true, reason: 'first' });
  });

  it('refuses bad frames and options', () => {
    expect(() => new MotionGate({ ...OPTS, width: 2 })).toThrow(RangeError);
    expect(() => new MotionGate({ ...OPTS, minChangedFraction: 2 })).toThrow(RangeError);
    const g = new MotionGate(OPTS);
    expect(() => g.decide({ data: new Uint8Array(10), width: W, height: H }, 0, 0)).toThrow(RangeError);
  });
});
