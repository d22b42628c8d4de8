import { describe, expect, it } from 'vitest';
import type { Box } from '../src/lib/geometry.js';
import { Tracker, type TrackEvent, type TrackInput, type TrackerOptions } from '../src/track/index.js';

type Ev = TrackEvent<string>;
interface Frame {
  t: number;
  dets: TrackInput[];
}

const person = (box: Box, score = 0.8): TrackInput => ({ classId: 0, label: 'person', score, box });
const car = (box: Box, score = 0.8): TrackInput => ({ classId: 2, label: 'car', score, box });
/** [kind, trackId, atMs] (+ zone) */
const brief = (e: Ev): Array<string | number> => [e.kind, e.trackId, e.atMs, ...(e.zone ? [e.zone] : [])];
const r6 = (n: number): number => Math.round(n * 1e6) / 1e6;

/** Feeds the frames (frame handle `f<t>`), returns every event in order. */
function run(tr: Tracker<string>, frames: readonly Frame[], each?: (f: Frame) => void): Ev[] {
  const out: Ev[] = [];
  for (const f of frames) {
    out.push(...tr.update(f.dets, f.t, `f${f.t}`));
    each?.(f);
  }
  return out;
}

/** Frames every `stepMs` from `from` to `to` inclusive. */
function times(from: number, to: number, stepMs: number): number[] {
  const out: number[] = [];
  for (let t = from; t <= to; t += stepMs) out.push(t);
  return out;
}

const make = (o: TrackerOptions = {}): Tracker<string> => new Tracker<string>(o);

describe('Tracker: one object is one track', () => {
  it('an object moving left to right: one start, one end, one id throughout', () => {
    const tr = make();
    const moving = times(0, 3200, 200).map((t) => ({
      t,
      dets: [person({ x: 0.05 * (t / 200), y: 0.4, w: 0.1, h: 0.2 })],
    }));
    const empty = times(3400, 6000, 200).map((t) => ({ t, dets: [] }));
    const seen = new Set<string>();
    const events = run(tr, [...moving, ...empty], () => {
      for (const v of tr.activeTracks()) seen.add(v.trackId);
    });
    expect(events.map(brief)).toEqual([
      ['start', 'trk-1', 400],
      ['end', 'trk-1', 5400], // last seen at 3200, gone for more than 2000 ms
    ]);
    expect([...seen]).toEqual(['trk-1']);
    const end = events[1]!;
    expect(end).toMatchObject({
      label: 'person',
      classId: 0,
      firstSeenMs: 0,
      lastSeenMs: 3200,
      durationMs: 3200,
    });
    expect(end.box.x).toBeCloseTo(0.8, 9);
    expect(end.stationary).toBe(false);
    // Equal quality everywhere: the first view stays the best.
    expect(end.best.frame).toBe('f0');
    expect(tr.activeTracks()).toEqual([]);
    expect(tr.flush(7000)).toEqual([]);
  });

  it('the start event carries the state at confirmation', () => {
    const tr = make();
    const events = run(
      tr,
      [0, 200, 400].map((t) => ({
        t,
        dets: [person({ x: 0.1 + t / 10000, y: 0.4, w: 0.1, h: 0.2 }, 0.6 + t / 2000)],
      })),
    );
    expect(events).toEqual([
      {
        kind: 'start',
        trackId: 'trk-1',
        label: 'person',
        classId: 0,
        score: 0.8,
        box: { x: 0.14, y: 0.4, w: 0.1, h: 0.2 },
        atMs: 400,
        zones: [],
        best: { frame: 'f400', box: { x: 0.14, y: 0.4, w: 0.1, h: 0.2 }, score: 0.8, atMs: 400 },
        stationary: false,
        durationMs: 400,
        firstSeenMs: 0,
        lastSeenMs: 400,
      },
    ]);
    const [v] = tr.activeTracks();
    expect(v).toMatchObject({ trackId: 'trk-1', hits: 3, misses: 0, lastScore: 0.8 });
    expect(r6(v!.velocity.x)).toBe(0.1); // 0.02 per 200 ms
  });

  it('different labels crossing the same place keep their ids', () => {
    const tr = make();
    const frames = times(0, 2800, 200).map((t, k) => ({
      t,
      dets: [
        person({ x: 0.1 + 0.05 * k, y: 0.4, w: 0.1, h: 0.2 }),
        car({ x: 0.8 - 0.05 * k, y: 0.4, w: 0.1, h: 0.2 }),
      ],
    }));
    const events = run(tr, frames);
    expect(events.map(brief)).toEqual([
      ['start', 'trk-1', 400],
      ['start', 'trk-2', 400],
    ]);
    expect(events.map((e) => e.label)).toEqual(['person', 'car']);
    const [p, c] = tr.activeTracks();
    expect([p!.trackId, p!.label, r6(p!.box.x)]).toEqual(['trk-1', 'person', 0.8]);
    expect([c!.trackId, c!.label, r6(c!.box.x)]).toEqual(['trk-2', 'car', 0.1]);
    expect(p!.velocity.x).toBeGreaterThan(0);
    expect(c!.velocity.x).toBeLessThan(0);
  });

  it('two people crossing paths keep their ids thanks to motion prediction', () => {
    const tr = make();
    // A walks right, B walks left, slightly lower: their boxes overlap heavily while they pass.
    const frames = times(0, 2800, 200).map((t, k) => ({
      t,
      dets: [
        person({ x: 0.1 + 0.05 * k, y: 0.4, w: 0.1, h: 0.2 }),
        person({ x: 0.8 - 0.05 * k, y: 0.42, w: 0.1, h: 0.2 }),
      ],
    }));
    const trail = new Map<string, number[]>();
    const events = run(tr, frames, () => {
      for (const v of tr.activeTracks()) trail.set(v.trackId, [...(trail.get(v.trackId) ?? []), r6(v.box.x)]);
    });
    expect(events.map(brief)).toEqual([
      ['start', 'trk-1', 400],
      ['start', 'trk-2', 400],
    ]);
    // Each id moved monotonically in its own direction the whole time (no swap at the crossing).
    const a = trail.get('trk-1')!;
    const b = trail.get('trk-2')!;
    expect(a).toHaveLength(13);
    expect(a.every((x, i) => i === 0 || x > a[i - 1]!)).toBe(true);
    expect(b.every((x, i) => i === 0 || x < b[i - 1]!)).toBe(true);
    expect([a.at(-1), b.at(-1)]).toEqual([0.8, 0.1]);
    expect(tr.flush(3000).map(brief)).toEqual([
      ['end', 'trk-1', 3000],
      ['end', 'trk-2', 3000],
    ]);

    // Control: the same frames without a usable velocity swap the ids at the crossing.
    const still = make({ motion: { maxSpeed: 1e-9 } });
    const stillTrail: number[] = [];
    run(still, frames, () =>
      stillTrail.push(r6(still.activeTracks().find((v) => v.trackId === 'trk-1')?.box.x ?? -1)),
    );
    expect(stillTrail.slice(2, 10)).toEqual([0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.4, 0.35]);
  });
});

describe('Tracker: flicker and false positives', () => {
  it('a one-frame false positive never starts a track', () => {
    const tr = make();
    const events = run(tr, [
      { t: 0, dets: [person({ x: 0.5, y: 0.5, w: 0.1, h: 0.2 }, 0.99)] },
      ...times(200, 3000, 200).map((t) => ({ t, dets: [] })),
    ]);
    expect(events).toEqual([]);
    expect(tr.stats()).toEqual({
      tentative: 0,
      confirmed: 0,
      dormant: 0,
      droppedDetections: 0,
      invalidDetections: 0,
    });
    expect(tr.flush(3200)).toEqual([]);
  });

  it('two hits are not enough with minHits 3; a tentative track may miss one frame', () => {
    const box = { x: 0.5, y: 0.5, w: 0.1, h: 0.2 };
    const two = make();
    expect(
      run(
        two,
        [0, 200, 400, 600, 800].map((t) => ({ t, dets: t <= 200 ? [person(box)] : [] })),
      ),
    ).toEqual([]);
    const gap = make();
    const events = run(
      gap,
      [0, 200, 400, 600].map((t) => ({ t, dets: t === 200 ? [] : [person(box)] })),
    );
    expect(events.map(brief)).toEqual([['start', 'trk-1', 600]]);
    const strict = make({ maxTentativeMisses: 0 });
    expect(
      run(
        strict,
        [0, 200, 400, 600].map((t) => ({ t, dets: t === 200 ? [] : [person(box)] })),
      ),
    ).toEqual([]);
  });

  it('a detection missing for 1-2 frames neither ends nor restarts the track', () => {
    const tr = make();
    const frames = times(0, 2400, 200).map((t, k) => ({
      t,
      dets: k === 5 || k === 6 || k === 9 ? [] : [person({ x: 0.1 + 0.03 * k, y: 0.4, w: 0.1, h: 0.2 })],
    }));
    const ids = new Set<string>();
    const events = run(tr, frames, () => tr.activeTracks().forEach((v) => ids.add(v.trackId)));
    expect(events.map(brief)).toEqual([['start', 'trk-1', 400]]);
    expect([...ids]).toEqual(['trk-1']);
    expect(tr.activeTracks()[0]).toMatchObject({ hits: 10, misses: 0, lastSeenMs: 2400 });
    expect(tr.flush(2600).map(brief)).toEqual([['end', 'trk-1', 2600]]);
  });

  it('a track missing for more than maxAgeMs ends with the best (score x area) snapshot', () => {
    const tr = make();
    const at = (w: number, h: number): Box => ({ x: 0.5 - w / 2, y: 0.5 - h / 2, w, h });
    const views: Array<[Box, number]> = [
      [at(0.15, 0.2), 0.9], //   quality 0.0270
      [at(0.2, 0.25), 0.5], //   0.0250
      [at(0.12, 0.18), 0.97], // 0.0210 (highest score)
      [at(0.2, 0.22), 0.85], //  0.0374 (the best view)
      [at(0.25, 0.25), 0.4], //  0.0250 (largest box)
    ];
    const frames = [
      ...views.map(([b, s], k) => ({ t: k * 200, dets: [person(b, s)] })),
      ...times(1000, 3200, 200).map((t) => ({ t, dets: [] })),
    ];
    const events = run(tr, frames);
    expect(events.map(brief)).toEqual([
      ['start', 'trk-1', 400],
      ['end', 'trk-1', 3000], // 3000 - 800 > 2000; at 2800 exactly 2000 had passed
    ]);
    const [start, end] = events;
    expect(start!.best.frame).toBe('f0'); // the best so far at confirmation
    expect(end).toMatchObject({ score: 0.97, box: at(0.25, 0.25), durationMs: 800, lastSeenMs: 800 });
    expect(end!.best).toEqual({ frame: 'f600', box: at(0.2, 0.22), score: 0.85, atMs: 600 });
  });

  it('a custom snapshot quality (score only) picks another view', () => {
    const tr = make({ snapshotQuality: (d) => d.score });
    const b = { x: 0.4, y: 0.4, w: 0.1, h: 0.2 };
    run(
      tr,
      [0.5, 0.9, 0.7].map((s, k) => ({ t: k * 100, dets: [person(b, s)] })),
    );
    expect(tr.flush(300)[0]!.best).toMatchObject({ frame: 'f100', score: 0.9 });
  });
});

describe('Tracker: timing and bounds', () => {
  const moving = (t: number): TrackInput => person({ x: 0.1 + t / 2000, y: 0.4, w: 0.1, h: 0.1 });

  it('uneven timestamps (0, 200, 900, 1000 ms) associate through time-based prediction', () => {
    const tr = make();
    const ids = new Set<string>();
    const events = run(
      tr,
      [0, 200, 900, 1000].map((t) => ({ t, dets: [moving(t)] })),
      () => tr.activeTracks().forEach((v) => ids.add(v.trackId)),
    );
    // 0.35 jump between 200 and 900 ms (3.5 box widths): only the prediction bridges it.
    expect(events.map(brief)).toEqual([['start', 'trk-1', 900]]);
    expect([...ids]).toEqual(['trk-1']);
    expect(tr.activeTracks()[0]).toMatchObject({ hits: 4, box: { x: 0.6, y: 0.4, w: 0.1, h: 0.1 } });
  });

  it('control: without a usable velocity the same frames never make a track', () => {
    const tr = make({ motion: { maxSpeed: 1e-9 } });
    expect(
      run(
        tr,
        [0, 200, 900, 1000].map((t) => ({ t, dets: [moving(t)] })),
      ),
    ).toEqual([]);
  });

  it('a small fast object that never overlaps itself between frames is still one track', () => {
    // 0.03 wide, 0.05 per frame at 2 fps: no IoU between consecutive boxes; the centre-distance fallback
    // links the first two frames, then the velocity estimate takes over.
    const small = (t: number): TrackInput => car({ x: 0.1 + t / 10000, y: 0.5, w: 0.03, h: 0.03 });
    const frames = times(0, 3000, 500).map((t) => ({ t, dets: [small(t)] }));
    const tr = make();
    expect(run(tr, frames).map(brief)).toEqual([['start', 'trk-1', 1000]]);
    expect(tr.activeTracks()[0]).toMatchObject({ hits: 7 });
    // Control: without the fallback the object never becomes a track.
    expect(run(make({ maxCenterDistance: 0 }), frames)).toEqual([]);
  });

  it('maxTracks bounds the live tracks and counts dropped detections', () => {
    const tr = make({ maxTracks: 2 });
    const dets = [0.1, 0.4, 0.7].map((x) => person({ x, y: 0.4, w: 0.1, h: 0.2 }));
    const events = run(
      tr,
      [0, 200, 400].map((t) => ({ t, dets })),
    );
    expect(events.map(brief)).toEqual([
      ['start', 'trk-1', 400],
      ['start', 'trk-2', 400],
    ]);
    expect(events.map((e) => e.box.x)).toEqual([0.1, 0.4]);
    expect(tr.droppedDetections).toBe(3);
    expect(tr.stats()).toMatchObject({ confirmed: 2, tentative: 0, droppedDetections: 3 });
  });

  it('injectable ids, invalid detections ignored, a clock step back treated as no time', () => {
    let n = 100;
    const tr = make({ idGenerator: () => `cam7-${n++}`, minHits: 1 });
    const events = run(tr, [
      {
        t: 1000,
        dets: [
          person({ x: Number.NaN, y: 0, w: 0.1, h: 0.1 }),
          person({ x: 0.2, y: 0.2, w: 0, h: 0.1 }),
          person({ x: 1.5, y: 0.2, w: 0.1, h: 0.1 }), // entirely outside the frame
          car({ x: 0.2, y: 0.2, w: 0.1, h: 0.1 }),
        ],
      },
      { t: 900, dets: [car({ x: 0.2, y: 0.2, w: 0.1, h: 0.1 })] },
    ]);
    expect(events.map(brief)).toEqual([['start', 'cam7-100', 1000]]);
    expect(tr.stats().invalidDetections).toBe(3);
    expect(tr.activeTracks()[0]).toMatchObject({ trackId: 'cam7-100', hits: 2, lastSeenMs: 1000 });
    expect(tr.flush(500).map(brief)).toEqual([['end', 'cam7-100', 1000]]);
  });

  it('rejects nonsense options and timestamps', () => {
    expect(() => make({ minHits: 0 })).toThrow(RangeError);
    expect(() => make({ iouThreshold: 0 })).toThrow(RangeError);
    expect(() => make({ maxTracks: 0 })).toThrow(RangeError);
    expect(() =>
      make({
        zones: [
          { id: 'a', polygon: [] },
          { id: 'a', polygon: [] },
        ],
      }),
    ).toThrow(RangeError);
    expect(() => make().update([], Number.NaN, 'f')).toThrow(RangeError);
  });
});
