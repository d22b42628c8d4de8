import { sql, type Kysely, type Selectable } from 'kysely';
import type { ConfigBody } from '../config-ota/body.js';
import { isUniqueViolation } from '../events/insert.js';
import { VigilError } from '../lib/errors.js';
import { ONE_ACTIVE_INDEX } from '../storage/migrations/0034_rollouts_one_active.js';
import type { Database, RolloutDevicesTable, RolloutsTable } from '../storage/tables.js';
import type { RolloutSpec, RolloutState } from './planner.js';

export type RolloutRow = Selectable<RolloutsTable>;
export type RolloutDeviceRow = Selectable<RolloutDevicesTable>;

export interface NewRollout {
  id: string;
  tenantId: string;
  scope: 'tenant' | 'site';
  scopeId: string;
  /** null: each device gets its own effective document when its wave is issued. */
  body: ConfigBody | null;
  spec: RolloutSpec;
  createdBy: string;
  now: Date;
  /** An agent-version rollout (rollouts/agent.ts): the version and channel; absent for configs. */
  agent?: { version: string; channel: string } | undefined;
}

/** Thrown inside the create transaction to roll it back. */
class NoTargetDevice extends Error {}

/**
 * The tenant has an active rollout already: the partial unique index of migration 0034 refused the insert (two
 * creates raced past the API's check, on one API process or two).
 */
export class ActiveRolloutExistsError extends VigilError {
  constructor(
    readonly tenantId: string,
    options?: { cause?: unknown },
  ) {
    super('ROLLOUT_STATE_CONFLICT', `tenant ${tenantId} has an active rollout already`, false, options);
  }
}

/** The states of a rollout still at work on its devices; one per tenant at most (migration 0034). */
export const ACTIVE_STATES: readonly RolloutState[] = [
  'pending',
  'running',
  'paused',
  'aborted',
  'rolling_back',
];

/** Rollouts and their target devices in PostgreSQL (migration 0008). */
export class RolloutStore {
  constructor(private readonly db: Kysely<Database>) {}

  /**
   * Creates the rollout and its target devices (the scope's enrolled, unrevoked devices) in a stable
   * pseudo-random order (md5 of rollout id and device id), in one transaction. Returns the device count.
   */
  async create(r: NewRollout): Promise<number> {
    try {
      return await this.createIn(r);
    } catch (err) {
      if (err instanceof NoTargetDevice) return 0;
      if (isUniqueViolation(err) && (err as { constraint?: unknown }).constraint === ONE_ACTIVE_INDEX)
        throw new ActiveRolloutExistsError(r.tenantId, { cause: err });
      throw err;
    }
  }

  /**
   * Nothing is left behind when no device is in scope (the transaction rolls back): a row committed and deleted
   * afterwards would hold the tenant's one active slot meanwhile and turn a concurrent create away.
   */
  private createIn(r: NewRollout): Promise<number> {
    return this.db.transaction().execute(async (tx) => {
      await tx
        .insertInto('rollouts')
        .values({
          id: r.id,
          tenant_id: r.tenantId,
          scope: r.scope,
          scope_id: r.scopeId,
          body: r.body === null ? null : JSON.stringify(r.body),
          spec: JSON.stringify(r.spec),
          agent_version: r.agent?.version ?? null,
          agent_channel: r.agent?.channel ?? null,
          state: 'pending',
          created_by: r.createdBy,
          created_at: r.now,
          updated_at: r.now,
        })
        .execute();
      const siteFilter = r.scope === 'site' ? sql`and d.site_id = ${r.scopeId}` : sql``;
      const inserted = await sql<{ n: string }>`
        with targets as (
          select d.id, row_number() over (order by md5(${r.id} || d.id)) - 1 as position
          from devices d
          where d.tenant_id = ${r.tenantId} and d.revoked_at is null and d.enrolled_at is not null ${siteFilter}
        ), ins as (
          insert into rollout_devices (rollout_id, tenant_id, device_id, position)
          select ${r.id}, ${r.tenantId}, id, position from targets
          returning 1
        )
        select count(*)::text as n from ins`.execute(tx);
      const n = Number(inserted.rows[0]?.n ?? 0);
      if (n === 0) throw new NoTargetDevice();
      return n;
    });
  }

  get(tenantId: string, id: string): Promise<RolloutRow | undefined> {
    return this.db
      .selectFrom('rollouts')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('id', '=', id)
      .executeTakeFirst();
  }

  list(tenantId: string, limit: number): Promise<RolloutRow[]> {
    return this.db
      .selectFrom('rollouts')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .limit(limit)
      .execute();
  }

  active(): Promise<RolloutRow[]> {
    return this.db
      .selectFrom('rollouts')
      .selectAll()
      .where('state', 'in', [...ACTIVE_STATES])
      .orderBy('created_at')
      .execute();
  }

  devices(rolloutId: string): Promise<RolloutDeviceRow[]> {
    return this.db
      .selectFrom('rollout_devices')
      .selectAll()
      .where('rollout_id', '=', rolloutId)
      .orderBy('position')
      .execute();
  }

  /** Sets the state when it is still `from` (compare and set); false when someone changed it first. */
  async transition(
    id: string,
    from: string,
    to: RolloutState,
    now: Date,
    extra: { wave?: number | undefined; reason?: string | undefined } = {},
  ): Promise<boolean> {
    const terminal = to === 'completed' || to === 'rolled_back';
    const res = await this.db
      .updateTable('rollouts')
      .set({
        state: to,
        updated_at: now,
        ...(extra.wave !== undefined ? { current_wave: extra.wave, wave_started_at: now } : {}),
        ...(to === 'rolling_back' ? { wave_started_at: now } : {}),
        ...(extra.reason !== undefined && (to === 'aborted' || to === 'completed')
          ? { abort_reason: extra.reason }
          : {}),
        ...(terminal ? { finished_at: now } : {}),
      })
      .where('id', '=', id)
      .where('state', '=', from)
      .executeTakeFirst();
    return res.numUpdatedRows > 0n;
  }

  async markIssued(
    rolloutId: string,
    wave: number,
    now: Date,
    rows: Array<{
      deviceId: string;
      previousBody: ConfigBody | null;
      previousVersion: bigint | null;
      issuedVersion: bigint;
      baselineFps: number | null;
      baselineInferenceMs: number | null;
      /** Agent rollouts: the agent version it ran (its rollback target). */
      previousAgentVersion?: string | null | undefined;
    }>,
  ): Promise<void> {
    for (let i = 0; i < rows.length; i += 500) {
      const chunk = rows.slice(i, i + 500);
      await sql`
        update rollout_devices r set wave = ${wave}, issued_at = ${now}, status = 'pending',
          previous_body = v.previous_body::jsonb, previous_version = v.previous_version::bigint,
          issued_version = v.issued_version::bigint, baseline_fps = v.baseline_fps::real,
          baseline_inference_ms = v.baseline_inference_ms::real,
          previous_agent_version = v.previous_agent_version
        from (values ${sql.join(
          chunk.map(
            (r) =>
              sql`(${r.deviceId}, ${r.previousBody === null ? null : JSON.stringify(r.previousBody)}, ${r.previousVersion?.toString() ?? null}, ${r.issuedVersion.toString()}, ${r.baselineFps}, ${r.baselineInferenceMs}, ${r.previousAgentVersion ?? null})`,
          ),
        )}) as v(device_id, previous_body, previous_version, issued_version, baseline_fps, baseline_inference_ms, previous_agent_version)
        where r.rollout_id = ${rolloutId} and r.device_id = v.device_id`.execute(this.db);
    }
  }

  /** The rollback was issued: `version` carries the body of `fromVersion` (its last known good, or what it ran). */
  async markRolledBack(
    rolloutId: string,
    rows: Array<{
      deviceId: string;
      version: bigint;
      fromVersion: bigint;
      source: 'last_known_good' | 'ran_before';
    }>,
  ): Promise<void> {
    for (let i = 0; i < rows.length; i += 500) {
      const chunk = rows.slice(i, i + 500);
      await sql`
        update rollout_devices r set rollback_version = v.version::bigint,
          restored_from_version = v.from_version::bigint, restore_source = v.source, status = 'rolling_back'
        from (values ${sql.join(
          chunk.map(
            (r) => sql`(${r.deviceId}, ${r.version.toString()}, ${r.fromVersion.toString()}, ${r.source})`,
          ),
        )}) as v(device_id, version, from_version, source)
        where r.rollout_id = ${rolloutId} and r.device_id = v.device_id`.execute(this.db);
    }
  }

  /** Devices the rollback could not restore (no known good config): left as they are, reported. */
  async markNotRestored(rolloutId: string, deviceIds: string[], reason: string): Promise<void> {
    if (deviceIds.length === 0) return;
    await this.db
      .updateTable('rollout_devices')
      .set({ status: 'not_restored', reason })
      .where('rollout_id', '=', rolloutId)
      .where('device_id', 'in', deviceIds)
      .execute();
  }

  /** Records the observed status of devices whose status changed (for GET and the CLI). */
  async recordStatus(
    rolloutId: string,
    rows: Array<{ deviceId: string; status: string; reason: string | null }>,
  ): Promise<void> {
    for (let i = 0; i < rows.length; i += 500) {
      const chunk = rows.slice(i, i + 500);
      await sql`
        update rollout_devices r set status = v.status, reason = v.reason
        from (values ${sql.join(chunk.map((r) => sql`(${r.deviceId}, ${r.status}, ${r.reason})`))}) as v(device_id, status, reason)
        where r.rollout_id = ${rolloutId} and r.device_id = v.device_id`.execute(this.db);
    }
  }

  /** Last heartbeat signals of devices. */
  signals(
    tenantId: string,
    deviceIds: string[],
  ): Promise<
    Array<{
      id: string;
      last_health: string | null;
      mean_fps: number | null;
      mean_inference_ms: number | null;
      events_per_minute: number | null;
      last_seen_at: Date | null;
      /** The version the agent ran when it sent the last heartbeat. */
      config_version: string | null;
      /** Its agent version and updater status (agent rollouts, migration 0022). */
      agent_version: string | null;
      update_state: string | null;
      update_current: string | null;
      update_target: string | null;
      update_reason: string | null;
      update_at: Date | null;
    }>
  > {
    if (deviceIds.length === 0) return Promise.resolve([]);
    return this.db
      .selectFrom('devices')
      .select([
        'id',
        'last_health',
        'mean_fps',
        'mean_inference_ms',
        'events_per_minute',
        'last_seen_at',
        'config_version',
        'agent_version',
        'update_state',
        'update_current',
        'update_target',
        'update_reason',
        'update_at',
      ])
      .where('tenant_id', '=', tenantId)
      .where('id', 'in', deviceIds)
      .execute();
  }
}
