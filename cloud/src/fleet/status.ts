import { sql, type Kysely } from 'kysely';
import { Gauge, type Registry } from 'prom-client';
import type { Database } from '../storage/tables.js';

export const DEVICE_STATUSES = ['online', 'offline', 'never', 'revoked'] as const;

/** A device's connectivity as the registry sees it; a revoked device is `revoked` whatever it last sent. */
export type DeviceStatus = (typeof DEVICE_STATUSES)[number];

/**
 * Status is derived at read time from last_seen_at and the cloud clock, never stored: online when the last
 * heartbeat is newer than `now - offlineAfterSeconds`, offline when older, never when the device has not
 * sent one. Nothing has to run for a device to go offline (no sweeper job, no write when it goes quiet),
 * and every reader agrees by construction. last_seen_at is when nats-server stored the heartbeat in
 * TELEMETRY, capped at the cloud clock (fleet/heartbeats.ts): device clock skew plays no part, and a
 * heartbeat processed late (after a cloud outage) counts from when it arrived, not from when it was
 * processed. The bound: a device that stops is offline at most offlineAfterSeconds after it stopped; one
 * that (re)starts is online once its first heartbeat is processed, so any change
 * shows within offlineAfterSeconds plus one heartbeat period in the worst case. offlineAfterSeconds must
 * exceed the agents' heartbeat period (with margin for a lost one), or healthy devices flap.
 */
export function statusCutoff(now: Date, offlineAfterSeconds: number): Date {
  return new Date(now.getTime() - offlineAfterSeconds * 1000);
}

/** The SQL form of the rule above (`cutoff` from {@link statusCutoff}). */
export function statusSql(cutoff: Date) {
  return sql<DeviceStatus>`case when revoked_at is not null then 'revoked' when last_seen_at is null then 'never' when last_seen_at > ${cutoff} then 'online' else 'offline' end`;
}

/** How often the gauge below may recount, at most. */
export const DEVICE_GAUGE_REFRESH_MS = 10_000;

/**
 * `vigil_cloud_devices{status}`: devices by status over all tenants (per tenant would be too many label
 * values). Counted on scrape, at most once every {@link DEVICE_GAUGE_REFRESH_MS}; scrapes in between (and
 * concurrent ones) get the last count.
 */
export function registerDeviceGauge(
  db: Kysely<Database>,
  metrics: Registry,
  offlineAfterSeconds: number,
  now: () => Date = () => new Date(),
): void {
  let counts: Record<DeviceStatus, number> | undefined;
  let countedAt = -Infinity;
  let inFlight: Promise<Record<DeviceStatus, number>> | undefined;

  const count = async (at: Date): Promise<Record<DeviceStatus, number>> => {
    const rows = await db
      .selectFrom('devices')
      .select([
        statusSql(statusCutoff(at, offlineAfterSeconds)).as('status'),
        (eb) => eb.fn.countAll<string>().as('n'),
      ])
      .groupBy('status')
      .execute();
    const out: Record<DeviceStatus, number> = { online: 0, offline: 0, never: 0, revoked: 0 };
    for (const r of rows) out[r.status] = Number(r.n);
    return out;
  };

  new Gauge({
    name: 'vigil_cloud_devices',
    help: `Registered devices by status (online, offline, never, revoked), all tenants; recounted at most every ${DEVICE_GAUGE_REFRESH_MS / 1000} s`,
    labelNames: ['status'],
    registers: [metrics],
    async collect() {
      const at = now();
      if (counts === undefined || at.getTime() - countedAt >= DEVICE_GAUGE_REFRESH_MS) {
        inFlight ??= count(at).finally(() => {
          inFlight = undefined;
        });
        try {
          counts = await inFlight;
          countedAt = at.getTime();
        } catch {
          // PostgreSQL unavailable: keep the last counts (or none) rather than fail the whole scrape;
          // the next scrape tries again. /readyz reports the database.
        }
      }
      if (counts !== undefined) for (const s of DEVICE_STATUSES) this.set({ status: s }, counts[s]);
    },
  });
}
