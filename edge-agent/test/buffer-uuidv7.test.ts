import { describe, expect, it } from 'vitest';
import { createUuidV7, isUuidV7, UUID_V7_PATTERN, uuidV7Time } from '../src/lib/uuidv7.js';

const T0 = Date.UTC(2025, 0, 2, 3, 4, 5, 678);

describe('uuidv7', () => {
  it('produces canonical RFC 9562 version-7 ids (version nibble 7, variant 10)', () => {
    const next = createUuidV7();
    for (let i = 0; i < 1000; i++) {
      const id = next();
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(isUuidV7(id)).toBe(true);
    }
    expect(UUID_V7_PATTERN.test('0190a5a4-1b2c-4d5e-8f90-123456789abc')).toBe(false); // v4
    expect(isUuidV7('0190A5A4-1B2C-7D5E-8F90-123456789ABC')).toBe(false); // not canonical (uppercase)
  });

  it('lays out the 48-bit timestamp, version, variant and random bits', () => {
    const bytes = Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    const id = createUuidV7(
      () => 0x0123456789ab,
      () => bytes,
    )();
    // counter seed = 0xffff & 0x7ff; rand_b = 62 one-bits under the variant.
    expect(id).toBe('01234567-89ab-77ff-bfff-ffffffffffff');
    expect(uuidV7Time(id)).toBe(0x0123456789ab);
  });

  it('is strictly monotonic over 10k ids within one millisecond', () => {
    const next = createUuidV7(() => T0);
    const ids = Array.from({ length: 10_000 }, () => next());
    const outOfOrder = ids.findIndex((id, i) => i > 0 && !(id > ids[i - 1]!));
    expect(outOfOrder).toBe(-1);
    expect(new Set(ids).size).toBe(ids.length);
    // The first ids carry the real ms; a 12-bit counter overflow borrows the next ms, never goes back.
    expect(uuidV7Time(ids[0]!)).toBe(T0);
    expect(uuidV7Time(ids[2047]!)).toBe(T0);
    expect(uuidV7Time(ids.at(-1)!)).toBeGreaterThanOrEqual(T0);
    expect(uuidV7Time(ids.at(-1)!)).toBeLessThanOrEqual(T0 + Math.ceil(10_000 / 2048));
  });

  it('stays monotonic when the clock steps back, and catches up when it moves on', () => {
    let now = T0;
    const next = createUuidV7(() => now);
    const a = next();
    now = T0 - 60_000;
    const b = next();
    expect(b > a).toBe(true);
    expect(uuidV7Time(b)).toBe(T0);
    now = T0 + 5;
    const c = next();
    expect(c > b).toBe(true);
    expect(uuidV7Time(c)).toBe(T0 + 5);
  });

  it('sorts by creation across milliseconds, and text order is time order', () => {
    let now = T0;
    const next = createUuidV7(() => now);
    const ids: string[] = [];
    for (let i = 0; i < 300; i++) {
      if (i % 7 === 0) now += 1 + (i % 3);
      ids.push(next());
    }
    expect([...ids].sort()).toEqual(ids);
    expect(ids.map(uuidV7Time)).toEqual([...ids.map(uuidV7Time)].sort((x, y) => x - y));
  });

  it('extracts the time and rejects non-v7 input', () => {
    expect(uuidV7Time(createUuidV7(() => T0)())).toBe(T0);
    expect(new Date(uuidV7Time(createUuidV7()())).getTime()).toBeLessThanOrEqual(Date.now());
    expect(() => uuidV7Time('not-a-uuid')).toThrow(TypeError);
    expect(() => createUuidV7(() => -1)()).toThrow(RangeError);
  });
});
