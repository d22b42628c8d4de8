import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { AuditLog } from '../audit/audit-log.js';
import type { LeaderGate } from '../scheduler/lease.js';
import { utcDay, type EventStore } from './store.js';

const DAY_MS = 86_400_000;

/**
 * Pure: which daily partitions (UTC days, `YYYY-MM-DD`) must be created so that every day from
 * `daysBack` days before `now` to `daysAhead` days after it has one, and which existing ones retention drops:
 * those whose whole day ended `retentionDays` or more before `now` (0: keep everything). `existing` lists the
 * days that already have a partition, in any order.
 */
export function planPartitions(
  now: Date,
  daysAhead: number,
  daysBack: number,
  existing: readonly string[],
  retentionDays = 0,
): { create: string[]; drop: string[] } {
  const have = new Set(existing);
  const today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
  const create: string[] = [];
  for (let d = -daysBack; d <= daysAhead; d++) {
    const day = utcDay(new Date(today + d * DAY_MS));
    if (!have.has(day)) create.push(day);
  }
  const cutoff = now.getTime() - retentionDays * DAY_MS;
  const drop =
    retentionDays > 0
      ? [...have].filter((day) => Date.parse(`${day}T00:00:00Z`) + DAY_MS <= cutoff).sort()
      : [];
  return { create, drop };
}

export interface PartitionJobOptions {
  /** Config events.retentionDays: partitions whose day ended this long ago are dropped (0: never). */
  retentionDays?: number;
  /** Records each dropped partition (system action `events.retention`). */
  audit?: AuditLog | undefined;
  /**
   * Whether a day due to be dropped still holds an event that must stay (a legal hold, or a retention policy
   * longer than events.retentionDays: privacy/retention-job.ts partitionKeepsEvents). Such a day is kept
   * whole and the retention job deletes its other events row by row.
   */
  keepsEvents?: ((day: string, now: Date) => Promise<boolean>) | undefined;
  daysAhead?: number;
  daysBack?: number;
  intervalMs?: number;
  now?: () => Date;
  /** The scheduler lease: a pass runs only while this process leads (default: always, a lone process). */
  leader?: LeaderGate | undefined;
}

/**
 * Keeps event partitions created ahead: at start and then hourly, today-1 .. today+7. Ingest also creates
 * a partition on demand for an early or late event, so a missed run costs nothing but a little latency.
 *
 * The scheduler role runs it behind the leader lease (scheduler/lease.ts), so only one process drops
 * partitions by retention; creating one is idempotent and race-safe anyway (vigil_ensure_event_partition).
 */
export class PartitionJob {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly runs: Counter<'result'>;
  private readonly created: Counter;
  private readonly dropped: Counter;
  private readonly dropSkipped: Counter;
  private readonly keepsEvents: PartitionJobOptions['keepsEvents'];
  private readonly retentionDays: number;
  private readonly audit: AuditLog | undefined;
  private readonly daysAhead: number;
  private readonly daysBack: number;
  private readonly intervalMs: number;
  private readonly now: () => Date;
  private readonly leader: LeaderGate | undefined;

  constructor(
    private readonly store: EventStore,
    private readonly log: Logger,
    metrics: Registry,
    opts: PartitionJobOptions = {},
  ) {
    this.retentionDays = opts.retentionDays ?? 0;
    this.audit = opts.audit;
    this.keepsEvents = opts.keepsEvents;
    this.daysAhead = opts.daysAhead ?? 7;
    this.daysBack = opts.daysBack ?? 1;
    this.intervalMs = opts.intervalMs ?? 3_600_000;
    this.now = opts.now ?? (() => new Date());
    this.leader = opts.leader;
    this.runs = new Counter({
      name: 'vigil_cloud_partition_upkeep_runs_total',
      help: 'Event partition upkeep runs, by result (ok, error)',
      labelNames: ['result'],
      registers: [metrics],
    });
    this.created = new Counter({
      name: 'vigil_cloud_partitions_created_total',
      help: 'Daily event partitions created ahead by the upkeep job',
      registers: [metrics],
    });
    this.dropped = new Counter({
      name: 'vigil_cloud_partitions_dropped_total',
      help: 'Daily event partitions dropped by retention (events.retentionDays)',
      registers: [metrics],
    });
    this.dropSkipped = new Counter({
      name: 'vigil_cloud_partitions_drop_skipped_total',
      help: 'Partition drops skipped because the day holds held events or events a longer policy keeps',
      registers: [metrics],
    });
  }

  /** Runs once now (errors are logged, not thrown), then every interval. */
  async start(): Promise<void> {
    await this.runOnce();
    this.timer = setInterval(() => void this.runOnce(), this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** One pass (joins a pass already running). Never throws. */
  runOnce(): Promise<void> {
    this.running ??= this.pass().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async pass(): Promise<void> {
    if (this.leader && !this.leader.isLeader()) return;
    try {
      const now = this.now();
      const { create, drop } = planPartitions(
        now,
        this.daysAhead,
        this.daysBack,
        await this.store.partitionDays(),
        this.retentionDays,
      );
      for (const day of create) await this.store.ensurePartition(day);
      this.created.inc(create.length);
      for (const day of drop) {
        if (this.keepsEvents && (await this.keepsEvents(day, now))) {
          this.dropSkipped.inc();
          this.log.info({ day }, 'event partition kept: it holds held events or events a policy keeps');
          continue;
        }
        const rows = await this.store.dropPartition(day);
        if (rows === null) continue; // dropped by another process meanwhile
        this.dropped.inc();
        this.log.info({ day, rows }, 'event partition dropped by retention');
        await this.audit
          ?.append({
            tenantId: null,
            actor: 'system',
            actorKind: 'system',
            action: 'events.retention',
            resource: `events:${day}`,
            outcome: 'allowed',
            detail: { day, rows, retention_days: this.retentionDays },
          })
          .catch((err: unknown) => this.log.error({ err, day }, 'events retention: audit entry failed'));
      }
      this.runs.inc({ result: 'ok' });
      if (create.length > 0) this.log.info({ days: create }, 'event partitions created ahead');
    } catch (err) {
      this.runs.inc({ result: 'error' });
      this.log.error({ err }, 'event partition upkeep failed; retrying at the next run');
    }
  }
}
