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

/**
 * Which devices are registered, for ingest: positive answers are cached for `ttlMs` (a registered device
 * sends many events; a deleted one is refused again within ttl), negative answers are not cached (a device
 * registered a moment ago is accepted at once). The cache is bounded; when full it starts over.
 */
export class DeviceCache {
  private readonly known = new Map<string, number>();

  constructor(
    private readonly db: Kysely<Database>,
    private readonly ttlMs = 60_000,
    private readonly maxEntries = 100_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** The keys (see deviceKey) of the registered devices among `devices`. One query for the cache misses. */
  async registered(devices: readonly DeviceKey[]): Promise<Set<string>> {
    const now = this.now();
    const found = new Set<string>();
    const missing = new Map<string, DeviceKey>();
    for (const d of devices) {
      const key = deviceKey(d.tenantId, d.deviceId);
      if ((this.known.get(key) ?? 0) > now) found.add(key);
      else missing.set(key, d);
    }
    if (missing.size === 0) return found;
    const rows = await this.db
      .selectFrom('devices')
      .select(['tenant_id', 'id'])
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
      this.known.set(key, now + this.ttlMs);
      found.add(key);
    }
    return found;
  }
}
