import { describe, expect, it } from 'vitest';
import { associate, BoxMotion, centerDistance, motionParams, ZoneMembership } from '../src/track/index.js';

const r6 = (n: number): number => Math.round(n * 1e6) / 1e6;
const rb = (b: { x: number; y: number; w: number; h: number }): number[] => [b.x, b.y, b.w, b.h].map(r6);

describe('BoxMotion (alpha-beta, time based)', () => {
  it('predicts by elapsed time, not by frame count', () => {
    const m = new BoxMotion({ x: 0.1, y: 0.4, w: 0.1, h: 0.1 }, 0);
    expect(m.hasVelocity).toBe(false);
    // No velocity yet: the prediction stays put.
    expect(rb(m.predict(500))).toEqual([0.1, 0.4, 0.1, 0.1]);
    m.update({ x: 0.2, y: 0.4, w: 0.1, h: 0.1 }, 200); // 0.5 per second to the right
    expect(m.hasVelocity).toBe(true);
    expect([r6(m.velocity().x), r6(m.velocity().y)]).toEqual([0.5, 0]);
    expect(rb(m.predict(900))).toEqual([0.55, 0.4, 0.1, 0.1]);
    expect(rb(m.predict(250))).toEqual([0.225, 0.4, 0.1, 0.1]);
    // An observation exactly on the prediction leaves the velocity unchanged.
    m.update({ x: 0.55, y: 0.4, w: 0.1, h: 0.1 }, 900);
    expect(rb(m.predict(1000))).toEqual([0.6, 0.4, 0.1, 0.1]);
  });

  it('corrects position and velocity by the alpha and beta gains', () => {
    const m = new BoxMotion({ x: 0, y: 0, w: 0.2, h: 0.2 }, 0, motionParams({ alpha: 0.5, beta: 0.25 }));
    m.update({ x: 0.1, y: 0, w: 0.2, h: 0.2 }, 1000); // v = 0.1/s, centre 0.2
    m.update({ x: 0.3, y: 0, w: 0.2, h: 0.2 }, 2000); // predicted centre 0.3, measured 0.4: residual 0.1
    expect(r6(m.center().x)).toBe(0.35); // 0.3 + 0.5 * 0.1
    expect(r6(m.velocity().x)).toBe(0.125); // 0.1 + 0.25 * 0.1 / 1 s
  });

  it('caps the speed, ignores zero elapsed time for velocity, and resets', () => {
    const m = new BoxMotion({ x: 0, y: 0, w: 0.1, h: 0.1 }, 0, motionParams({ maxSpeed: 1 }));
    m.update({ x: 0.9, y: 0, w: 0.1, h: 0.1 }, 100); // 9 per second observed, capped to 1
    expect(r6(m.velocity().x)).toBe(1);
    m.update({ x: 0.5, y: 0, w: 0.1, h: 0.1 }, 100); // same timestamp: position only
    expect(r6(m.center().x)).toBe(0.55);
    expect(r6(m.velocity().x)).toBe(1);
    m.reset({ x: 0.2, y: 0.2, w: 0.1, h: 0.1 }, 5000);
    expect(m.hasVelocity).toBe(false);
    expect(rb(m.predict(9000))).toEqual([0.2, 0.2, 0.1, 0.1]);
  });

  it('rejects nonsense gains', () => {
    expect(() => motionParams({ alpha: 0 })).toThrow(RangeError);
    expect(() => motionParams({ beta: 2 })).toThrow(RangeError);
    expect(() => motionParams({ maxSpeed: 0 })).toThrow(RangeError);
  });
});

describe('associate', () => {
  const opts = { iouThreshold: 0.3, maxSizeRatio: 2 };
  const box = (x: number, y = 0.4, w = 0.1, h = 0.1) => ({ x, y, w, h });

  it('never matches across labels', () => {
    const a = associate(
      [{ label: 'person', box: box(0.1), gate: 1 }],
      [{ label: 'car', box: box(0.1) }],
      opts,
    );
    expect(a).toEqual({ matches: [], unmatchedTracks: [0], unmatchedDetections: [0] });
  });

  it('is greedy by descending IoU', () => {
    // Track 0 overlaps both detections, track 1 only detection 0 but better than track 0 does.
    const tracks = [
      { label: 'p', box: box(0.1), gate: 0 },
      { label: 'p', box: box(0.16), gate: 0 },
    ];
    const dets = [
      { label: 'p', box: box(0.15) },
      { label: 'p', box: box(0.12) },
    ];
    const a = associate(tracks, dets, opts);
    // IoU(t1,d0)=0.818 first, then IoU(t0,d1)=0.667; t0/d0 (0.333) is never needed.
    expect(a.matches).toEqual([
      [0, 1],
      [1, 0],
    ]);
    expect(a.unmatchedTracks).toEqual([]);
    expect(a.unmatchedDetections).toEqual([]);
  });

  it('falls back to centre distance for leftovers, within the gate and a similar size', () => {
    const t = [{ label: 'p', box: box(0.1), gate: 1 }];
    // 0.12 away = 0.85 diagonals, no overlap: matched by distance.
    expect(associate(t, [{ label: 'p', box: box(0.22) }], opts).matches).toEqual([[0, 0]]);
    // 0.15 away = 1.06 diagonals: outside the gate.
    expect(associate(t, [{ label: 'p', box: box(0.25) }], opts).matches).toEqual([]);
    // Near but 3x the size: not the same object.
    expect(associate(t, [{ label: 'p', box: box(0.18, 0.4, 0.3, 0.1) }], opts).matches).toEqual([]);
    // Gate 0 disables the fallback.
    expect(associate([{ ...t[0]!, gate: 0 }], [{ label: 'p', box: box(0.22) }], opts).matches).toEqual([]);
    expect(r6(centerDistance(box(0.1), box(0.22)))).toBe(r6(0.12 / Math.hypot(0.1, 0.1)));
  });

  it('lets IoU matches win over distance matches', () => {
    const tracks = [{ label: 'p', box: box(0.1), gate: 2 }];
    const dets = [
      { label: 'p', box: box(0.25) },
      { label: 'p', box: box(0.14) },
    ];
    expect(associate(tracks, dets, opts)).toEqual({
      matches: [[0, 1]],
      unmatchedTracks: [],
      unmatchedDetections: [0],
    });
  });
});

describe('ZoneMembership', () => {
  const right = {
    id: 'right',
    polygon: [
      { x: 0.5, y: 0 },
      { x: 1, y: 0 },
      { x: 1, y: 1 },
      { x: 0.5, y: 1 },
    ],
  };
  // A box whose bottom-centre is at (cx, 0.5).
  const at = (cx: number) => ({ x: cx - 0.05, y: 0.3, w: 0.1, h: 0.2 });

  it('flips only after N consecutive observations on the other side', () => {
    const m = new ZoneMembership([right], 'person', 2, at(0.4));
    expect(m.current()).toEqual([]);
    expect(m.observe(at(0.55))).toEqual([]); // one frame across: pending
    expect(m.observe(at(0.45))).toEqual([]); // back: pending reset
    expect(m.observe(at(0.55))).toEqual([]);
    expect(m.observe(at(0.6))).toEqual([{ zone: 'right', entered: true }]);
    expect(m.current()).toEqual(['right']);
    expect(m.observe(at(0.4))).toEqual([]);
    expect(m.observe(at(0.4))).toEqual([{ zone: 'right', entered: false }]);
  });

  it('starts from the first box and honours the labels filter', () => {
    const carsOnly = { ...right, id: 'cars', labels: ['car'] };
    expect(new ZoneMembership([right, carsOnly], 'car', 2, at(0.7)).current()).toEqual(['right', 'cars']);
    const p = new ZoneMembership([right, carsOnly], 'person', 1, at(0.7));
    expect(p.current()).toEqual(['right']);
    expect(p.observe(at(0.2))).toEqual([{ zone: 'right', entered: false }]);
  });
});
