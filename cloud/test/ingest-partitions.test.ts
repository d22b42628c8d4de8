import { describe, expect, it } from 'vitest';
import { planPartitions } from '../src/index.js';

describe('planPartitions', () => {
  const now = new Date('2026-03-01T23:30:00Z');

  it('plans every UTC day from daysBack before to daysAhead after today', () => {
    expect(planPartitions(now, 7, 1, [])).toEqual({
      create: [
        '2026-02-28',
        '2026-03-01',
        '2026-03-02',
        '2026-03-03',
        '2026-03-04',
        '2026-03-05',
        '2026-03-06',
        '2026-03-07',
        '2026-03-08',
      ],
      drop: [],
    });
  });

  it('skips the days that exist and ignores others', () => {
    const existing = ['2026-02-28', '2026-03-01', '2026-03-03', '2025-12-31', '2026-04-01'];
    expect(planPartitions(now, 3, 1, existing)).toEqual({
      create: ['2026-03-02', '2026-03-04'],
      drop: [],
    });
    expect(planPartitions(now, 1, 1, ['2026-02-28', '2026-03-01', '2026-03-02'])).toEqual({
      create: [],
      drop: [],
    });
  });

  it('uses the UTC day, whatever the local offset of the clock', () => {
    // 2026-03-01T23:30Z is already March 2nd east of UTC: the partition day is still March 1st.
    expect(planPartitions(new Date('2026-03-02T01:30:00+03:00'), 0, 0, [])).toEqual({
      create: ['2026-03-01'],
      drop: [],
    });
    expect(planPartitions(new Date('2026-12-31T23:59:59.999Z'), 1, 0, [])).toEqual({
      create: ['2026-12-31', '2027-01-01'],
      drop: [],
    });
  });

  it('crosses leap days and month ends', () => {
    expect(planPartitions(new Date('2028-02-28T12:00:00Z'), 2, 0, []).create).toEqual([
      '2028-02-28',
      '2028-02-29',
      '2028-03-01',
    ]);
  });

  it('drops the days that ended retentionDays or more ago, nothing with retention off', () => {
    const existing = ['2026-01-29', '2026-01-30', '2026-01-31', '2026-02-01', '2026-03-01'];
    // now 2026-03-01T23:30Z, 30 days: the cutoff is 2026-01-30T23:30Z; 2026-01-30 ends at 2026-01-31T00:00Z.
    expect(planPartitions(now, 0, 0, existing, 30).drop).toEqual(['2026-01-29']);
    // at midnight the cutoff is 2026-01-31T00:00Z: 2026-01-30 has just ended that long ago, 2026-01-31 not.
    expect(planPartitions(new Date('2026-03-02T00:00:00Z'), 0, 0, existing, 30).drop).toEqual([
      '2026-01-29',
      '2026-01-30',
    ]);
    expect(planPartitions(now, 0, 0, existing, 0).drop).toEqual([]);
    // never one that a plan creates
    expect(planPartitions(now, 7, 1, existing, 1).drop).toEqual([
      '2026-01-29',
      '2026-01-30',
      '2026-01-31',
      '2026-02-01',
    ]);
  });
});
