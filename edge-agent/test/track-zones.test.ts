import { describe, expect, it } from 'vitest';
import { Tracker, type TrackEvent, type TrackInput, type ZoneDef } from '../src/track/index.js';

type Ev = TrackEvent<string>;

/** Right half of the frame. */
const right: ZoneDef = {
  id: 'right',
  polygon: [
    { x: 0.5, y: 0 },
    { x: 1, y: 0 },
    { x: 1, y: 1 },
    { x: 0.5, y: 1 },
  ],
};

/** A detection whose bottom-centre (ground point) is at (gx, 0.6); the box itself spans x gx-0.05..gx+0.05. */
const at = (gx: number, label = 'person'): TrackInput => ({
  classId: label === 'car' ? 2 : 0,
  label,
  score: 0.8,
  box: { x: gx - 0.05, y: 0.4, w: 0.1, h: 0.2 },
});

const brief = (e: Ev): Array<string | number | string[]> => [
  e.kind,
  e.trackId,
  e.atMs,
  ...(e.zone ? [e.zone] : []),
  e.zones,
];

/** One frame every 200 ms; the k-th frame shows the objects at the k-th ground x of each path. */
function walk(tr: Tracker<string>, paths: ReadonlyArray<{ xs: readonly number[]; label?: string }>): Ev[] {
  const out: Ev[] = [];
  const n = Math.max(...paths.map((p) => p.xs.length));
  for (let k = 0; k < n; k++) {
    const dets = paths.flatMap((p) => (k < p.xs.length ? [at(p.xs[k]!, p.label)] : []));
    out.push(...tr.update(dets, k * 200, `f${k}`));
  }
  return out;
}

describe('Tracker: zones', () => {
  it('enter and exit a polygon zone by the ground point, after the hysteresis', () => {
    const tr = new Tracker<string>({ zones: [right] });
    //                                             in: 6        out: 13
    const xs = [0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.52, 0.57, 0.62, 0.67, 0.62, 0.57, 0.52, 0.47, 0.42, 0.37];
    const events = walk(tr, [{ xs }]);
    expect(events.map(brief)).toEqual([
      ['start', 'trk-1', 400, []],
      ['zone_enter', 'trk-1', 1400, 'right', ['right']], // second consecutive frame inside
      ['zone_exit', 'trk-1', 2800, 'right', []],
    ]);
    expect(events[1]).toMatchObject({ label: 'person', zone: 'right', box: at(0.57).box });
    // Ending is not leaving: no zone_exit on end; the end reports the membership at that time.
    const inside = new Tracker<string>({ zones: [right] });
    walk(inside, [{ xs: xs.slice(0, 10) }]);
    expect(inside.flush(2000).map(brief)).toEqual([['end', 'trk-1', 2000, ['right']]]);
  });

  it('a single jittery frame across the edge fires nothing', () => {
    const tr = new Tracker<string>({ zones: [right] });
    const xs = [0.4, 0.44, 0.47, 0.52, 0.48, 0.47, 0.51, 0.48, 0.46, 0.53, 0.49];
    expect(walk(tr, [{ xs }]).map(brief)).toEqual([['start', 'trk-1', 400, []]]);
    // ...and the same from the inside.
    const tr2 = new Tracker<string>({ zones: [right] });
    const ys = [0.6, 0.56, 0.53, 0.48, 0.52, 0.53, 0.49, 0.52, 0.55];
    expect(walk(tr2, [{ xs: ys }]).map(brief)).toEqual([
      ['start', 'trk-1', 400, ['right']],
      ['zone_enter', 'trk-1', 400, 'right', ['right']],
    ]);
  });

  it('zoneHysteresisFrames 1 reacts to every crossing', () => {
    const tr = new Tracker<string>({ zones: [right], zoneHysteresisFrames: 1 });
    const xs = [0.4, 0.44, 0.47, 0.52, 0.48];
    expect(walk(tr, [{ xs }]).map(brief)).toEqual([
      ['start', 'trk-1', 400, []],
      ['zone_enter', 'trk-1', 600, 'right', ['right']],
      ['zone_exit', 'trk-1', 800, 'right', []],
    ]);
  });

  it('a track confirmed inside a zone starts with a zone_enter', () => {
    const tr = new Tracker<string>({ zones: [right] });
    expect(walk(tr, [{ xs: [0.7, 0.7, 0.7] }]).map(brief)).toEqual([
      ['start', 'trk-1', 400, ['right']],
      ['zone_enter', 'trk-1', 400, 'right', ['right']],
    ]);
  });

  it('a zone with a labels filter ignores other labels', () => {
    const carsOnly: ZoneDef = { ...right, id: 'parking', labels: ['car'] };
    const tr = new Tracker<string>({ zones: [right, carsOnly] });
    const xs = [0.3, 0.35, 0.4, 0.45, 0.52, 0.57, 0.62];
    const events = walk(tr, [
      { xs, label: 'person' },
      { xs: xs.map((x) => x + 0.001), label: 'car' },
    ]);
    expect(events.map((e) => [e.kind, e.label, e.atMs, e.zone ?? '-', e.zones])).toEqual([
      ['start', 'person', 400, '-', []],
      ['start', 'car', 400, '-', []],
      ['zone_enter', 'person', 1000, 'right', ['right']],
      // Both flips happen on the same frame; `zones` is the membership after the frame.
      ['zone_enter', 'car', 1000, 'right', ['right', 'parking']],
      ['zone_enter', 'car', 1000, 'parking', ['right', 'parking']],
    ]);
  });

  it('tentative tracks fire no zone events', () => {
    const tr = new Tracker<string>({ zones: [right], minHits: 5 });
    // Crosses into the zone (and settles) before it is confirmed: only the start and the enter at confirmation.
    expect(walk(tr, [{ xs: [0.42, 0.46, 0.52, 0.56, 0.6, 0.6] }]).map(brief)).toEqual([
      ['start', 'trk-1', 800, ['right']],
      ['zone_enter', 'trk-1', 800, 'right', ['right']],
    ]);
  });
});
