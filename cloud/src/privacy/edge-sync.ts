import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { AuditLog } from '../audit/audit-log.js';
import type { ConfigBody } from '../config-ota/body.js';
import type { IssueInput } from '../config-ota/issuer.js';
import { VigilError } from '../lib/errors.js';
import type { LeaderGate } from '../scheduler/lease.js';
import { drainOpen, PeriodicJob, type RunContext } from '../scheduler/periodic.js';
import { whileHoldingLock } from '../storage/leader-lock.js';
import type { ConfigKind, Database } from '../storage/tables.js';
import { applyEdgeLimits, edgeLimitsFor } from './edge.js';
import { RetentionPolicies, type RetentionDefaults, type RetentionPolicy } from './policies.js';

export { requestEdgeSync } from './edge-sync-request.js';

/*
 * A retention policy change reaches the devices (issue 19): the edge media limits are capped by the policies when
 * a config is issued (privacy/edge.ts), so a change that moves a device's limits must issue it a new config, or
 * the device would hold snapshots past the new policy until its next rollout.
 *
 * A policy create/update/delete of a media class asks for a sync of its tenant in its own transaction
 * (`requestEdgeSync`). This job (on the scheduler's leader, through the shared runner) walks the tenant's devices
 * in id order, in batches: for each device's newest issued config it recomputes the capped limits from the body as
 * it was asked for (device_configs.requested_retention) and the policies now, and when they differ from what the
 * device was signed with, issues the same body again through ConfigIssuer.issue (a new version, signed, pushed on
 * the cfg subject, and answered to the device's polls: the ordinary config-OTA path). The re-issue keeps the
 * version's rollout id and kind, so a rollout's version stays on probation (config-ota known-good rules).
 *
 * Bounded and resumable: `batchSize` devices per batch, the cursor and counters on the sync row
 * (edge_retention_syncs) move after each batch; a crash or a lease change resumes after the last batch that
 * committed (a batch repeated after a crash re-checks its devices and issues only to those still out of date).
 * A policy change during a pass restarts it (the generation), so every device is judged by the newest policies.
 * Audited: each issue is a `config.issue` (actor `system:retention`, reason `retention_policy_change`) and the
 * end of a pass a `retention.edge_sync` with the counts. Legal holds and erasure requests are not touched.
 */

export const EDGE_SYNC_ACTOR = 'system:retention';
/** The advisory lock of direct use without a lease ('vigil-edge-sync'). */
export const EDGE_SYNC_LOCK = BigInt('7601290244168491366');

/** What the job needs of config-ota's ConfigIssuer. */
export interface EdgeSyncIssuer {
  issue(input: IssueInput): Promise<Array<{ deviceId: string; version: bigint }>>;
}

/** The newest issued config of one device, as the plan reads it. */
export interface LatestConfig {
  deviceId: string;
  siteId: string;
  body: ConfigBody;
  /** The body's retention section as asked for, before the cap (null: none). */
  requestedRetention: ConfigBody['retention'] | null;
  rolloutId: string | null;
  kind: ConfigKind;
}

export interface Reissue {
  deviceId: string;
  /** The body to issue (as asked for: ConfigIssuer caps it again with the policies). */
  body: ConfigBody;
  rolloutId: string | null;
  kind: ConfigKind;
  /** The limits the device runs and the ones it gets (for the log and the tests). */
  from: { edgeMediaMaxHours?: number | undefined; edgeMediaMaxBytes?: number | undefined };
  to: { edgeMediaMaxHours?: number | undefined; edgeMediaMaxBytes?: number | undefined };
}

const edgeOf = (r: ConfigBody['retention'] | undefined) => ({
  edgeMediaMaxHours: r?.edgeMediaMaxHours,
  edgeMediaMaxBytes: r?.edgeMediaMaxBytes,
});

/** Pure: the devices whose signed edge limits differ from what the policies ask now, and what to issue them. */
export function planEdgeReissue(
  latest: readonly LatestConfig[],
  policies: readonly RetentionPolicy[],
  defaults: RetentionDefaults,
): Reissue[] {
  const out: Reissue[] = [];
  for (const c of latest) {
    const { retention: _capped, ...rest } = c.body;
    void _capped;
    const asked: ConfigBody =
      c.requestedRetention == null ? rest : { ...rest, retention: c.requestedRetention };
    const limits = edgeLimitsFor(
      policies,
      defaults,
      { siteId: c.siteId, deviceId: c.deviceId },
      (c.body.cameras ?? []).map((cam) => cam.id),
    );
    const from = edgeOf(c.body.retention);
    const to = edgeOf(applyEdgeLimits(asked, limits).retention);
    if (from.edgeMediaMaxHours === to.edgeMediaMaxHours && from.edgeMediaMaxBytes === to.edgeMediaMaxBytes)
      continue;
    out.push({ deviceId: c.deviceId, body: asked, rolloutId: c.rolloutId, kind: c.kind, from, to });
  }
  return out;
}

export interface EdgeSyncOptions {
  db: Kysely<Database>;
  issuer: EdgeSyncIssuer;
  audit: AuditLog;
  log: Logger;
  metrics: Registry;
  defaults: RetentionDefaults;
  /** Devices per batch (default 200). */
  batchSize?: number | undefined;
  pollIntervalMs: number;
  leader?: LeaderGate | undefined;
  now?: (() => Date) | undefined;
}

export interface EdgeBatchResult {
  checked: number;
  reissued: number;
  failed: number;
  /** False when the tenant's pass is done (or there was none). */
  more: boolean;
}

export class EdgeRetentionSync {
  private readonly job: PeriodicJob<void>;
  private readonly log: Logger;
  private readonly now: () => Date;
  private readonly policies: RetentionPolicies;
  private readonly devices: Counter<'result'>;

  constructor(private readonly opts: EdgeSyncOptions) {
    this.log = opts.log.child({ component: 'edge-retention' });
    this.now = opts.now ?? (() => new Date());
    this.policies = new RetentionPolicies(opts.db, opts.audit);
    const name = 'vigil_cloud_retention_edge_devices_total';
    this.devices =
      (opts.metrics.getSingleMetric(name) as Counter<'result'> | undefined) ??
      new Counter({
        name,
        help: 'Devices checked after a retention policy change, by result (current, reissued, failed)',
        labelNames: ['result'],
        registers: [opts.metrics],
      });
    this.job = new PeriodicJob(
      {
        name: 'edge_retention',
        intervalMs: opts.pollIntervalMs,
        leader: opts.leader,
        exclusive: (work) => whileHoldingLock(opts.db, EDGE_SYNC_LOCK, work),
        log: this.log,
        metrics: opts.metrics,
      },
      (ctx) => this.runOpen(ctx),
    );
  }

  start(): void {
    this.job.start();
  }

  /** A policy changed: look now rather than at the next interval. */
  nudge(): void {
    this.job.nudge();
  }

  async stop(): Promise<void> {
    await this.job.stop();
  }

  /** Runs every pending pass to the end if this process leads (or gets the lock). */
  async runAsLeader(): Promise<boolean> {
    return (await this.job.runOnce()).ran;
  }

  private runOpen(ctx: RunContext): Promise<void> {
    return drainOpen(
      ctx,
      () =>
        this.opts.db
          .selectFrom('edge_retention_syncs')
          .select('tenant_id')
          .where('state', '<>', 'done')
          .orderBy('requested_at')
          .limit(20)
          .execute(),
      (o) => this.runBatch(o.tenant_id),
    );
  }

  /** One batch of one tenant's pass (exported for tests: callers hold no lock, so use one runner). */
  async runBatch(tenantId: string): Promise<EdgeBatchResult> {
    const db = this.opts.db;
    const sync = await db
      .selectFrom('edge_retention_syncs')
      .select(['generation', 'cursor_device', 'state'])
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst();
    if (!sync || sync.state === 'done') return { checked: 0, reissued: 0, failed: 0, more: false };
    const generation = sync.generation;
    // Read after the generation: a change committed later bumps it, and this batch's cursor move is ignored.
    const policies = await this.policies.list(tenantId);
    const devices = await db
      .selectFrom('devices')
      .select(['id', 'site_id'])
      .where('tenant_id', '=', tenantId)
      .where('revoked_at', 'is', null)
      .$if(sync.cursor_device !== null, (q) => q.where('id', '>', sync.cursor_device!))
      .orderBy('id')
      .limit(this.opts.batchSize ?? 200)
      .execute();
    const now = this.now();
    if (devices.length === 0) return this.finish(tenantId, generation, now);

    const ids = devices.map((d) => d.id);
    const site = new Map(devices.map((d) => [d.id, d.site_id ?? '']));
    const rows = await db
      .selectFrom('device_configs')
      .select(['device_id', 'body', 'requested_retention', 'rollout_id', 'kind'])
      .distinctOn('device_id')
      .where('tenant_id', '=', tenantId)
      .where('device_id', 'in', ids)
      .orderBy('device_id')
      .orderBy('version', 'desc')
      .execute();
    const plan = planEdgeReissue(
      rows.map((r) => ({
        deviceId: r.device_id,
        siteId: site.get(r.device_id) ?? '',
        body: r.body,
        requestedRetention: r.requested_retention,
        rolloutId: r.rollout_id,
        kind: r.kind,
      })),
      policies,
      this.opts.defaults,
    );
    // One issue per distinct body, rollout and kind (a fleet on one rollout's body: one call per batch).
    const groups = new Map<string, { r: Reissue; ids: string[] }>();
    for (const r of plan) {
      const key = JSON.stringify([r.body, r.rolloutId, r.kind]);
      const g = groups.get(key) ?? { r, ids: [] };
      g.ids.push(r.deviceId);
      groups.set(key, g);
    }
    let reissued = 0;
    let failed = 0;
    for (const { r, ids: group } of groups.values()) {
      try {
        const out = await this.opts.issuer.issue({
          tenantId,
          deviceIds: group,
          body: r.body,
          rolloutId: r.rolloutId ?? undefined,
          kind: r.kind,
          actor: EDGE_SYNC_ACTOR,
          reason: 'retention_policy_change',
        });
        reissued += out.length;
      } catch (err) {
        // A transient failure (the database, the signer): the batch is retried from its cursor, nothing skipped.
        if (err instanceof VigilError && !err.retryable) {
          failed += group.length;
          this.log.error({ err, tenantId, devices: group.slice(0, 10) }, 'edge retention: re-issue refused');
        } else throw err;
      }
    }
    const last = ids[ids.length - 1]!;
    const moved = await db
      .updateTable('edge_retention_syncs')
      .set((eb) => ({
        state: 'running',
        cursor_device: last,
        devices_checked: eb('devices_checked', '+', devices.length),
        devices_reissued: eb('devices_reissued', '+', reissued),
        devices_failed: eb('devices_failed', '+', failed),
        batches: eb('batches', '+', 1),
        started_at: eb.fn.coalesce('started_at', eb.val(now)),
        updated_at: now,
      }))
      .where('tenant_id', '=', tenantId)
      .where('generation', '=', generation)
      .executeTakeFirst();
    if (Number(moved.numUpdatedRows) === 0)
      this.log.info({ tenantId }, 'edge retention: policies changed during the batch; the pass restarts');
    this.devices.inc({ result: 'current' }, devices.length - reissued - failed);
    if (reissued) this.devices.inc({ result: 'reissued' }, reissued);
    if (failed) this.devices.inc({ result: 'failed' }, failed);
    if (plan.length > 0)
      this.log.info(
        { tenantId, reissued, failed, first: plan.slice(0, 3).map((p) => ({ d: p.deviceId, ...p.to })) },
        'edge retention: configs re-issued after a policy change',
      );
    return { checked: devices.length, reissued, failed, more: true };
  }

  private async finish(tenantId: string, generation: string, now: Date): Promise<EdgeBatchResult> {
    await this.opts.db.transaction().execute(async (tx) => {
      const done = await tx
        .updateTable('edge_retention_syncs')
        .set({ state: 'done', finished_at: now, updated_at: now })
        .where('tenant_id', '=', tenantId)
        .where('generation', '=', generation)
        .returningAll()
        .executeTakeFirst();
      if (!done) return; // a newer change: its pass runs next
      await this.opts.audit.append(
        {
          tenantId,
          actor: EDGE_SYNC_ACTOR,
          actorKind: 'system',
          action: 'retention.edge_sync',
          resource: `retention:${tenantId}`,
          outcome: done.devices_failed > 0 ? 'failed' : 'allowed',
          detail: {
            generation: Number(done.generation),
            devices_checked: done.devices_checked,
            devices_reissued: done.devices_reissued,
            devices_failed: done.devices_failed,
            batches: done.batches,
          },
        },
        tx,
      );
    });
    return { checked: 0, reissued: 0, failed: 0, more: false };
  }
}
