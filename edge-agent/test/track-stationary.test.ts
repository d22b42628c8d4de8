import { describe, expect, it } from 'vitest';
import type { Box } from '../src/lib/geometry.js';
import { Tracker, type TrackEvent, type TrackInput, type TrackerOptions } from '../src/track/index.js';

type Ev = TrackEvent<string>;
const brief = (e: Ev): Array<string | number | boolean> => [e.kind, e.trackId, e.atMs, e.stationary];

const JITTER = [0, 0.002, -0.002, 0.001, -0.001];
/** A parked car with a little deterministic box jitter (as real detectors produce). */
function parked(k: number, at: Box = { x: 0.3, y: 0.5, w: 0.2, h: 0.15 }, label = 'car'): TrackInput {
  const j = JITTER[k % JITTER.length]!;
  return { classId: label === 'car' ? 2 : 0, label, score: 0.7, box: { ...at, x: at.x + j, y: at.y - j } };
}

/** Frames every `stepMs` from 0 to `endMs`; `dets(t, k)` gives the detections of each. */
function run(
  tr: Tracker<string>,
  endMs: number,
  stepMs: number,
  dets: (t: number, k: number) => TrackInput[],
  each?: (t: number) => void,
): Ev[] {
  const out: Ev[] = [];
  for (let t = 0, k = 0; t <= endMs; t += stepMs, k++) {
    out.push(...tr.update(dets(t, k), t, `f${t}`));
    each?.(t);
  }
  return out;
}

/** Seen for 6 s, then not for 3 s (longer than maxAgeMs), over and over. */
const flickering = (t: number, k: number): TrackInput[] => {
  const phase = t % 9000;
  return phase > 6000 && phase < 9000 ? [] : [parked(k)];
};

describe('Tracker: stationary objects', () => {
  it('a parked car detected for 60 s with 3 s gaps fires exactly one start (and one end on flush)', () => {
    const tr = new Tracker<string>();
    const dormantAt: number[] = [];
    const ids = new Set<string>();
    const events = run(tr, 60_000, 500, flickering, (t) => {
      if (tr.stats().dormant === 1) dormantAt.push(t);
      tr.activeTracks().forEach((v) => ids.add(v.trackId));
    });
    expect(events.map(brief)).toEqual([['start', 'trk-1', 1000, false]]);
    expect([...ids]).toEqual(['trk-1']);
    // Dormant (lost but remembered) at the end of every gap, re-attached when it shows again.
    expect(dormantAt).toEqual([8500, 17_500, 26_500, 35_500, 44_500, 53_500]);
    const [v] = tr.activeTracks();
    expect(v).toMatchObject({ trackId: 'trk-1', stationary: true, firstSeenMs: 0, lastSeenMs: 60_000 });
    const end = tr.flush(60_000);
    expect(end.map(brief)).toEqual([['end', 'trk-1', 60_000, true]]);
    expect(end[0]).toMatchObject({ durationMs: 60_000, label: 'car' });
  });

  it('control: with stationary handling off, the same car starts again after every gap', () => {
    const tr = new Tracker<string>({ stationary: false });
    const events = run(tr, 60_000, 500, flickering);
    expect(events.filter((e) => e.kind === 'start').map((e) => e.atMs)).toEqual([
      1000, 10_000, 19_000, 28_000, 37_000, 46_000, 55_000,
    ]);
    expect(events.filter((e) => e.kind === 'end').map((e) => e.atMs)).toEqual([
      8500, 17_500, 26_500, 35_500, 44_500, 53_500,
    ]);
  });

  it('not yet stationary when lost: ends and starts again as usual', () => {
    const tr = new Tracker<string>();
    // Seen 0..3000 (3 s < stationary.minMs), gone 3 s, back.
    const events = run(tr, 9000, 500, (t, k) => (t > 3000 && t < 6000 ? [] : [parked(k)]));
    expect(events.map(brief)).toEqual([
      ['start', 'trk-1', 1000, false],
      ['end', 'trk-1', 5500, false],
      ['start', 'trk-2', 7000, false],
    ]);
  });

  it('a stationary car that drives off is no longer stationary and ends normally', () => {
    const tr = new Tracker<string>();
    const flags: boolean[] = [];
    const events = run(
      tr,
      14_000,
      500,
      (t, k) => {
        if (t <= 6000) return [parked(k)];
        const x = 0.3 + ((t - 6000) / 1000) * 0.1; // 0.1 per second to the right
        return x + 0.2 <= 1
          ? [{ classId: 2, label: 'car', score: 0.7, box: { x, y: 0.5, w: 0.2, h: 0.15 } }]
          : [];
      },
      (t) => {
        if (t === 5000 || t === 7000) flags.push(tr.activeTracks()[0]!.stationary);
      },
    );
    expect(flags).toEqual([true, false]);
    // Last seen at 11000 (x = 0.8), ended 2000+ ms later without going dormant.
    expect(events.map(brief)).toEqual([
      ['start', 'trk-1', 1000, false],
      ['end', 'trk-1', 13_500, false],
    ]);
    expect(tr.stats().dormant).toBe(0);
  });

  it('a lost stationary track ends when the memory expires; a later car there is a new track', () => {
    const tr = new Tracker<string>({ stationaryMemoryMs: 60_000 });
    const events = run(tr, 70_000, 1000, (t, k) => (t <= 6000 || t >= 69_000 ? [parked(k)] : []));
    expect(events.map(brief)).toEqual([
      ['start', 'trk-1', 2000, false],
      ['end', 'trk-1', 67_000, true], // 67000 - 6000 > 60000
    ]);
    expect(events[1]).toMatchObject({ lastSeenMs: 6000, durationMs: 6000 });
    // The car seen again at 69000 and 70000 is a tentative new track (2 hits so far).
    expect(tr.stats()).toMatchObject({ tentative: 1, confirmed: 0, dormant: 0 });
  });

  it('re-attaches only the same label at nearly the same place', () => {
    const opts: TrackerOptions = {};
    const spot = { x: 0.3, y: 0.5, w: 0.2, h: 0.15 };
    const shifted = { ...spot, x: 0.36 }; // IoU 0.54 with the spot
    const go = (later: TrackInput): Ev[] => {
      const tr = new Tracker<string>(opts);
      return run(tr, 12_000, 500, (t, k) => (t <= 6000 ? [parked(k)] : t >= 9000 ? [later] : []));
    };
    expect(go(parked(0)).map(brief)).toEqual([['start', 'trk-1', 1000, false]]);
    expect(go(parked(0, spot, 'person')).map(brief)).toEqual([
      ['start', 'trk-1', 1000, false],
      ['start', 'trk-2', 10_000, false],
    ]);
    expect(go(parked(0, shifted)).map(brief)).toEqual([
      ['start', 'trk-1', 1000, false],
      ['start', 'trk-2', 10_000, false],
    ]);
  });

  it('the memory is bounded: the oldest lost stationary track is ended to make room', () => {
    const tr = new Tracker<string>({ stationaryMemorySize: 1 });
    const a = { x: 0.1, y: 0.5, w: 0.2, h: 0.15 };
    const b = { x: 0.6, y: 0.5, w: 0.2, h: 0.15 };
    const events = run(tr, 14_000, 500, (t, k) => {
      if (t <= 6000) return [parked(k, a), parked(k, b)];
      if (t < 10_000) return [];
      return [parked(k, a), parked(k, b)];
    });
    // Both go dormant at 8500: a first, then b evicts it. b re-attaches silently, a is a new car.
    expect(events.map(brief)).toEqual([
      ['start', 'trk-1', 1000, false],
      ['start', 'trk-2', 1000, false],
      ['end', 'trk-1', 8500, true],
      ['start', 'trk-3', 11_000, false],
    ]);
    // Live order: a's new track was created before b re-attached in the same frame.
    expect(tr.activeTracks().map((v) => [v.trackId, v.box.x > 0.5])).toEqual([
      ['trk-3', false],
      ['trk-2', true],
    ]);
    expect(tr.flush(14_000).map(brief)).toEqual([
      ['end', 'trk-3', 14_000, false],
      ['end', 'trk-2', 14_000, true],
    ]);
  });

  it('flush ends dormant tracks too, so every start has exactly one end', () => {
    const tr = new Tracker<string>();
    const events = run(tr, 9000, 500, (t, k) => (t <= 6000 ? [parked(k)] : []));
    expect(events.map(brief)).toEqual([['start', 'trk-1', 1000, false]]);
    expect(tr.stats().dormant).toBe(1);
    expect(tr.activeTracks()).toEqual([]);
    const end = tr.flush(9500);
    expect(end.map(brief)).toEqual([['end', 'trk-1', 9500, true]]);
    expect(end[0]!.best.frame).toMatch(/^f\d+$/);
    expect(tr.stats()).toMatchObject({ tentative: 0, confirmed: 0, dormant: 0 });
  });
});
