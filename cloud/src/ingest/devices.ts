import type { Kysely } from 'kysely';
import type { Database } from '../storage/tables.js';

export interface DeviceKey {
  tenantId: string;
  deviceId: string;
}

/** Key for a (tenant, device) pair; newline cannot occur in either (both are subject tokens). */
export function deviceKey(tenantId: string, deviceId: string): string {
  return `${tenantId}\n${deviceId}`;
}

/** What ingest takes from the registry rather than from a payload. */
export interface RegisteredDevice {
  /** The device's site (enrollment binds it); null if the registry has none. */
  siteId: string | null;
}

/**
 * Which devices are registered and where (their site), for ingest: positive answers are cached for `ttlMs` (a registered device
 * sends many events; a deleted one is refused again within ttl), negative answers are not cached (a device
 * registered a moment ago is accepted at once). The cache is bounded; when full it starts over.
 */
export class DeviceCache {
  private readonly known = new Map<string, { until: number; device: RegisteredDevice }>();

  constructor(
    private readonly db: Kysely<Database>,
    private readonly ttlMs = 60_000,
    private readonly maxEntries = 100_000,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The registered devices among `devices`, by key (see deviceKey), with their registry facts. One query for
   * the cache misses.
   */
  async registered(devices: readonly DeviceKey[]): Promise<Map<string, RegisteredDevice>> {
    const now = this.now();
    const found = new Map<string, RegisteredDevice>();
    const missing = new Map<string, DeviceKey>();
    for (const d of devices) {
      const key = deviceKey(d.tenantId, d.deviceId);
      const hit = this.known.get(key);
      if (hit && hit.until > now) found.set(key, hit.device);
      else missing.set(key, d);
    }
    if (missing.size === 0) return found;
    const rows = await this.db
      .selectFrom('devices')
      .select(['tenant_id', 'id', 'site_id'])
      .where((eb) =>
        eb(
          eb.refTuple('tenant_id', 'id'),
          'in',
          [...missing.values()].map((d) => eb.tuple(d.tenantId, d.deviceId)),
        ),
      )
      .execute();
    if (this.known.size + rows.length > this.maxEntries) this.known.clear();
    for (const r of rows) {
      const key = deviceKey(r.tenant_id, r.id);
      const device = { siteId: r.site_id };
      this.known.set(key, { until: now + this.ttlMs, device });
      found.set(key, device);
    }
    return found;
  }
}

/**
 * Why a payload's site disagrees with the registry, or undefined when it agrees. A device names its site in
 * every event and snapshot, but only the registry (enrollment) decides it: a gateway of one site must not
 * file data under another site of its tenant (site-scoped users, filters, webhooks would see it).
 */
export function siteMismatch(
  tenantId: string,
  deviceId: string,
  payloadSiteId: string,
  registered: RegisteredDevice,
): string | undefined {
  const expected = registered.siteId ?? '';
  if (payloadSiteId === expected) return undefined;
  return (
    `payload names site ${JSON.stringify(payloadSiteId.slice(0, 80))}, the registry has ` +
    `${registered.siteId === null ? 'no site' : JSON.stringify(expected)} for ${tenantId}/${deviceId}`
  );
}

/** Why the registry refuses a row (unregistered device, or a site it does not have), or undefined. */
export function registryRefusal(
  registered: ReadonlyMap<string, RegisteredDevice>,
  row: { tenant_id: string; device_id: string; site_id: string },
): { reason: 'unknown_device' | 'site_mismatch'; detail: string } | undefined {
  const { tenant_id: tenantId, device_id: deviceId } = row;
  const device = registered.get(deviceKey(tenantId, deviceId));
  if (!device)
    return { reason: 'unknown_device', detail: `device ${tenantId}/${deviceId} is not registered` };
  const mismatch = siteMismatch(tenantId, deviceId, row.site_id, device);
  return mismatch ? { reason: 'site_mismatch', detail: mismatch } : undefined;
}
