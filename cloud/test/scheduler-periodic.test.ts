// The shared runner of scheduled jobs (scheduler/periodic.ts): jitter bounds, runs only under the lease (or the
// exclusive lock), fencing between batches, errors counted without ending the loop, nudge and stop. The lease
// is a LeaderGate whose answers the test sets (the lease itself has its own test against PostgreSQL).
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { LeaderGate } from '../src/scheduler/lease.js';
import { drainOpen, nextDelayMs, PeriodicJob, type Exclusive } from '../src/scheduler/periodic.js';

const silent = pino({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class Gate implements LeaderGate {
  token: bigint | undefined = 1n;
  isLeader(): boolean {
    return this.token !== undefined;
  }
  fencingToken(): bigint | undefined {
    return this.token;
  }
}

async function count(metrics: Registry, job: string, result: string): Promise<number> {
  const m = await metrics.getSingleMetric('vigil_cloud_job_runs_total')!.get();
  return m.values.find((v) => v.labels.job === job && v.labels.result === result)?.value ?? 0;
}

describe('periodic job runner', () => {
  it('waits intervalMs × (1 ± jitter), clamped', () => {
    expect(nextDelayMs(1000, 0.1, 0)).toBe(900);
    expect(nextDelayMs(1000, 0.1, 0.5)).toBe(1000);
    expect(nextDelayMs(1000, 0.1, 0.999999)).toBe(1100);
    expect(nextDelayMs(1000, 0, 0.9)).toBe(1000);
    expect(nextDelayMs(1000, 5, 0)).toBe(0); // jitter is capped at 1: never negative
    for (let i = 0; i < 100; i++) {
      const d = nextDelayMs(60_000, 0.2, Math.random());
      expect(d).toBeGreaterThanOrEqual(48_000);
      expect(d).toBeLessThanOrEqual(72_000);
    }
  });

  it('needs a lease or an exclusive lock', () => {
    expect(
      () =>
        new PeriodicJob({ name: 'x', intervalMs: 10, log: silent, metrics: new Registry() }, async () => {}),
    ).toThrow(/leader gate or an exclusive lock/);
  });

  it('runs only while leader, counts standby runs, and passes the fencing token', async () => {
    const gate = new Gate();
    const metrics = new Registry();
    const tokens: Array<bigint | undefined> = [];
    const job = new PeriodicJob({ name: 'j', intervalMs: 10, leader: gate, log: silent, metrics }, (ctx) => {
      tokens.push(ctx.token);
      return Promise.resolve('done');
    });
    expect(await job.runOnce()).toEqual({ ran: true, result: 'done' });
    gate.token = undefined;
    expect(await job.runOnce()).toEqual({ ran: false });
    gate.token = 7n;
    await job.runOnce();
    expect(tokens).toEqual([1n, 7n]);
    expect(await count(metrics, 'j', 'ok')).toBe(2);
    expect(await count(metrics, 'j', 'standby')).toBe(1);
    const last = await metrics.getSingleMetric('vigil_cloud_job_last_success_timestamp_seconds')!.get();
    expect(last.values[0]!.value).toBeGreaterThan(Date.now() / 1000 - 60);
  });

  it('fencing: live() turns false mid-run when leadership is lost or a new term begins', async () => {
    const gate = new Gate();
    const seen: boolean[] = [];
    const job = new PeriodicJob(
      { name: 'f', intervalMs: 10, leader: gate, log: silent, metrics: new Registry() },
      (ctx) => {
        seen.push(ctx.live());
        gate.token = 2n; // lapsed and taken again: another term, maybe another leader's batches between
        seen.push(ctx.live());
        gate.token = undefined;
        seen.push(ctx.live());
        return Promise.resolve();
      },
    );
    await job.runOnce();
    expect(seen).toEqual([true, false, false]);
  });

  it('without a lease, runs only when it gets the exclusive lock', async () => {
    let free = false;
    const exclusive: Exclusive = async (work) =>
      free ? { held: true, result: await work() } : { held: false };
    let runs = 0;
    const job = new PeriodicJob(
      { name: 'x', intervalMs: 10, exclusive, log: silent, metrics: new Registry() },
      () => Promise.resolve(++runs),
    );
    expect(await job.runOnce()).toEqual({ ran: false });
    free = true;
    expect(await job.runOnce()).toEqual({ ran: true, result: 1 });
  });

  it('a failing run is counted and logged; the loop runs again at the next interval', async () => {
    const metrics = new Registry();
    let runs = 0;
    const job = new PeriodicJob(
      { name: 'e', intervalMs: 20, jitter: 0, leader: new Gate(), log: silent, metrics },
      () => {
        runs++;
        return runs <= 2 ? Promise.reject(new Error('database unreachable')) : Promise.resolve();
      },
    );
    await expect(job.runOnce()).rejects.toThrow('database unreachable');
    job.start();
    await expect.poll(() => runs).toBeGreaterThanOrEqual(4);
    await job.stop();
    expect(await count(metrics, 'e', 'error')).toBe(2);
    expect(await count(metrics, 'e', 'ok')).toBeGreaterThanOrEqual(2);
  });

  it('nudge runs at once instead of after the interval; stop waits for the run in flight, then nothing runs', async () => {
    let runs = 0;
    let inFlight = false;
    let release: (() => void) | undefined;
    const job = new PeriodicJob(
      { name: 'n', intervalMs: 3_600_000, leader: new Gate(), log: silent, metrics: new Registry() },
      async (ctx) => {
        runs++;
        inFlight = true;
        if (runs === 3) await new Promise<void>((r) => (release = r));
        // a batch loop: ends when stopped
        while (runs === 3 && ctx.live()) await sleep(5);
        inFlight = false;
      },
    );
    job.start();
    await expect.poll(() => runs).toBe(1); // the first run is at once
    await sleep(50);
    expect(runs).toBe(1); // then it waits the interval (an hour)
    job.nudge();
    await expect.poll(() => runs).toBe(2);
    job.nudge();
    await expect.poll(() => runs).toBe(3);
    job.nudge(); // during a run: one more run follows it
    const stopping = job.stop();
    release!();
    await stopping;
    expect(inFlight).toBe(false);
    const after = runs;
    await sleep(50);
    expect(runs).toBe(after);
    expect(after).toBeLessThanOrEqual(4);
  });
});

describe('drainOpen (the batch loop over open items)', () => {
  // Items with a number of batches left; an item is open while it has any. The page is the first two open.
  const work = (left: Record<string, number>) => {
    const calls: string[] = [];
    return {
      calls,
      open: () =>
        Promise.resolve(
          Object.keys(left)
            .filter((k) => left[k]! > 0)
            .slice(0, 2),
        ),
      runBatch: (k: string) => {
        calls.push(k);
        left[k]!--;
        return Promise.resolve({ more: left[k]! > 0 });
      },
    };
  };

  it('runs each open item to the end, page after page, then stops', async () => {
    const w = work({ a: 2, b: 1, c: 3, d: 0 });
    await drainOpen({ token: undefined, live: () => true }, w.open, w.runBatch);
    expect(w.calls).toEqual(['a', 'a', 'b', 'c', 'c', 'c']);
  });

  it('ends between batches once live() is false, leaving the rest open', async () => {
    const w = work({ a: 5, b: 5 });
    await drainOpen({ token: undefined, live: () => w.calls.length < 3 }, w.open, w.runBatch);
    expect(w.calls).toEqual(['a', 'a', 'a']);
  });
});
