import { describe, expect, it } from 'vitest';
import { DAY_MS, planWindows, type TimeWindow, type WindowRequest } from '../src/api/event-windows.js';

const d = (s: string): Date => new Date(s);
const iso = (x: Date | null): string | null => (x === null ? null : x.toISOString());
const show = (ws: TimeWindow[]) => ws.map((w) => [iso(w.from), iso(w.to)]);

// A year of daily partitions: 2025-12-08 .. 2026-12-07, and the partitions created ahead to 2026-12-14.
const span = { oldest: d('2025-12-08T00:00:00Z'), newest: d('2026-12-15T00:00:00Z') };
const now = d('2026-12-07T19:30:00Z');

/** The properties every plan has: the covering argument of planWindows. */
function checkCovers(r: WindowRequest, ws: TimeWindow[]): void {
  expect(ws.length).toBeGreaterThan(0);
  expect(ws[0]!.to).toBeNull();
  for (let i = 1; i < ws.length; i++) {
    expect(ws[i]!.to?.getTime()).toBe(ws[i - 1]!.from?.getTime());
    expect(ws[i]!.from === null || ws[i]!.from!.getTime() < ws[i]!.to!.getTime()).toBe(true);
  }
  const last = ws.at(-1)!.from;
  if (r.since === undefined) expect(last).toBeNull();
  else expect(last === null || last.getTime() === r.since.getTime()).toBe(true);
  for (const w of ws.slice(0, -1)) expect(w.from).not.toBeNull();
}

describe('planWindows (pure)', () => {
  it('without partition bounds reads everything in one statement', () => {
    expect(show(planWindows({ span: null, now }))).toEqual([[null, null]]);
  });

  it('starts at today, open above, then doubles back to an open-below window past the oldest partition', () => {
    const r = { span, now };
    const ws = planWindows(r);
    checkCovers(r, ws);
    expect(show(ws).slice(0, 4)).toEqual([
      ['2026-12-07T00:00:00.000Z', null],
      ['2026-12-06T00:00:00.000Z', '2026-12-07T00:00:00.000Z'],
      ['2026-12-04T00:00:00.000Z', '2026-12-06T00:00:00.000Z'],
      ['2026-11-30T00:00:00.000Z', '2026-12-04T00:00:00.000Z'],
    ]);
    // 1 + 1 + 2 + ... + 256 days covers 512 > 365: 10 windows, the last open below.
    expect(ws).toHaveLength(10);
    expect(ws.at(-1)!.from).toBeNull();
    expect(ws.at(-2)!.from!.getTime()).toBeGreaterThan(span.oldest.getTime());
  });

  it('starts a cursor page in the cursor’s day', () => {
    const r = { span, now, upper: d('2026-06-10T08:00:00Z') };
    const ws = planWindows(r);
    checkCovers(r, ws);
    expect(show(ws).slice(0, 2)).toEqual([
      ['2026-06-10T00:00:00.000Z', null],
      ['2026-06-09T00:00:00.000Z', '2026-06-10T00:00:00.000Z'],
    ]);
  });

  it('starts an upper bound at midnight in the day before it', () => {
    const r = { span, now, upper: d('2026-06-10T00:00:00Z') };
    expect(show(planWindows(r))[0]).toEqual(['2026-06-09T00:00:00.000Z', null]);
  });

  it('ends at since: one window when since is in the first day', () => {
    const r = { span, now, since: d('2026-12-07T03:00:00Z') };
    expect(show(planWindows(r))).toEqual([['2026-12-07T03:00:00.000Z', null]]);
    const onDay = { span, now, since: d('2026-12-07T00:00:00Z') };
    expect(show(planWindows(onDay))).toEqual([['2026-12-07T00:00:00.000Z', null]]);
  });

  it('ends at since further back, never below it', () => {
    const r = { span, now, since: d('2026-12-01T12:00:00Z') };
    const ws = planWindows(r);
    checkCovers(r, ws);
    expect(show(ws)).toEqual([
      ['2026-12-07T00:00:00.000Z', null],
      ['2026-12-06T00:00:00.000Z', '2026-12-07T00:00:00.000Z'],
      ['2026-12-04T00:00:00.000Z', '2026-12-06T00:00:00.000Z'],
      ['2026-12-01T12:00:00.000Z', '2026-12-04T00:00:00.000Z'],
    ]);
  });

  it('reads a cursor at or before the oldest partition in one open window', () => {
    expect(show(planWindows({ span, now, upper: d('2025-12-08T10:00:00Z') }))).toEqual([[null, null]]);
    expect(show(planWindows({ span, now, upper: d('2020-01-01T00:00:00Z') }))).toEqual([[null, null]]);
  });

  it('starts at the newest partition when the upper bound or the clock is past it', () => {
    const late = { span, now: d('2027-03-01T00:00:00Z') };
    expect(show(planWindows(late))[0]).toEqual(['2026-12-14T00:00:00.000Z', null]);
    const until = { span, now, upper: d('9999-01-01T00:00:00Z') };
    expect(show(planWindows(until))[0]).toEqual(['2026-12-14T00:00:00.000Z', null]);
  });

  it('covers the time axis for any request (randomized)', () => {
    let seed = 7;
    const rnd = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    for (let k = 0; k < 500; k++) {
      const oldest = Date.UTC(2026, 0, 1) + Math.floor(rnd() * 400) * DAY_MS;
      const newest = oldest + (1 + Math.floor(rnd() * 400)) * DAY_MS;
      const at = (): Date => new Date(oldest + (rnd() * 2 - 0.5) * (newest - oldest));
      const r: WindowRequest = {
        span: { oldest: new Date(oldest), newest: new Date(newest) },
        now: at(),
        upper: rnd() < 0.5 ? at() : undefined,
        since: rnd() < 0.3 ? at() : undefined,
      };
      if (r.since && r.upper && r.since >= r.upper) continue;
      const ws = planWindows(r);
      checkCovers(r, ws);
      expect(ws.length).toBeLessThanOrEqual(12);
    }
  });
});
