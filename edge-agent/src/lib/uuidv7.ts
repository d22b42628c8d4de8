import { randomFillSync } from 'node:crypto';

/*
 * RFC 9562 UUIDv7, canonical lowercase form:
 *
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * |                        unix_ts_ms (48)                        |
 * |        unix_ts_ms             |  ver=7 |   rand_a (12)        |
 * |var=10|                     rand_b (62)                        |
 * |                            rand_b                             |
 * ```
 *
 * Monotonic within one process (RFC 9562 §6.2, method 1, "fixed bit-length dedicated counter"): rand_a is a
 * 12-bit counter seeded with 11 random bits at every new millisecond (top bit clear, so at least 2048 ids fit
 * into one ms before it overflows) and incremented for every further id in the same ms; rand_b is 62 fresh
 * random bits per id. When the counter overflows, or the clock steps back, the generator keeps going on its
 * last timestamp (+1 ms on overflow): ids always sort by creation, at the price of a timestamp that can run a
 * little ahead of the wall clock under a burst of more than ~2048 ids/ms or after a backwards clock step.
 *
 * Lowercase hex compares bytewise like the 128-bit value, so `id1 < id2` (and SQLite's BINARY collation on a
 * TEXT column) orders ids by creation.
 */

/** Returns `n` random bytes (the CSPRNG by default; injectable for tests). */
export type RandomBytes = (n: number) => Uint8Array;

export const UUID_V7_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const MAX_MS = 2 ** 48 - 1;
const HEX: readonly string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

function hex(byte: number | undefined): string {
  return HEX[(byte ?? 0) & 0xff] ?? '00';
}

/**
 * The default randomness: CSPRNG bytes drawn from a per-generator 4 KiB pool refilled with `randomFillSync`
 * (one `crypto.randomBytes(10)` per id costs ~6 µs; the pool ~0.6 µs per id). The returned view is only valid
 * until the next call.
 */
export function pooledRandomBytes(poolSize = 4096): RandomBytes {
  const pool = Buffer.alloc(poolSize);
  let offset = poolSize;
  return (n) => {
    if (n > poolSize) return randomFillSync(Buffer.alloc(n));
    if (offset + n > poolSize) {
      randomFillSync(pool);
      offset = 0;
    }
    const view = pool.subarray(offset, offset + n);
    offset += n;
    return view;
  };
}

/** True when `id` is a canonical (lowercase) RFC 9562 version-7 UUID. */
export function isUuidV7(id: string): boolean {
  return UUID_V7_PATTERN.test(id);
}

/**
 * Returns a generator of UUIDv7 strings. `now` (ms since the epoch) and `random` are injected so that tests are
 * deterministic; the defaults are the wall clock and the CSPRNG (pooled, see {@link pooledRandomBytes}).
 */
export function createUuidV7(
  now: () => number = Date.now,
  random: RandomBytes = pooledRandomBytes(),
): () => string {
  let lastMs = -1;
  let counter = 0;

  return () => {
    const r = random(10); // r[0..1]: counter seed for a new ms, r[2..9]: rand_b
    if (r.length < 10) throw new RangeError(`uuidv7: random(10) returned ${r.length} bytes`);
    const ms = Math.floor(now());
    if (!Number.isFinite(ms) || ms < 0 || ms > MAX_MS)
      throw new RangeError(`uuidv7: clock out of range: ${ms}`);

    const seed = (((r[0] ?? 0) << 8) | (r[1] ?? 0)) & 0x7ff;
    if (ms > lastMs) {
      lastMs = ms;
      counter = seed;
    } else if (++counter > 0xfff) {
      // Counter exhausted (or the clock went back and we keep counting on lastMs): borrow the next ms.
      if (lastMs >= MAX_MS) throw new RangeError('uuidv7: timestamp space exhausted');
      lastMs += 1;
      counter = seed;
    }

    const ts = lastMs.toString(16).padStart(12, '0');
    return (
      `${ts.slice(0, 8)}-${ts.slice(8, 12)}-` +
      `${hex(0x70 | (counter >>> 8))}${hex(counter)}-` +
      `${hex(0x80 | ((r[2] ?? 0) & 0x3f))}${hex(r[3])}-` +
      `${hex(r[4])}${hex(r[5])}${hex(r[6])}${hex(r[7])}${hex(r[8])}${hex(r[9])}`
    );
  };
}

/** The unix timestamp in ms carried by a UUIDv7 (its first 48 bits). Throws on anything but a canonical v7. */
export function uuidV7Time(id: string): number {
  if (!UUID_V7_PATTERN.test(id)) throw new TypeError(`not a canonical UUIDv7: ${JSON.stringify(id)}`);
  return Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
}
