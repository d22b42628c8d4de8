import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { AuditLog } from '../audit/audit-log.js';
import type { CloudConfig } from '../config/schema.js';
import { PartitionJob } from '../events/partitions.js';
import { EventStore } from '../events/store.js';
import type { MediaRepository } from '../media/repository.js';
import type { MediaStore } from '../media/store.js';
import { defaultsFromConfig } from '../privacy/policies.js';
import { partitionKeepsEvents, RetentionJob } from '../privacy/retention-job.js';
import { RolloutExecutor, type RolloutIssuer } from '../rollouts/executor.js';
import { RolloutStore } from '../rollouts/store.js';
import type { Database } from '../storage/tables.js';
import { LeaderLease } from './lease.js';

/** The lease every scheduler process competes for: one leader runs all the scheduled work. */
export const SCHEDULER_LEASE = 'scheduler';

export interface SchedulerRole {
  readonly lease: LeaderLease;
  stop(): Promise<void>;
}

/**
 * Starts the leader lease, waits for its first attempt (a lone process leads before start-up ends, so partitions
 * exist before ingest consumes), and the work that must run once in the whole deployment, each behind the lease:
 * event partition upkeep, retention of events and media by policy, the rollout executor. (The release timestamp refresh is
 * started by startReleases with the lease as its gate.) A process that becomes leader later runs the partition
 * upkeep at once; the others run on their own short periods anyway. Stop order: jobs first, then the lease is
 * released so that a standby takes over at its next renewal tick.
 */
export async function startScheduler(deps: {
  db: Kysely<Database>;
  config: Readonly<Pick<CloudConfig, 'scheduler' | 'events' | 'media'>>;
  audit: AuditLog;
  media: { repository: MediaRepository; store: MediaStore | undefined };
  issuer: RolloutIssuer;
  log: Logger;
  metrics: Registry;
  now?: (() => Date) | undefined;
  /** Called when leadership changes (after the jobs were told). */
  onChange?: (leader: boolean) => void;
}): Promise<SchedulerRole> {
  const log = deps.log.child({ component: 'scheduler' });
  const now = deps.now ?? (() => new Date());
  // The partition job asks the lease, and the lease tells the job when this process becomes leader.
  const ref: { lease?: LeaderLease } = {};
  const retentionDefaults = defaultsFromConfig(deps.config);
  const partitions = new PartitionJob(new EventStore(deps.db), log, deps.metrics, {
    now,
    retentionDays: deps.config.events.retentionDays,
    audit: deps.audit,
    // Legal holds and longer retention policies keep a day's partition (privacy/retention-job.ts).
    keepsEvents: (day, at) => partitionKeepsEvents(deps.db, retentionDefaults, day, at),
    leader: {
      isLeader: () => ref.lease?.isLeader() ?? false,
      fencingToken: () => ref.lease?.fencingToken(),
    },
  });
  const lease = new LeaderLease({
    db: deps.db,
    name: SCHEDULER_LEASE,
    ttlMs: deps.config.scheduler.leaseTtlSeconds * 1000,
    renewMs: deps.config.scheduler.renewIntervalSeconds * 1000,
    log,
    metrics: deps.metrics,
    onChange: (leader) => {
      if (leader) void partitions.runOnce();
      deps.onChange?.(leader);
    },
  });
  ref.lease = lease;
  await lease.start();
  await partitions.start();

  const rollouts = new RolloutExecutor({
    db: deps.db,
    store: new RolloutStore(deps.db),
    issuer: deps.issuer,
    audit: deps.audit,
    log,
    metrics: deps.metrics,
    now: deps.now,
    leader: lease,
  });
  rollouts.start();

  // Retention (privacy/retention-job.ts): event metadata and media kept past their policy (per tenant, site,
  // camera and data class; the config defaults otherwise), by age and by size budget, skipping held items.
  const retention = new RetentionJob({
    db: deps.db,
    store: deps.media.store,
    audit: deps.audit,
    log,
    metrics: deps.metrics,
    defaults: retentionDefaults,
    intervalMs: deps.config.media.retentionIntervalSeconds * 1000,
    now: deps.now,
    leader: lease,
  });
  retention.start();
  log.info({ holder: lease.holder, leader: lease.isLeader() }, 'scheduler started');

  return {
    lease,
    stop: async () => {
      await retention.stop();
      await rollouts.stop();
      await partitions.stop();
      await lease.stop();
    },
  };
}
