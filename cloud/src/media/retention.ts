import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { AuditLog } from '../audit/audit-log.js';
import type { LeaderGate } from '../scheduler/lease.js';
import type { Database } from '../storage/tables.js';
import { whileHoldingLock } from '../storage/leader-lock.js';
import type { MediaRepository } from './repository.js';
import type { MediaStore } from './store.js';

/** The PostgreSQL advisory lock key the media retention leader holds while it runs ('vigil-media-ret'). */
export const MEDIA_RETENTION_LOCK = BigInt('7601290244163952426');

/** Pure: media captured before the returned time are past retention; null when retention is off (0 days). */
export function retentionCutoff(now: Date, retentionDays: number): Date | null {
  if (!Number.isFinite(retentionDays) || retentionDays <= 0) return null;
  return new Date(now.getTime() - retentionDays * 86_400_000);
}

export interface MediaRetentionOptions {
  db: Kysely<Database>;
  repository: MediaRepository;
  store: MediaStore | undefined;
  audit: AuditLog;
  log: Logger;
  metrics: Registry;
  retentionDays: number;
  intervalMs: number;
  now?: (() => Date) | undefined;
  /** Rows per batch (default 500) and at most this many per run (default 100,000): a run always ends. */
  batchSize?: number | undefined;
  maxPerRun?: number | undefined;
  /**
   * The scheduler lease (scheduler/lease.ts): runs only while this process leads, checked again before each
   * batch. Without it, a session advisory lock (a single process or tests; not usable through pgbouncer in
   * transaction pooling mode).
   */
  leader?: LeaderGate | undefined;
}

export interface RetentionRunResult {
  /** False when another process holds the leader lock (nothing was done here). */
  leader: boolean;
  deleted: number;
  /** Bytes that could not be deleted from the store (the row is a tombstone already). */
  storeErrors: number;
  /** True when the run stopped at maxPerRun with more to do (the next run continues). */
  truncated: boolean;
}

/**
 * Deletes media past `media.retentionDays` (by capture time): each object becomes a tombstone (reason
 * `retention`), then its bytes are deleted. One cloud process at a time (advisory lock); bounded batches, at most
 * `maxPerRun` per run. One audit entry per tenant and run (`media.retention`, actor `system`) with the count,
 * rather than one per object, so the log stays readable.
 */
export class MediaRetentionJob {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private readonly now: () => Date;
  private readonly log: Logger;
  private readonly deletedTotal: Counter;
  private readonly errorsTotal: Counter<'stage'>;
  private readonly lastRun: Gauge;

  constructor(private readonly opts: MediaRetentionOptions) {
    this.now = opts.now ?? (() => new Date());
    this.log = opts.log.child({ component: 'media-retention' });
    this.deletedTotal = new Counter({
      name: 'vigil_cloud_media_retention_deleted_total',
      help: 'Media objects deleted by the retention job',
      registers: [opts.metrics],
    });
    this.errorsTotal = new Counter({
      name: 'vigil_cloud_media_retention_errors_total',
      help: 'Retention failures by stage (run: the run failed; store: bytes of a tombstoned object not deleted)',
      labelNames: ['stage'],
      registers: [opts.metrics],
    });
    this.lastRun = new Gauge({
      name: 'vigil_cloud_media_retention_last_run_timestamp_seconds',
      help: 'When the retention job last completed a run as leader',
      registers: [opts.metrics],
    });
  }

  start(): void {
    const loop = (): void => {
      if (this.stopped) return;
      this.running = this.runAsLeader()
        .then(() => undefined)
        .catch((err: unknown) => {
          this.errorsTotal.inc({ stage: 'run' });
          this.log.error({ err }, 'media retention run failed; retried at the next interval');
        })
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(loop, this.opts.intervalMs);
        });
    };
    this.timer = setTimeout(loop, 0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** One run if this process gets the leader lock. */
  async runAsLeader(): Promise<RetentionRunResult> {
    const leader = this.opts.leader;
    if (leader) {
      if (!leader.isLeader()) return { leader: false, deleted: 0, storeErrors: 0, truncated: false };
      return { leader: true, ...(await this.run()) };
    }
    // Without the scheduler's lease (direct use): a transaction-held lock (storage/leader-lock.ts), which, unlike
    // a session lock, survives pgbouncer's transaction pooling.
    const run = await whileHoldingLock(this.opts.db, MEDIA_RETENTION_LOCK, () => this.run());
    return run.held
      ? { leader: true, ...run.result }
      : { leader: false, deleted: 0, storeErrors: 0, truncated: false };
  }

  private async run(): Promise<Omit<RetentionRunResult, 'leader'>> {
    const now = this.now();
    const cutoff = retentionCutoff(now, this.opts.retentionDays);
    if (cutoff === null) return { deleted: 0, storeErrors: 0, truncated: false };
    const batchSize = this.opts.batchSize ?? 500;
    const maxPerRun = this.opts.maxPerRun ?? 100_000;
    const perTenant = new Map<string, number>();
    let deleted = 0;
    let storeErrors = 0;
    let truncated = false;
    for (;;) {
      // A lost lease ends the run between batches: the new leader continues where this one stopped.
      if (this.stopped || (this.opts.leader && !this.opts.leader.isLeader())) break;
      if (deleted >= maxPerRun) {
        truncated = true;
        break;
      }
      const batch = await this.opts.repository.expired(cutoff, Math.min(batchSize, maxPerRun - deleted));
      if (batch.length === 0) break;
      for (const m of batch) {
        const done = await this.opts.repository.markDeleted(m.tenant_id, m.media_id, 'retention', now);
        if (done === null) continue; // erased meanwhile
        deleted++;
        this.deletedTotal.inc();
        perTenant.set(m.tenant_id, (perTenant.get(m.tenant_id) ?? 0) + 1);
        if (this.opts.store)
          await this.opts.store.delete(done.storageKey).catch((err: unknown) => {
            storeErrors++;
            this.errorsTotal.inc({ stage: 'store' });
            this.log.error({ err, key: done.storageKey }, 'media retention: deleting the bytes failed');
          });
      }
    }
    for (const [tenantId, count] of perTenant)
      await this.opts.audit
        .append({
          tenantId,
          actor: 'system',
          actorKind: 'system',
          action: 'media.retention',
          resource: `media:${tenantId}`,
          outcome: 'allowed',
          detail: {
            deleted: count,
            captured_before: cutoff.toISOString(),
            retention_days: this.opts.retentionDays,
          },
        })
        .catch((err: unknown) => this.log.error({ err, tenantId }, 'media retention: audit entry failed'));
    this.lastRun.set(now.getTime() / 1000);
    if (deleted > 0)
      this.log.info({ deleted, storeErrors, truncated, cutoff: cutoff.toISOString() }, 'media retention run');
    return { deleted, storeErrors, truncated };
  }
}
