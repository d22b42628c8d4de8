import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { LeaderGate } from '../scheduler/lease.js';
import { ReleaseError } from './errors.js';
import type { ReleaseService } from './service.js';

/**
 * Signs a fresh timestamp (and snapshot) before theirs expire. The scheduler role runs it behind the leader lease;
 * even if two ran (a stale leader), the repository lock (ReleaseService, a transaction advisory lock) makes them
 * take turns, and each run re-signs only what is past half its lifetime. Runs well inside the timestamp lifetime: at the default interval of
 * 5 minutes a 1-day timestamp survives hours of failed runs (each one logged and counted).
 */
export class ReleaseRefreshJob {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private readonly failures: Counter;
  private readonly lastRun: Gauge;

  constructor(
    private readonly service: ReleaseService,
    private readonly intervalMs: number,
    private readonly log: Logger,
    metrics: Registry,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.failures = new Counter({
      name: 'vigil_cloud_release_refresh_failures_total',
      help: 'Timestamp/snapshot refresh runs that failed (devices refuse the repository once timestamp expires)',
      registers: [metrics],
    });
    this.lastRun = new Gauge({
      name: 'vigil_cloud_release_refresh_last_success_seconds',
      help: 'When the release timestamp refresh last completed (Unix seconds)',
      registers: [metrics],
    });
  }

  /** `leader`: the scheduler lease; a run happens only while this process leads (default: every run). */
  start(leader?: LeaderGate): void {
    const loop = (): void => {
      if (this.stopped) return;
      this.running = (leader && !leader.isLeader() ? Promise.resolve() : this.runOnce())
        .catch((err: unknown) => {
          // An uninitialized repository (no root yet) is normal before the first release: not an error.
          if (err instanceof ReleaseError && err.code === 'RELEASE_REPOSITORY_NOT_INITIALIZED') return;
          this.failures.inc();
          this.log.error({ err }, 'release timestamp refresh failed; retried at the next interval');
        })
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(loop, this.intervalMs);
        });
    };
    this.timer = setTimeout(loop, 0);
  }

  async runOnce(): Promise<void> {
    const signed = await this.service.refresh();
    if (signed.timestamp !== null) this.log.info(signed, 'release metadata re-signed');
    this.lastRun.set(Math.floor(this.now().getTime() / 1000));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }
}
