/**
 * The SQL that retention, its partition guard and `retention check` share: every stored item of a data class
 * with the policy that governs it, resolved in PostgreSQL the way privacy/policies.ts resolves it in code.
 *
 * Resolution: age limit and size budget each come from the most specific scope that sets them (camera > site >
 * tenant), the age limit else from the config default (null: none). A size budget spans the items of its scope
 * that no more specific budget governs, and counts held items (they take room) though retention never deletes
 * them. An event's size is its stored payload; a media object's, its bytes.
 */
import { sql, type RawBuilder } from 'kysely';
import { eventHeldSql, mediaHeldSql } from './holds.js';
import type { StoredDataClass } from './policies.js';

export interface ResolvedRowsOptions {
  dataClass: StoredDataClass;
  /** One tenant, or every tenant. */
  tenantId?: string | undefined;
  /** Config default age limit of the class in hours; null: none. */
  defaultAgeHours: number | null;
  /** Only items stored before this (partition pruning for the age pass). */
  before?: Date | undefined;
  /** Only items stored in [from, to) (one event partition, for the partition guard). */
  within?: { from: Date; to: Date } | undefined;
}

/** `at` as exact text (microseconds, UTC): JS Dates hold milliseconds, and deleting events needs the exact key. */
const AT_TEXT = (col: string): RawBuilder<string> =>
  sql<string>`to_char(${sql.raw(col)} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

function source(o: ResolvedRowsOptions): RawBuilder<unknown> {
  const isEvents = o.dataClass === 'event_metadata';
  const alias = isEvents ? 'e' : 'm';
  const at = sql.raw(isEvents ? 'e.occurred_at' : 'm.captured_at');
  const filters: RawBuilder<unknown>[] = [];
  if (o.tenantId !== undefined) filters.push(sql`${sql.raw(alias)}.tenant_id = ${o.tenantId}`);
  if (o.before) filters.push(sql`${at} < ${o.before}`);
  if (o.within) filters.push(sql`${at} >= ${o.within.from} and ${at} < ${o.within.to}`);
  if (isEvents) {
    const where = filters.length > 0 ? sql`where ${sql.join(filters, sql` and `)}` : sql``;
    return sql`select e.event_id::text as id, e.tenant_id, e.site_id, e.device_id, e.camera_id,
        e.occurred_at as at, ${AT_TEXT('e.occurred_at')} as at_text, octet_length(e.payload)::bigint as bytes,
        ${eventHeldSql('e')} as held
      from events e ${where}`;
  }
  filters.push(sql`m.deleted_at is null`);
  filters.push(sql`m.redacted = ${o.dataClass === 'redacted_media'}`);
  return sql`select m.media_id::text as id, m.tenant_id, m.site_id, m.device_id, m.camera_id,
      m.captured_at as at, ${AT_TEXT('m.captured_at')} as at_text, m.size_bytes::bigint as bytes,
      ${mediaHeldSql('m')} as held
    from media m where ${sql.join(filters, sql` and `)}`;
}

/**
 * Every item of the class with: max_age_hours and age_scope ('camera' | 'site' | 'tenant' | 'default') with its
 * keys (age_site, age_device, age_camera: '' where the scope has none); max_bytes and size_scope (null: no
 * budget) with size_site, size_device, size_camera; held; at, at_text and bytes.
 */
export function resolvedRows(o: ResolvedRowsOptions): RawBuilder<unknown> {
  const c = o.dataClass;
  const pick = (col: string) => sql.raw<unknown>(`coalesce(pc.${col}, ps.${col}, pt.${col})`);
  const scopeOf = (col: string, fallback: string) =>
    sql.raw(`case when pc.${col} is not null then 'camera' when ps.${col} is not null then 'site'
      when pt.${col} is not null then 'tenant' else ${fallback} end`);
  return sql`select r.*,
      coalesce(${pick('max_age_hours')}, ${o.defaultAgeHours}::integer) as max_age_hours,
      ${scopeOf('max_age_hours', "'default'")} as age_scope,
      case when pc.max_age_hours is null and ps.max_age_hours is not null then r.site_id else '' end as age_site,
      case when pc.max_age_hours is not null then r.device_id else '' end as age_device,
      case when pc.max_age_hours is not null then r.camera_id else '' end as age_camera,
      ${pick('max_bytes')}::bigint as max_bytes,
      ${scopeOf('max_bytes', 'null')} as size_scope,
      case when pc.max_bytes is null and ps.max_bytes is not null then r.site_id else '' end as size_site,
      case when pc.max_bytes is not null then r.device_id else '' end as size_device,
      case when pc.max_bytes is not null then r.camera_id else '' end as size_camera
    from (${source(o)}) r
    left join retention_policies pc on pc.tenant_id = r.tenant_id and pc.data_class = ${c}
      and pc.scope = 'camera' and pc.site_id = '' and pc.device_id = r.device_id and pc.camera_id = r.camera_id
    left join retention_policies ps on ps.tenant_id = r.tenant_id and ps.data_class = ${c}
      and ps.scope = 'site' and ps.site_id = r.site_id and ps.device_id = '' and ps.camera_id = ''
    left join retention_policies pt on pt.tenant_id = r.tenant_id and pt.data_class = ${c}
      and pt.scope = 'tenant' and pt.site_id = '' and pt.device_id = '' and pt.camera_id = ''`;
}

/** Items of `resolvedRows` past their age limit (`x` is the alias): the due condition. */
export const PAST_AGE = (now: Date): RawBuilder<boolean> =>
  sql<boolean>`(x.max_age_hours is not null and x.at < ${now}::timestamptz - x.max_age_hours * interval '1 hour')`;

/**
 * `resolvedRows` with `cum`: bytes of the item and of every newer item under the same budget. An item whose
 * `cum` exceeds `max_bytes` is over its budget (the oldest go first: they have the largest cum).
 */
export function budgetedRows(o: ResolvedRowsOptions): RawBuilder<unknown> {
  return sql`select b.*, sum(b.bytes) over (
        partition by b.tenant_id, b.size_scope, b.size_site, b.size_device, b.size_camera
        order by b.at desc, b.id desc) as cum
      from (${resolvedRows(o)}) b where b.max_bytes is not null`;
}
