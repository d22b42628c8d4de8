/**
 * Retention at the edge: the agent holds snapshots it has not delivered yet (its outbox), and drops the images by
 * age and size budget (`retention.edgeMediaMaxHours`, `edgeMediaMaxBytes` of the signed DeviceConfig; the events
 * stay). When the cloud issues a config, these limits are capped by the retention policies that cover the device
 * (privacy/policies.ts), so a device never holds a snapshot longer than the cloud may keep it, offline included.
 *
 * Per device: the age limit is the shortest media age limit (redacted or personal) of any of its cameras (the
 * agent has one limit for all of them); the size budget the smallest media budget that spans any of them. Within
 * the config schema's range (1 h .. 90 d, >= 100,000 bytes): a policy longer than 90 days leaves the limit as the
 * config sets it, a smaller budget is raised to the schema's floor.
 */
import type { Kysely } from 'kysely';
import type { ConfigBody } from '../config-ota/body.js';
import type { Database } from '../storage/tables.js';
import {
  resolvePolicy,
  RetentionPolicies,
  type RetentionDefaults,
  type RetentionPolicy,
} from './policies.js';
import type { AuditLog } from '../audit/audit-log.js';

export interface EdgeLimits {
  maxHours?: number | undefined;
  maxBytes?: number | undefined;
}

const EDGE_MAX_HOURS = 24 * 90;
const EDGE_MIN_BYTES = 100_000;

/** Pure: the edge limits the policies ask of a device at `siteId` with these cameras. */
export function edgeLimitsFor(
  policies: readonly RetentionPolicy[],
  defaults: RetentionDefaults,
  place: { siteId: string; deviceId: string },
  cameraIds: readonly string[],
): EdgeLimits {
  let hours: number | null = null;
  let bytes: number | null = null;
  // A device whose config names no camera yet is governed by its site and tenant.
  for (const cameraId of cameraIds.length > 0 ? cameraIds : ['']) {
    for (const c of ['redacted_media', 'personal_media'] as const) {
      const r = resolvePolicy(policies, c, { ...place, cameraId }, defaults);
      if (r.maxAgeHours !== null) hours = hours === null ? r.maxAgeHours : Math.min(hours, r.maxAgeHours);
      if (r.maxBytes !== null) bytes = bytes === null ? r.maxBytes : Math.min(bytes, r.maxBytes);
    }
  }
  return {
    ...(hours !== null && hours <= EDGE_MAX_HOURS ? { maxHours: Math.max(1, hours) } : {}),
    ...(bytes !== null ? { maxBytes: Math.max(EDGE_MIN_BYTES, bytes) } : {}),
  };
}

/** Pure: `body` with its edge retention capped by `limits` (the stricter of the two wins). */
export function applyEdgeLimits(body: ConfigBody, limits: EdgeLimits | undefined): ConfigBody {
  if (!limits || (limits.maxHours === undefined && limits.maxBytes === undefined)) return body;
  const r = body.retention ?? {};
  const min = (a: number | undefined, b: number | undefined): number | undefined =>
    a === undefined ? b : b === undefined ? a : Math.min(a, b);
  const hours = min(r.edgeMediaMaxHours, limits.maxHours);
  const bytes = min(r.edgeMediaMaxBytes, limits.maxBytes);
  return {
    ...body,
    retention: {
      ...r,
      ...(hours !== undefined ? { edgeMediaMaxHours: hours } : {}),
      ...(bytes !== undefined ? { edgeMediaMaxBytes: bytes } : {}),
    },
  };
}

/** What ConfigIssuer calls before signing: the limits of each device of one tenant. */
export type EdgeRetention = (
  tenantId: string,
  deviceIds: readonly string[],
  cameraIds: readonly string[],
) => Promise<Map<string, EdgeLimits>>;

export function edgeRetention(
  db: Kysely<Database>,
  audit: AuditLog,
  defaults: RetentionDefaults,
): EdgeRetention {
  const policies = new RetentionPolicies(db, audit);
  return async (tenantId, deviceIds, cameraIds) => {
    const all = await policies.list(tenantId);
    const devices =
      deviceIds.length === 0
        ? []
        : await db
            .selectFrom('devices')
            .select(['id', 'site_id'])
            .where('tenant_id', '=', tenantId)
            .where('id', 'in', [...deviceIds])
            .execute();
    return new Map(
      devices.map((d) => [
        d.id,
        edgeLimitsFor(all, defaults, { siteId: d.site_id ?? '', deviceId: d.id }, cameraIds),
      ]),
    );
  };
}
