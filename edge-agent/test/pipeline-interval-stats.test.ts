import { describe, expect, it } from 'vitest';
import { IntervalStats, median } from '../src/pipeline/interval-stats.js';

describe('median', () => {
  it('is 0 for no values, the middle value for an odd count, the mean of the two middle ones otherwise', () => {
    expect(median([])).toBe(0);
    expect(median([7])).toBe(7);
    expect(median([9, 1, 5])).toBe(5);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });
});

describe('IntervalStats', () => {
  it('reports the median latency and events per minute of the interval, then resets', () => {
    const s = new IntervalStats(0);
    for (const ms of [10, 30, 20]) s.recordInference(ms);
    s.recordEvent();
    s.recordEvent();
    s.recordEvent();
    expect(s.drain(30_000)).toEqual({ inferenceMsP50: 20, eventsPerMinute: 6 });
    expect(s.drain(90_000)).toEqual({ inferenceMsP50: 0, eventsPerMinute: 0 });
  });

  it('keeps only the last N latencies', () => {
    const s = new IntervalStats(0, 4);
    for (const ms of [100, 100, 100, 100, 1, 2, 3]) s.recordInference(ms);
    // ring holds 1, 2, 3, 100
    expect(s.drain(60_000).inferenceMsP50).toBe(2.5);
    s.recordInference(Number.NaN);
    s.recordInference(-1);
    expect(s.drain(120_000).inferenceMsP50).toBe(0);
  });

  it('reports no event rate over an empty interval', () => {
    const s = new IntervalStats(5);
    s.recordEvent();
    expect(s.drain(5).eventsPerMinute).toBe(0);
  });
});
