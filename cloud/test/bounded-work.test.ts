// BoundedWork: the auth callout's bound on concurrent and waiting requests, with an injected clock.
import { describe, expect, it } from 'vitest';
import { BoundedWork } from '../src/lib/bounded-work.js';

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('BoundedWork', () => {
  it('runs up to maxInFlight, queues up to maxQueued, refuses the rest, then drains in order', async () => {
    const gates = new Map<string, ReturnType<typeof deferred>>();
    const started: string[] = [];
    const work = new BoundedWork<string>(
      async (item) => {
        started.push(item);
        const g = deferred();
        gates.set(item, g);
        await g.promise;
      },
      { maxInFlight: 2, maxQueued: 1, maxWaitMs: 1_000 },
    );
    expect(['a', 'b', 'c', 'd'].map((i) => work.submit(i))).toEqual(['started', 'started', 'queued', 'busy']);
    expect(work.inFlight).toBe(2);
    expect(work.queued).toBe(1);
    expect(started).toEqual(['a', 'b']);
    gates.get('a')!.resolve();
    await tick();
    expect(started).toEqual(['a', 'b', 'c']);
    const idle = work.idle();
    gates.get('b')!.resolve();
    gates.get('c')!.resolve();
    await idle;
    expect(work.inFlight).toBe(0);
    expect(work.submit('e')).toBe('started');
  });

  it('drops a queued task that waited longer than maxWaitMs, and survives a task that throws', async () => {
    let now = 0;
    const late: string[] = [];
    const errors: unknown[] = [];
    const gate = deferred();
    const ran: string[] = [];
    const work = new BoundedWork<string>(
      async (item) => {
        ran.push(item);
        if (item === 'first') await gate.promise;
        if (item === 'boom') throw new Error('boom');
      },
      {
        maxInFlight: 1,
        maxQueued: 5,
        maxWaitMs: 100,
        clock: () => now,
        onLate: (i) => late.push(i),
        onError: (e) => errors.push(e),
      },
    );
    work.submit('first');
    work.submit('stale');
    now = 50;
    work.submit('fresh');
    now = 120; // 'stale' waited 120 ms, 'fresh' 70 ms
    gate.resolve();
    await work.idle();
    expect(late).toEqual(['stale']);
    expect(ran).toEqual(['first', 'fresh']);
    work.submit('boom');
    work.submit('after');
    await work.idle();
    expect(errors).toHaveLength(1);
    expect(ran).toEqual(['first', 'fresh', 'boom', 'after']);
  });
});
