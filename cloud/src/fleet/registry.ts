import { sql, type Kysely, type Selectable } from 'kysely';
import type { CameraSummary, Database, DevicesTable } from '../storage/tables.js';
import type { HeartbeatSignals, HeartbeatUpdate } from './heartbeats.js';

export interface DeviceIdentity {
  tenantId: string;
  siteId: string;
  deviceId: string;
}

/** One heartbeat as recordHeartbeats takes it (see recordHeartbeat for the fields). */
export interface HeartbeatRow {
  tenantId: string;
  deviceId: string;
  seenAt: Date;
  agentVersion: string;
  configVersion: bigint;
  signals?: HeartbeatSignals | undefined;
  cameras?: readonly CameraSummary[] | undefined;
  update?: HeartbeatUpdate | null | undefined;
}

/** The key recordHeartbeats returns registered devices under. */
export const heartbeatKey = (tenantId: string, deviceId: string): string => `${tenantId}\u0000${deviceId}`;

/**
 * The fleet registry's writes. Until enrollment lands, the dev stack and tests register devices here
 * directly; heartbeats from unregistered devices are refused (counted), never auto-created.
 */
export class FleetRegistry {
  constructor(private readonly db: Kysely<Database>) {}

  async registerDevice(id: DeviceIdentity): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
      await tx
        .insertInto('tenants')
        .values({ id: id.tenantId, name: id.tenantId })
        .onConflict((oc) => oc.doNothing())
        .execute();
      await tx
        .insertInto('sites')
        .values({ tenant_id: id.tenantId, id: id.siteId, name: id.siteId })
        .onConflict((oc) => oc.doNothing())
        .execute();
      await tx
        .insertInto('devices')
        .values({ tenant_id: id.tenantId, id: id.deviceId, site_id: id.siteId })
        .onConflict((oc) => oc.doNothing())
        .execute();
    });
  }

  /**
   * Records a batch of heartbeats in one statement (one commit: the database's commit rate, not its CPU, was
   * what bounded heartbeats a second). Per device only its newest heartbeat is written (the `heartbeats` count
   * adds them all), and never over a newer one already stored, whichever batch or process wrote it: last_seen_at
   * never moves backwards. Returns the keys (`tenant\0device`) of the registered devices among them.
   */
  async recordHeartbeats(rows: readonly HeartbeatRow[]): Promise<Set<string>> {
    const newest = new Map<string, { row: HeartbeatRow; n: number }>();
    for (const row of rows) {
      const k = heartbeatKey(row.tenantId, row.deviceId);
      const had = newest.get(k);
      if (!had) newest.set(k, { row, n: 1 });
      else {
        had.n += 1;
        // Ties: the later one in the batch (stream order).
        if (row.seenAt.getTime() >= had.row.seenAt.getTime()) had.row = row;
      }
    }
    if (newest.size === 0) return new Set();
    // Sorted: concurrent batches lock shared rows in the same order (no deadlock between them).
    const list = [...newest.values()].sort((a, b) =>
      a.row.tenantId === b.row.tenantId
        ? a.row.deviceId < b.row.deviceId
          ? -1
          : 1
        : a.row.tenantId < b.row.tenantId
          ? -1
          : 1,
    );
    const values = sql.join(
      list.map(({ row: r, n }) => {
        const s = r.signals;
        const u = r.update;
        return sql`(${r.tenantId}, ${r.deviceId}, ${n}, ${r.seenAt.toISOString()}, ${r.agentVersion},
          ${r.configVersion.toString()}, ${s !== undefined}, ${s?.health ?? null}, ${s?.meanFps ?? null},
          ${s?.meanInferenceMs ?? null}, ${s?.eventsPerMinute ?? null},
          ${r.cameras === undefined ? null : JSON.stringify(r.cameras)}, ${u != null}, ${u?.state ?? null},
          ${u?.current ?? null}, ${u?.previous ?? null}, ${u?.target ?? null}, ${u?.reason ?? null},
          ${u?.at?.toISOString() ?? null})`;
      }),
    );
    // `newer`: this heartbeat is newer than what the row holds (evaluated on the row as locked).
    const newer = sql`(d.last_seen_at is null or d.last_seen_at < v.seen_at::timestamptz)`;
    const keep = (col: string, value: ReturnType<typeof sql>, when = sql`true`) =>
      sql`${sql.id(col)} = case when ${newer} and ${when} then ${value} else d.${sql.id(col)} end`;
    const res = await sql<{ tenant_id: string; id: string }>`
      update devices d set
        heartbeats = d.heartbeats + v.n::int,
        ${sql.join([
          keep('last_seen_at', sql`v.seen_at::timestamptz`),
          keep('agent_version', sql`v.agent_version`),
          keep('config_version', sql`v.config_version::bigint`),
          keep('last_health', sql`v.health`, sql`v.has_signals::boolean`),
          keep('mean_fps', sql`v.mean_fps::real`, sql`v.has_signals::boolean`),
          keep('mean_inference_ms', sql`v.mean_inference_ms::real`, sql`v.has_signals::boolean`),
          keep('events_per_minute', sql`v.events_per_minute::real`, sql`v.has_signals::boolean`),
          keep('last_cameras', sql`v.cameras::jsonb`, sql`v.cameras is not null`),
          keep('update_state', sql`v.update_state`, sql`v.has_update::boolean`),
          keep('update_current', sql`v.update_current`, sql`v.has_update::boolean`),
          keep('update_previous', sql`v.update_previous`, sql`v.has_update::boolean`),
          keep('update_target', sql`v.update_target`, sql`v.has_update::boolean`),
          keep('update_reason', sql`v.update_reason`, sql`v.has_update::boolean`),
          keep('update_at', sql`v.update_at::timestamptz`, sql`v.has_update::boolean`),
        ])}
      from (values ${values}) as v (tenant_id, device_id, n, seen_at, agent_version, config_version, has_signals,
        health, mean_fps, mean_inference_ms, events_per_minute, cameras, has_update, update_state, update_current,
        update_previous, update_target, update_reason, update_at)
      where d.tenant_id = v.tenant_id and d.id = v.device_id
      returning d.tenant_id, d.id`.execute(this.db);
    return new Set(res.rows.map((r) => heartbeatKey(r.tenant_id, r.id)));
  }

  /** Records a heartbeat (seen at the stream's receive time); returns false when the device is not registered. */
  async recordHeartbeat(
    tenantId: string,
    deviceId: string,
    seenAt: Date,
    agentVersion: string,
    configVersion: bigint,
    /** Rollout gate signals (migrations 0008, 0009): health, mean fps, inference latency, event rate. */
    signals?: HeartbeatSignals,
    /** The heartbeat's cameras (migration 0023; the console's fleet page). */
    cameras?: readonly CameraSummary[],
    /** The updater's status (migration 0022); null: the heartbeat carried none (columns left as they are). */
    update?: HeartbeatUpdate | null,
  ): Promise<boolean> {
    // Never backwards: a redelivered (older) heartbeat after a newer one counts, but changes nothing else.
    const newer = sql<boolean>`(last_seen_at is null or last_seen_at < ${seenAt})`;
    const result = await this.db
      .updateTable('devices')
      .set({
        last_seen_at: sql<Date>`case when ${newer} then ${seenAt} else last_seen_at end`,
        agent_version: sql<string>`case when ${newer} then ${agentVersion} else agent_version end`,
        config_version: sql<string>`case when ${newer} then ${configVersion.toString()} else config_version end`,
        heartbeats: sql<string>`heartbeats + 1`,
        ...(signals
          ? {
              last_health: sql<string>`case when ${newer} then ${signals.health} else last_health end`,
              mean_fps: sql<number>`case when ${newer} then ${signals.meanFps}::real else mean_fps end`,
              mean_inference_ms: sql<number>`case when ${newer} then ${signals.meanInferenceMs}::real else mean_inference_ms end`,
              events_per_minute: sql<number>`case when ${newer} then ${signals.eventsPerMinute}::real else events_per_minute end`,
            }
          : {}),
        ...(cameras
          ? {
              last_cameras: sql<string>`case when ${newer} then ${JSON.stringify(cameras)}::jsonb else last_cameras end`,
            }
          : {}),
        ...(update
          ? {
              update_state: sql<string>`case when ${newer} then ${update.state} else update_state end`,
              update_current: sql<string>`case when ${newer} then ${update.current} else update_current end`,
              update_previous: sql<string>`case when ${newer} then ${update.previous} else update_previous end`,
              update_target: sql<string>`case when ${newer} then ${update.target} else update_target end`,
              update_reason: sql<string>`case when ${newer} then ${update.reason} else update_reason end`,
              update_at: sql<Date>`case when ${newer} then ${update.at}::timestamptz else update_at end`,
            }
          : {}),
      })
      .where('tenant_id', '=', tenantId)
      .where('id', '=', deviceId)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  listDevices(tenantId: string): Promise<Selectable<DevicesTable>[]> {
    return this.db
      .selectFrom('devices')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .orderBy('id')
      .execute();
  }
}
