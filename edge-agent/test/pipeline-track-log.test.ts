import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { TrackLog } from '../src/pipeline/track-log.js';
import type { TrackEvent, TrackEventKind } from '../src/track/types.js';

function capture(): { lines: Array<Record<string, unknown>>; log: pino.Logger } {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino(
    { level: 'info' },
    { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) },
  );
  return { lines, log };
}

function ev(kind: TrackEventKind, trackId: string, label = 'person', extra: Partial<TrackEvent<null>> = {}) {
  const box = { x: 0.1, y: 0.1, w: 0.2, h: 0.4 };
  return {
    kind,
    trackId,
    label,
    classId: 0,
    score: 0.87654,
    box,
    atMs: 0,
    zones: [],
    best: { frame: null, box, score: 0.87654, atMs: 0 },
    stationary: false,
    durationMs: 4321.4,
    firstSeenMs: 0,
    lastSeenMs: 4321,
    ...extra,
  } satisfies TrackEvent<null>;
}

describe('TrackLog: track start and end at info, bounded per camera', () => {
  it('logs a start and an end with camera, track id, label, score and duration; not zone crossings', () => {
    const { lines, log } = capture();
    const t = new TrackLog(log, 'lobby', { now: () => 0 });
    t.record(ev('start', 'trk-1'), 'e-1');
    t.record(ev('zone_enter', 'trk-1', 'person', { zone: 'door' }), 'e-2');
    t.record(ev('end', 'trk-1', 'person', { stationary: true }), 'e-3');
    expect(lines).toEqual([
      expect.objectContaining({
        level: 30,
        msg: 'track started',
        camera: 'lobby',
        trackId: 'trk-1',
        label: 'person',
        score: 0.877,
        eventId: 'e-1',
      }),
      expect.objectContaining({
        level: 30,
        msg: 'track ended',
        camera: 'lobby',
        trackId: 'trk-1',
        label: 'person',
        score: 0.877,
        durationMs: 4321,
        stationary: true,
        eventId: 'e-3',
      }),
    ]);
  });

  it('a busy scene: at most maxLines per window, then one summary per window with what was left out', () => {
    const { lines, log } = capture();
    let now = 1_000;
    let suppressed = 0;
    const t = new TrackLog(log, 'street', {
      now: () => now,
      maxLines: 5,
      windowMs: 10_000,
      maxLabels: 2,
      onSuppressed: (n) => (suppressed += n),
    });
    // 100 tracks start and end within one window: 5 lines, 195 counted.
    for (let i = 0; i < 100; i++)
      t.record(ev('start', `trk-${i}`, ['car', 'person', 'bus'][i % 3]), `s-${i}`);
    for (let i = 0; i < 100; i++) t.record(ev('end', `trk-${i}`, ['car', 'person', 'bus'][i % 3]), `e-${i}`);
    expect(lines).toHaveLength(5);
    expect(suppressed).toBe(195);
    // The scene goes on (frames are processed) but without tracks: the summary comes when the window ends.
    now += 9_999;
    t.tick();
    expect(lines).toHaveLength(5);
    now += 1;
    t.tick();
    expect(lines).toHaveLength(6);
    const summary = lines[5]!;
    expect(summary).toMatchObject({
      level: 30,
      camera: 'street',
      notLogged: { starts: 95, ends: 100 },
      windowMs: 10_000,
      maxLines: 5,
    });
    // Two labels by name (the first left out: bus, car), the third summed as "other"; all lines counted.
    const labels = summary['labels'] as Record<string, number>;
    expect(Object.keys(labels).sort()).toEqual(['bus', 'car', 'other']);
    expect(Object.values(labels).reduce((a, b) => a + b, 0)).toBe(195);
    // A new window logs again; nothing left out, no summary.
    t.record(ev('start', 'trk-new'), 's-new');
    expect(lines.at(-1)).toMatchObject({ msg: 'track started', trackId: 'trk-new' });
    now += 20_000;
    t.tick();
    t.flush();
    expect(lines).toHaveLength(7);
  });

  it('flush (the pipeline stopping) writes the pending summary', () => {
    const { lines, log } = capture();
    const t = new TrackLog(log, 'gate', { now: () => 0, maxLines: 1 });
    t.record(ev('start', 'a'), '1');
    t.record(ev('start', 'b'), '2');
    t.flush();
    expect(lines.map((l) => l['msg'])).toEqual([
      'track started',
      'many tracks: starts and ends beyond the per-window line limit were counted, not logged',
    ]);
    expect(lines[1]).toMatchObject({ notLogged: { starts: 1, ends: 0 }, labels: { person: 1 } });
  });
});
