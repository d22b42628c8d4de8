import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useRedis } from '@vigil/testkit';
import { GCRA_LUA, type GcraClient } from '../src/api/ratelimit.js';

/** The GCRA Lua script on a real redis-server: its contract, atomicity and EVALSHA fallback. */
describe('GCRA script', () => {
  const server = useRedis();
  const clients: Redis[] = [];
  const connect = (): Redis & GcraClient => {
    const r = new Redis(server().url);
    r.defineCommand('vigilGcra', { lua: GCRA_LUA });
    clients.push(r);
    return r as Redis & GcraClient;
  };
  let redis: Redis & GcraClient;
  beforeAll(() => {
    redis = connect();
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.quit()));
  });

  /** [allowed, allowed_1, remaining_1, retry_after_ms_1, reset_ms_1, ...] */
  const gcra = (keys: string[], args: Array<string | number>): Promise<number[]> =>
    redis.vigilGcra(keys.length, ...keys, ...args.map(String)) as Promise<number[]>;

  it('allows the burst at once, then refuses with the wait until the next request conforms', async () => {
    // One per minute, burst 3: the refill during these few calls is far below one request on any machine,
    // and the time they took (`elapsed`) bounds how far below a full period each figure may be.
    const key = 'vigil:rl:tenant:burst';
    const T = 60_000;
    const started = performance.now();
    const replies = [];
    for (let i = 0; i < 4; i++) replies.push(await gcra([key], [1, T, 3]));
    expect(replies.slice(0, 3).map((r) => r.slice(0, 3))).toEqual([
      [1, 1, 2],
      [1, 1, 1],
      [1, 1, 0],
    ]);
    const [allowed, allowed1, remaining, retryAfter, reset] = replies[3]!;
    expect([allowed, allowed1, remaining]).toEqual([0, 0, 0]);
    // The key holds the TAT (ms on the Redis clock) and expires when the bucket is full again.
    const [seconds, micros] = (await redis.time()) as [string | number, string | number];
    const nowMs = Number(seconds) * 1000 + Number(micros) / 1000;
    const tat = Number(await redis.get(key));
    const pttl = await redis.pttl(key);
    const elapsed = Math.ceil(performance.now() - started) + 1;
    expect(retryAfter).toBeGreaterThanOrEqual(T - elapsed);
    expect(retryAfter).toBeLessThanOrEqual(T);
    expect(reset).toBeGreaterThanOrEqual(3 * T - elapsed);
    expect(reset).toBeLessThanOrEqual(3 * T);
    expect(tat - nowMs).toBeGreaterThanOrEqual(3 * T - elapsed);
    expect(tat - nowMs).toBeLessThanOrEqual(3 * T);
    expect(pttl).toBeGreaterThanOrEqual(3 * T - elapsed);
    expect(pttl).toBeLessThanOrEqual(3 * T);
  });

  it('refills at the rate', async () => {
    // One every 2 s, no burst: the second call comes well within that even on a loaded machine.
    const key = 'vigil:rl:client:refill';
    expect((await gcra([key], [1, 2000, 1]))[0]).toBe(1);
    const refused = await gcra([key], [1, 2000, 1]);
    expect(refused[0]).toBe(0);
    await sleep(refused[3]! + 5);
    expect((await gcra([key], [1, 2000, 1]))[0]).toBe(1);
  });

  it('is all or nothing: a request refused by one limit costs the other nothing', async () => {
    const t = 'vigil:rl:tenant:aon';
    const c = 'vigil:rl:client:aon';
    // Periods of minutes: no refill between these calls, however slow the machine.
    const args = [1, 60_000, 1, 5, 60_000, 5];
    expect(await gcra([t, c], args)).toEqual([1, 1, 0, 0, 60_000, 1, 4, 0, 12_000]);
    const tatBefore = await redis.get(c);
    const refused = await gcra([t, c], args);
    expect(refused.slice(0, 2)).toEqual([0, 0]);
    // The client limit would allow it and still has 4: nothing was taken from it.
    expect(refused.slice(5, 8)).toEqual([1, 4, 0]);
    expect(await redis.get(c)).toBe(tatBefore);
  });

  it('rejects bad arguments', async () => {
    await expect(gcra(['vigil:rl:tenant:bad'], [0, 1000, 1])).rejects.toThrow(/bad rate/);
    await expect(gcra(['vigil:rl:tenant:bad'], [1, 1000])).rejects.toThrow(/3 arguments per key/);
  });

  it('falls back from EVALSHA to EVAL when the script cache was flushed', async () => {
    await redis.script('FLUSH');
    expect((await gcra(['vigil:rl:tenant:flushed'], [1, 1000, 2]))[0]).toBe(1);
  });

  it('never allows more than the burst to concurrent callers on separate connections', async () => {
    const a = connect();
    const b = connect();
    const key = ['vigil:rl:tenant:race'];
    const call = (r: GcraClient): Promise<number[]> =>
      r.vigilGcra(1, ...key, '0.001', '1000', '10') as Promise<number[]>; // no refill during the test
    const replies = await Promise.all(Array.from({ length: 60 }, (_, i) => call(i % 2 === 0 ? a : b)));
    expect(replies.filter((r) => r[0] === 1)).toHaveLength(10);
  });
});
