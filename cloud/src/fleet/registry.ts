import { sql, type Kysely, type Selectable } from 'kysely';
import type { CameraSummary, Database, DevicesTable } from '../storage/tables.js';
import type { HeartbeatSignals, HeartbeatUpdate } from './heartbeats.js';

export interface DeviceIdentity {
  tenantId: string;
  siteId: string;
  deviceId: string;
}

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
