/**
 * Retention policies per tenant, site and camera and data class (table retention_policies, migration 0025).
 *
 * A policy sets an age limit (hours), a size budget (bytes, oldest deleted first) or both. Each of the two is
 * resolved on its own from the most specific scope that sets it: camera (a device's camera) > site > tenant >
 * the config default (`events.retentionDays` for event metadata, `media.retentionDays` for both media classes;
 * no default size budget). So a camera may keep its footage shorter or longer than its site, and a tenant-wide
 * budget still caps what the camera's age limit lets through. The same resolution runs in SQL (privacy/sql.ts).
 *
 * Data class `audit` has no policies: the audit log is one hash chain shared by every tenant (audit/audit-log.ts,
 * migration 0005), append-only under a trigger. Deleting one tenant's (or site's) entries out of it would break
 * the chain for every entry after them, and the only removal the chain survives is cutting a prefix of the
 * whole log by the maintenance procedure of migration 0005. Audit entries hold ids and reasons, not images.
 */
import type { Kysely } from 'kysely';
import type { AuditLog } from '../audit/audit-log.js';
import { VigilError } from '../lib/errors.js';
import type { AuditActorKind, Database } from '../storage/tables.js';
import { requestEdgeSync } from './edge-sync-request.js';

export const STORED_DATA_CLASSES = ['event_metadata', 'redacted_media', 'personal_media'] as const;
export type StoredDataClass = (typeof STORED_DATA_CLASSES)[number];
export const DATA_CLASSES = [...STORED_DATA_CLASSES, 'audit'] as const;
export type RetentionDataClass = (typeof DATA_CLASSES)[number];

export type PolicyScope = 'tenant' | 'site' | 'camera';

/** Which policy: scope and its ids ('' where the scope has none). */
export interface PolicyKey {
  scope: PolicyScope;
  siteId: string;
  deviceId: string;
  cameraId: string;
  dataClass: StoredDataClass;
}

export interface RetentionPolicy extends PolicyKey {
  maxAgeHours: number | null;
  maxBytes: number | null;
  updatedBy: string;
  updatedAt: Date;
}

/** Config defaults per class: age limit in hours (null: none). */
export type RetentionDefaults = Readonly<Record<StoredDataClass, number | null>>;

export function defaultsFromConfig(c: {
  events: { retentionDays: number };
  media: { retentionDays: number };
}): RetentionDefaults {
  const h = (days: number): number | null => (days > 0 ? days * 24 : null);
  return {
    event_metadata: h(c.events.retentionDays),
    redacted_media: h(c.media.retentionDays),
    personal_media: h(c.media.retentionDays),
  };
}

/** Most policies one tenant may have (every retention batch joins them: keep them few). */
export const MAX_POLICIES_PER_TENANT = 1000;

export class RetentionPolicyError extends VigilError {
  constructor(code: 'RETENTION_POLICY_LIMIT' | 'NOT_FOUND', message: string) {
    super(code, message, false);
  }
}

/** Where an item lives, for resolution. */
export interface ItemPlace {
  siteId: string;
  deviceId: string;
  cameraId: string;
}

export interface ResolvedPolicy {
  maxAgeHours: number | null;
  ageScope: PolicyScope | 'default';
  maxBytes: number | null;
  sizeScope: PolicyScope | null;
}

/** Pure: the policy that governs an item of `dataClass` at `place` (`policies`: one tenant's). */
export function resolvePolicy(
  policies: readonly RetentionPolicy[],
  dataClass: StoredDataClass,
  place: ItemPlace,
  defaults: RetentionDefaults,
): ResolvedPolicy {
  const mine = policies.filter((p) => p.dataClass === dataClass);
  const levels: Array<[PolicyScope, RetentionPolicy | undefined]> = [
    [
      'camera',
      mine.find(
        (p) => p.scope === 'camera' && p.deviceId === place.deviceId && p.cameraId === place.cameraId,
      ),
    ],
    ['site', mine.find((p) => p.scope === 'site' && p.siteId === place.siteId)],
    ['tenant', mine.find((p) => p.scope === 'tenant')],
  ];
  const age = levels.find(([, p]) => p?.maxAgeHours != null);
  const size = levels.find(([, p]) => p?.maxBytes != null);
  return {
    maxAgeHours: age ? age[1]!.maxAgeHours : defaults[dataClass],
    ageScope: age ? age[0] : 'default',
    maxBytes: size ? size[1]!.maxBytes : null,
    sizeScope: size ? size[0] : null,
  };
}

export interface PolicyActor {
  actor: string;
  actorKind: AuditActorKind;
}

const keyDetail = (k: PolicyKey) => ({
  scope: k.scope,
  site_id: k.siteId,
  device_id: k.deviceId,
  camera_id: k.cameraId,
  data_class: k.dataClass,
});

/** The policies of each tenant in PostgreSQL; every change is audited in its transaction. */
export class RetentionPolicies {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly audit: AuditLog,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async list(tenantId: string): Promise<RetentionPolicy[]> {
    const rows = await this.db
      .selectFrom('retention_policies')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .orderBy('data_class')
      .orderBy('scope')
      .orderBy('site_id')
      .orderBy('device_id')
      .orderBy('camera_id')
      .limit(MAX_POLICIES_PER_TENANT)
      .execute();
    return rows.map((r) => ({
      scope: r.scope,
      siteId: r.site_id,
      deviceId: r.device_id,
      cameraId: r.camera_id,
      dataClass: r.data_class,
      maxAgeHours: r.max_age_hours,
      maxBytes: r.max_bytes === null ? null : Number(r.max_bytes),
      updatedBy: r.updated_by,
      updatedAt: r.updated_at,
    }));
  }

  /** Creates or replaces the policy at `key` (`retention_policy.set`, with what it replaced). */
  async set(
    tenantId: string,
    key: PolicyKey,
    limits: { maxAgeHours: number | null; maxBytes: number | null },
    by: PolicyActor,
  ): Promise<RetentionPolicy> {
    const at = this.now();
    await this.db.transaction().execute(async (tx) => {
      const match = tx
        .selectFrom('retention_policies')
        .selectAll()
        .where('tenant_id', '=', tenantId)
        .where('scope', '=', key.scope)
        .where('site_id', '=', key.siteId)
        .where('device_id', '=', key.deviceId)
        .where('camera_id', '=', key.cameraId)
        .where('data_class', '=', key.dataClass);
      const before = await match.forUpdate().executeTakeFirst();
      if (!before) {
        const { n } = await tx
          .selectFrom('retention_policies')
          .select((eb) => eb.fn.countAll<string>().as('n'))
          .where('tenant_id', '=', tenantId)
          .executeTakeFirstOrThrow();
        if (Number(n) >= MAX_POLICIES_PER_TENANT)
          throw new RetentionPolicyError(
            'RETENTION_POLICY_LIMIT',
            `at most ${MAX_POLICIES_PER_TENANT} retention policies per tenant`,
          );
      }
      const values = {
        max_age_hours: limits.maxAgeHours,
        max_bytes: limits.maxBytes,
        updated_by: by.actor,
        updated_at: at,
      };
      await tx
        .insertInto('retention_policies')
        .values({
          tenant_id: tenantId,
          scope: key.scope,
          site_id: key.siteId,
          device_id: key.deviceId,
          camera_id: key.cameraId,
          data_class: key.dataClass,
          ...values,
        })
        .onConflict((oc) =>
          oc
            .columns(['tenant_id', 'data_class', 'scope', 'site_id', 'device_id', 'camera_id'])
            .doUpdateSet(values),
        )
        .execute();
      // A media policy caps the devices' edge limits: their configs are re-issued (privacy/edge-sync.ts).
      if (key.dataClass !== 'event_metadata') await requestEdgeSync(tx, tenantId, by.actor, at);
      await this.audit.append(
        {
          tenantId,
          actor: by.actor,
          actorKind: by.actorKind,
          action: 'retention_policy.set',
          resource: `retention_policy:${tenantId}/${key.dataClass}/${key.scope}`,
          outcome: 'allowed',
          detail: {
            ...keyDetail(key),
            max_age_hours: limits.maxAgeHours,
            max_bytes: limits.maxBytes,
            before: before
              ? {
                  max_age_hours: before.max_age_hours,
                  max_bytes: before.max_bytes === null ? null : Number(before.max_bytes),
                }
              : null,
          },
        },
        tx,
      );
    });
    return { ...key, ...limits, updatedBy: by.actor, updatedAt: at };
  }

  /** Deletes the policy at `key` (the next less specific scope governs again); NOT_FOUND when there is none. */
  async delete(tenantId: string, key: PolicyKey, by: PolicyActor): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
      const gone = await tx
        .deleteFrom('retention_policies')
        .where('tenant_id', '=', tenantId)
        .where('scope', '=', key.scope)
        .where('site_id', '=', key.siteId)
        .where('device_id', '=', key.deviceId)
        .where('camera_id', '=', key.cameraId)
        .where('data_class', '=', key.dataClass)
        .returning(['max_age_hours', 'max_bytes'])
        .executeTakeFirst();
      if (!gone) throw new RetentionPolicyError('NOT_FOUND', 'no such retention policy');
      if (key.dataClass !== 'event_metadata') await requestEdgeSync(tx, tenantId, by.actor, this.now());
      await this.audit.append(
        {
          tenantId,
          actor: by.actor,
          actorKind: by.actorKind,
          action: 'retention_policy.delete',
          resource: `retention_policy:${tenantId}/${key.dataClass}/${key.scope}`,
          outcome: 'allowed',
          detail: {
            ...keyDetail(key),
            before: {
              max_age_hours: gone.max_age_hours,
              max_bytes: gone.max_bytes === null ? null : Number(gone.max_bytes),
            },
          },
        },
        tx,
      );
    });
  }
}
