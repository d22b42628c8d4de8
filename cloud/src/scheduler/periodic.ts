import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { LeaderGate } from './lease.js';

/**
 * One runner for the work that must run once in the deployment, periodically (retention, erasure, the rollout
 * executor, the edge retention re-issue): start/stop, an interval with jitter, a nudge to run now, the scheduler
 * lease (or, without one, an exclusive lock) checked before every run and, through `live()`, between the batches
 * of a run (fencing: a run ends when this process stops leading or a new term began), errors counted and logged
 * (the next interval retries), and the same metrics for every job, labelled by its name.
 *
 * Why shared: each job had its own copy of this loop, and they had drifted (one counted failures, one did not;
 * one could be nudged; none had jitter, so standbys that became leader together ran in lockstep).
 */

/** Runs `work` only if this process gets an exclusive lock (storage/leader-lock.ts whileHoldingLock). */
export type Exclusive = <T>(work: () => Promise<T>) => Promise<{ held: true; result: T } | { held: false }>;

export interface RunContext {
  /** The lease's fencing token this run started under (undefined without a lease). */
  readonly token: bigint | undefined;
  /** False once stop() was called, this process stopped leading, or another term began: end between batches. */
  live(): boolean;
}

export interface PeriodicJobOptions {
  /** The job's name in logs and metrics (`job` label): retention, erasure, rollouts, edge_retention. */
  name: string;
  intervalMs: number;
  /** Each wait is intervalMs × (1 ± jitter), jitter in [0, 1]; default 0.1. */
  jitter?: number | undefined;
  /** The scheduler lease: runs only while this process leads. */
  leader?: LeaderGate | undefined;
  /** Without a lease: runs only while holding this lock (direct use, tests). One of the two is required. */
  exclusive?: Exclusive | undefined;
  log: Logger;
  metrics: Registry;
  /** Uniform [0, 1) for the jitter (default Math.random; tests pin it). */
  random?: (() => number) | undefined;
}

/**
 * A run's work over open items (erasure requests, edge retention passes): reads the open ones (`open`, a
 * bounded page), runs each one's batches until it has no more, then reads again, until none is open. Ends
 * between batches once `ctx.live()` is false; what is left stays open for the next run.
 */
export async function drainOpen<K>(
  ctx: RunContext,
  open: () => Promise<readonly K[]>,
  runBatch: (key: K) => Promise<{ more: boolean }>,
): Promise<void> {
  for (;;) {
    const keys = await open();
    if (keys.length === 0 || !ctx.live()) return;
    for (const key of keys) while (ctx.live() && (await runBatch(key)).more);
  }
}

/** Pure: the wait before the next run, intervalMs × (1 ± jitter), never negative. */
export function nextDelayMs(intervalMs: number, jitter: number, random: number): number {
  const j = Math.min(1, Math.max(0, jitter));
  return Math.max(0, Math.round(intervalMs * (1 + j * (2 * random - 1))));
}

function metric<T>(metrics: Registry, name: string, make: () => T): T {
  return (metrics.getSingleMetric(name) as T | undefined) ?? make();
}

export type RunOutcome<T> = { ran: true; result: T } | { ran: false };

export class PeriodicJob<T = void> {
  private timer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private stopped = false;
  private again = false;
  private readonly random: () => number;
  private readonly runs: Counter<'job' | 'result'>;
  private readonly lastSuccess: Gauge<'job'>;
  private readonly lastDuration: Gauge<'job'>;

  constructor(
    private readonly opts: PeriodicJobOptions,
    private readonly work: (ctx: RunContext) => Promise<T>,
  ) {
    if (!opts.leader && !opts.exclusive)
      throw new TypeError(`periodic job ${opts.name}: a leader gate or an exclusive lock is required`);
    this.random = opts.random ?? Math.random;
    const registers = [opts.metrics];
    this.runs = metric(
      opts.metrics,
      'vigil_cloud_job_runs_total',
      () =>
        new Counter({
          name: 'vigil_cloud_job_runs_total',
          help: 'Runs of scheduled jobs by job and result (ok, error, standby: not leader, nothing done)',
          labelNames: ['job', 'result'],
          registers,
        }),
    );
    this.lastSuccess = metric(
      opts.metrics,
      'vigil_cloud_job_last_success_timestamp_seconds',
      () =>
        new Gauge({
          name: 'vigil_cloud_job_last_success_timestamp_seconds',
          help: 'When a scheduled job last completed a run in this process',
          labelNames: ['job'],
          registers,
        }),
    );
    this.lastDuration = metric(
      opts.metrics,
      'vigil_cloud_job_last_duration_seconds',
      () =>
        new Gauge({
          name: 'vigil_cloud_job_last_duration_seconds',
          help: 'How long the last completed run of a scheduled job took',
          labelNames: ['job'],
          registers,
        }),
    );
  }

  get name(): string {
    return this.opts.name;
  }

  /** Runs at once, then after each run waits the interval (with jitter) or until nudged. */
  start(): void {
    if (this.loop) return;
    this.loop = (async () => {
      while (!this.stopped) {
        this.again = false;
        await this.runOnce().catch(() => undefined); // counted and logged by runOnce
        if (this.stopped) break;
        if (this.again) continue;
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          this.timer = setTimeout(
            resolve,
            nextDelayMs(this.opts.intervalMs, this.opts.jitter ?? 0.1, this.random()),
          );
        });
        this.wake = undefined;
      }
    })();
  }

  /** Run now rather than at the next interval (after the current run, if one is in flight). */
  nudge(): void {
    this.again = true;
    clearTimeout(this.timer);
    this.wake?.();
  }

  /** Ends the loop: the run in flight sees live() false and ends at its next batch; awaited. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.wake?.();
    await this.loop;
  }

  /**
   * One run if this process leads (or gets the lock); `{ ran: false }` otherwise. A failed run is counted and
   * logged, then rethrown to a direct caller (the loop goes on to the next interval).
   */
  async runOnce(): Promise<RunOutcome<T>> {
    const started = performance.now();
    const job = this.opts.name;
    try {
      let out: RunOutcome<T>;
      const leader = this.opts.leader;
      if (leader) {
        const token = leader.fencingToken();
        if (!leader.isLeader() || token === undefined) out = { ran: false };
        else {
          const ctx: RunContext = {
            token,
            live: () => !this.stopped && leader.isLeader() && leader.fencingToken() === token,
          };
          out = { ran: true, result: await this.work(ctx) };
        }
      } else {
        const ctx: RunContext = { token: undefined, live: () => !this.stopped };
        const r = await this.opts.exclusive!(() => this.work(ctx));
        out = r.held ? { ran: true, result: r.result } : { ran: false };
      }
      this.runs.inc({ job, result: out.ran ? 'ok' : 'standby' });
      if (out.ran) {
        this.lastSuccess.set({ job }, Date.now() / 1000);
        this.lastDuration.set({ job }, (performance.now() - started) / 1000);
      }
      return out;
    } catch (err) {
      this.runs.inc({ job, result: 'error' });
      this.opts.log.error({ err, job }, `${job} run failed; retried at the next interval`);
      throw err;
    }
  }
}
