import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { AuditLog } from '../audit/audit-log.js';
import type { MediaStore } from '../media/store.js';
import type { LeaderGate } from '../scheduler/lease.js';
import { PeriodicJob, type RunContext } from '../scheduler/periodic.js';
import type { Database } from '../storage/tables.js';
import { whileHoldingLock } from '../storage/leader-lock.js';
import { eventHeldSql, mediaHeldSql } from './holds.js';
import { STORED_DATA_CLASSES, type RetentionDefaults, type StoredDataClass } from './policies.js';
import { budgetedRows, PAST_AGE, resolvedRows } from './sql.js';

/*
 * The retention job: deletes what is kept past its policy (privacy/policies.ts), per data class, first by age
 * (oldest first), then by size budget (the oldest items of each budget over it). Held items are never deleted
 * (the deleting statement itself re-checks the hold, so a hold placed after the batch was read still wins); they
 * are counted (`vigil_cloud_retention_held_items`) and listed by `retention check`. Events are deleted; media
 * become tombstones (reason `retention`) and their bytes are deleted after the commit.
 *
 * One cloud process at a time, through the shared runner (scheduler/periodic.ts): the scheduler's leader (its
 * lease; a run ends between batches when the lease lapses), or without one a transaction-held advisory lock.
 * Bounded: batches of `batchSize`, at most `maxPerRun` deletions per run (the next run continues). One audit entry per tenant and run
 * (`retention.apply`, actor `system`) with the counts, not one per item.
 */

export interface RetentionJobOptions {
  db: Kysely<Database>;
  store: MediaStore | undefined;
  audit: AuditLog;
  log: Logger;
  metrics: Registry;
  defaults: RetentionDefaults;
  intervalMs: number;
  now?: (() => Date) | undefined;
  /** Items per batch (default 500) and at most this many deletions per run (default 100,000). */
  batchSize?: number | undefined;
  maxPerRun?: number | undefined;
  /** The scheduler's lease (scheduler/lease.ts): runs only while this process leads. */
  leader?: LeaderGate | undefined;
}

export type ClassCounts = Record<StoredDataClass, { age: number; size: number }>;

export interface RetentionJobRun {
  /** False when another process holds the lock (nothing was done here). */
  leader: boolean;
  deleted: ClassCounts;
  /** Items past their policy (age or budget) that a hold keeps, after the run. */
  held: Record<StoredDataClass, number>;
  /** Bytes of tombstoned media that could not be deleted from the store. */
  storeErrors: number;
  /** The run stopped at maxPerRun with more to do. */
  truncated: boolean;
}

const zeroCounts = (): ClassCounts => ({
  event_metadata: { age: 0, size: 0 },
  redacted_media: { age: 0, size: 0 },
  personal_media: { age: 0, size: 0 },
});

function metric<T>(metrics: Registry, name: string, make: () => T): T {
  return (metrics.getSingleMetric(name) as T | undefined) ?? make();
}

/** The advisory lock of direct use (no lease): 'vigil-media-ret', the key of the media-only job this replaced. */
export const RETENTION_LOCK = BigInt('7601290244163952426');

interface Candidate {
  tenant_id: string;
  id: string;
  at_text: string;
}

export class RetentionJob {
  private readonly job: PeriodicJob<Omit<RetentionJobRun, 'leader'>>;
  private readonly now: () => Date;
  private readonly log: Logger;
  private readonly deletedTotal: Counter<'class' | 'reason'>;
  private readonly heldItems: Gauge<'class'>;
  private readonly errorsTotal: Counter<'stage'>;
  private readonly lastRun: Gauge;

  constructor(private readonly opts: RetentionJobOptions) {
    this.now = opts.now ?? (() => new Date());
    this.log = opts.log.child({ component: 'retention' });
    const registers = [opts.metrics];
    this.deletedTotal = metric(opts.metrics, 'vigil_cloud_retention_deleted_total', () => {
      return new Counter({
        name: 'vigil_cloud_retention_deleted_total',
        help: 'Items deleted by retention, by data class and reason (age, size)',
        labelNames: ['class', 'reason'],
        registers,
      });
    });
    this.heldItems = metric(opts.metrics, 'vigil_cloud_retention_held_items', () => {
      return new Gauge({
        name: 'vigil_cloud_retention_held_items',
        help: 'Items past their retention policy that a legal hold keeps, at the end of the last run',
        labelNames: ['class'],
        registers,
      });
    });
    this.errorsTotal = metric(opts.metrics, 'vigil_cloud_retention_errors_total', () => {
      return new Counter({
        name: 'vigil_cloud_retention_errors_total',
        help: 'Retention failures by stage (run: the run failed; store: bytes of a tombstoned object not deleted)',
        labelNames: ['stage'],
        registers,
      });
    });
    this.lastRun = metric(opts.metrics, 'vigil_cloud_retention_last_run_timestamp_seconds', () => {
      return new Gauge({
        name: 'vigil_cloud_retention_last_run_timestamp_seconds',
        help: 'When the retention job last completed a run as leader',
        registers,
      });
    });
    this.job = new PeriodicJob(
      {
        name: 'retention',
        intervalMs: opts.intervalMs,
        leader: opts.leader,
        // Direct use: a transaction-held lock, which survives pgbouncer's transaction pooling. Its key is the one
        // of the media-only job this one replaced, so that a cloud of that version and this one never both ran.
        exclusive: (work) => whileHoldingLock(opts.db, RETENTION_LOCK, work),
        log: this.log,
        metrics: opts.metrics,
      },
      (ctx) =>
        this.run(ctx).catch((err: unknown) => {
          this.errorsTotal.inc({ stage: 'run' });
          throw err;
        }),
    );
  }

  start(): void {
    this.job.start();
  }

  async stop(): Promise<void> {
    await this.job.stop();
  }

  /** One run if this process leads (the scheduler's lease), or, without a lease, gets the lock. */
  async runAsLeader(): Promise<RetentionJobRun> {
    const out = await this.job.runOnce();
    return out.ran
      ? { leader: true, ...out.result }
      : {
          leader: false,
          deleted: zeroCounts(),
          held: { event_metadata: 0, redacted_media: 0, personal_media: 0 },
          storeErrors: 0,
          truncated: false,
        };
  }

  private async run(ctx: RunContext): Promise<Omit<RetentionJobRun, 'leader'>> {
    const now = this.now();
    const batchSize = this.opts.batchSize ?? 500;
    const maxPerRun = this.opts.maxPerRun ?? 100_000;
    const deleted = zeroCounts();
    const perTenant = new Map<string, ClassCounts>();
    const held = { event_metadata: 0, redacted_media: 0, personal_media: 0 };
    let total = 0;
    let storeErrors = 0;
    let truncated = false;
    for (const dataClass of STORED_DATA_CLASSES) {
      const defaultAgeHours = this.opts.defaults[dataClass];
      const minAge = await this.minAgeHours(dataClass, defaultAgeHours);
      const budgets = await this.hasBudgets(dataClass);
      for (const reason of ['age', 'size'] as const) {
        // Skipped passes read nothing: a cloud with no budget never scans a whole table for one.
        if (reason === 'age' && minAge === null) continue;
        if (reason === 'size' && !budgets) continue;
        for (;;) {
          if (!ctx.live()) break;
          if (total >= maxPerRun) {
            truncated = true;
            break;
          }
          const limit = Math.min(batchSize, maxPerRun - total);
          const o = { dataClass, defaultAgeHours };
          const { rows } =
            reason === 'age'
              ? await sql<Candidate>`select x.tenant_id, x.id, x.at_text
                  from (${resolvedRows({ ...o, before: new Date(now.getTime() - minAge! * 3_600_000) })}) x
                  where ${PAST_AGE(now)} and not x.held order by x.at, x.id limit ${limit}`.execute(
                  this.opts.db,
                )
              : await sql<Candidate>`select x.tenant_id, x.id, x.at_text from (${budgetedRows(o)}) x
                  where x.cum > x.max_bytes and not x.held order by x.at, x.id limit ${limit}`.execute(
                  this.opts.db,
                );
          if (rows.length === 0) break;
          const done = await this.delete(dataClass, rows, now);
          storeErrors += done.storeErrors;
          if (done.tenants.length === 0) break; // all held or gone meanwhile: the next run looks again
          for (const t of done.tenants) {
            const c = perTenant.get(t) ?? zeroCounts();
            c[dataClass][reason]++;
            perTenant.set(t, c);
          }
          deleted[dataClass][reason] += done.tenants.length;
          total += done.tenants.length;
          this.deletedTotal.inc({ class: dataClass, reason }, done.tenants.length);
        }
      }
      held[dataClass] = await this.heldPastPolicy(dataClass, defaultAgeHours, now, minAge, budgets);
      this.heldItems.set({ class: dataClass }, held[dataClass]);
    }
    for (const [tenantId, counts] of perTenant)
      await this.opts.audit
        .append({
          tenantId,
          actor: 'system',
          actorKind: 'system',
          action: 'retention.apply',
          resource: `retention:${tenantId}`,
          outcome: 'allowed',
          detail: { deleted: counts, at: now.toISOString() },
        })
        .catch((err: unknown) => this.log.error({ err, tenantId }, 'retention: audit entry failed'));
    this.lastRun.set(now.getTime() / 1000);
    if (total > 0 || Object.values(held).some((n) => n > 0))
      this.log.info({ deleted, held, storeErrors, truncated }, 'retention run');
    return { deleted, held, storeErrors, truncated };
  }

  /** The shortest age limit of the class anywhere (null: none), to prune the age pass by time. */
  private async minAgeHours(dataClass: StoredDataClass, fallback: number | null): Promise<number | null> {
    const { rows } = await sql<{ h: number | null }>`select min(max_age_hours) as h from retention_policies
      where data_class = ${dataClass}`.execute(this.opts.db);
    const h = rows[0]?.h ?? null;
    return h === null ? fallback : fallback === null ? h : Math.min(h, fallback);
  }

  private async hasBudgets(dataClass: StoredDataClass): Promise<boolean> {
    const { rows } = await sql<{ any: boolean }>`select exists (select 1 from retention_policies
      where data_class = ${dataClass} and max_bytes is not null) as any`.execute(this.opts.db);
    return rows[0]?.any ?? false;
  }

  /** Items past their age limit or budget that a hold keeps (nothing to read when no hold takes effect). */
  private async heldPastPolicy(
    dataClass: StoredDataClass,
    defaultAgeHours: number | null,
    now: Date,
    minAge: number | null,
    budgets: boolean,
  ): Promise<number> {
    const { rows: holds } = await sql<{ any: boolean }>`select exists (select 1 from legal_holds
      where state in ('active', 'release_pending')) as any`.execute(this.opts.db);
    if (!holds[0]?.any || (minAge === null && !budgets)) return 0;
    const o = { dataClass, defaultAgeHours };
    const parts = [];
    if (minAge !== null)
      parts.push(sql`select x.id from (${resolvedRows({ ...o, before: new Date(now.getTime() - minAge * 3_600_000) })}) x
        where x.held and ${PAST_AGE(now)}`);
    if (budgets)
      parts.push(sql`select y.id from (${budgetedRows(o)}) y where y.held and y.cum > y.max_bytes`);
    const { rows } = await sql<{
      n: string;
    }>`select count(*) as n from (${sql.join(parts, sql` union `)}) h`.execute(this.opts.db);
    return Number(rows[0]?.n ?? 0);
  }

  /** Deletes the candidates that are still not held; returns the tenant of each item deleted. */
  private async delete(
    dataClass: StoredDataClass,
    rows: readonly Candidate[],
    now: Date,
  ): Promise<{ tenants: string[]; storeErrors: number }> {
    const tenants = rows.map((r) => r.tenant_id);
    const ids = rows.map((r) => r.id);
    if (dataClass === 'event_metadata') {
      const ats = rows.map((r) => r.at_text);
      const res = await sql<{ tenant_id: string }>`delete from events e
        using unnest(${tenants}::text[], ${ids}::uuid[], ${ats}::timestamptz[]) as k(t, id, at)
        where e.tenant_id = k.t and e.event_id = k.id and e.occurred_at = k.at
          and not ${eventHeldSql('e')}
        returning e.tenant_id`.execute(this.opts.db);
      return { tenants: res.rows.map((r) => r.tenant_id), storeErrors: 0 };
    }
    // Tombstones commit first, bytes go after: a crash in between leaves an orphan file, never a row that
    // points at nothing (as media erasure does).
    const res = await sql<{ tenant_id: string; media_id: string; storage_key: string }>`
      with gone as (
        select m.tenant_id, m.media_id, m.storage_key from media m
          join unnest(${tenants}::text[], ${ids}::uuid[]) as k(t, id) on m.tenant_id = k.t and m.media_id = k.id
         where m.deleted_at is null and not ${mediaHeldSql('m')}
         for update of m)
      update media u set deleted_at = ${now}, deleted_reason = 'retention', storage_key = null
        from gone where u.tenant_id = gone.tenant_id and u.media_id = gone.media_id
      returning gone.tenant_id, gone.media_id, gone.storage_key`.execute(this.opts.db);
    let storeErrors = 0;
    if (this.opts.store)
      for (const r of res.rows)
        await this.opts.store.delete(r.storage_key).catch((err: unknown) => {
          storeErrors++;
          this.errorsTotal.inc({ stage: 'store' });
          this.log.error({ err, key: r.storage_key }, 'retention: deleting the bytes failed');
        });
    return { tenants: res.rows.map((r) => r.tenant_id), storeErrors };
  }
}

/**
 * Whether the event partition of `day` (UTC, `YYYY-MM-DD`) holds an event that must stay: held, or kept by a
 * policy longer than the partition's age. The partition upkeep job drops a day's partition only when not.
 */
export async function partitionKeepsEvents(
  db: Kysely<Database>,
  defaults: RetentionDefaults,
  day: string,
  now: Date,
): Promise<boolean> {
  const from = new Date(`${day}T00:00:00Z`);
  const to = new Date(from.getTime() + 86_400_000);
  const rows = resolvedRows({
    dataClass: 'event_metadata',
    defaultAgeHours: defaults.event_metadata,
    within: { from, to },
  });
  const { rows: r } = await sql<{ keep: boolean }>`select exists (
      select 1 from (${rows}) x where x.held or not ${PAST_AGE(now)}) as keep`.execute(db);
  return r[0]?.keep ?? true;
}
