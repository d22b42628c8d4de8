/**
 * `retention check`: for one tenant and each data class, what is kept past its policy (must be nothing once the
 * retention job has run: anything listed there is a defect, or the job is behind), what a legal hold keeps past
 * its policy, and what goes next and when. Age cells group items by the scope their age limit comes from, size
 * cells by the budget that spans them (privacy/sql.ts). Reads every item of the tenant: an operator's question,
 * not a hot path.
 */
import { sql, type Kysely, type RawBuilder } from 'kysely';
import type { Database } from '../storage/tables.js';
import { STORED_DATA_CLASSES, type RetentionDefaults, type StoredDataClass } from './policies.js';
import { budgetedRows, PAST_AGE, resolvedRows } from './sql.js';

export interface AgeCell {
  scope: 'camera' | 'site' | 'tenant' | 'default';
  site_id: string;
  device_id: string;
  camera_id: string;
  max_age_hours: number | null;
  items: number;
  bytes: number;
  /** Past the age limit, not held: must be 0 after retention ran. */
  overdue: number;
  /** Past the age limit, kept by a legal hold. */
  held: number;
  /** When the next item of the cell becomes due (null: none will). */
  next_due_at: string | null;
  due_within_24h: number;
}

export interface SizeCell {
  scope: 'camera' | 'site' | 'tenant';
  site_id: string;
  device_id: string;
  camera_id: string;
  max_bytes: number;
  items: number;
  bytes: number;
  /** Items beyond the budget (oldest first), not held: must be 0 after retention ran. */
  over_budget: number;
  /** Items beyond the budget that a legal hold keeps. */
  held: number;
}

export interface ItemDue {
  id: string;
  at: string;
  /** When it goes (age), or null: at the next run (beyond a size budget). */
  due_at: string | null;
  reason: 'age' | 'size';
  scope: string;
}

export interface ClassReport {
  data_class: StoredDataClass;
  age: AgeCell[];
  size: SizeCell[];
  /** Kept past policy, not held (overdue + over budget): must be empty after retention ran. */
  kept_past_policy: ItemDue[];
  /** Past policy and held (listed, never deleted while held). */
  held: ItemDue[];
  /** The next items to go, soonest first. */
  next_deletions: ItemDue[];
}

export interface RetentionReport {
  tenant_id: string;
  checked_at: string;
  classes: ClassReport[];
  audit: { data_class: 'audit'; entries: number; oldest_at: string | null; policy: 'fixed'; why: string };
  /** Totals over the classes: kept_past_policy must be 0 after retention ran. */
  kept_past_policy: number;
  held_past_policy: number;
}

export const AUDIT_FIXED_WHY =
  'The audit log is one hash chain shared by every tenant, append-only under a trigger (migration 0005): ' +
  'deleting entries of one tenant, site or camera would break the chain for every later entry. It is kept ' +
  'whole; archival cuts a prefix of the whole log by the maintenance procedure of migration 0005.';

const iso = (d: Date | string | null): string | null =>
  d === null ? null : (d instanceof Date ? d : new Date(d)).toISOString();

export async function retentionReport(
  db: Kysely<Database>,
  tenantId: string,
  defaults: RetentionDefaults,
  now: Date,
  listLimit: number,
): Promise<RetentionReport> {
  const classes: ClassReport[] = [];
  for (const dataClass of STORED_DATA_CLASSES) {
    const o = { dataClass, tenantId, defaultAgeHours: defaults[dataClass] };
    const due = sql`x.at + x.max_age_hours * interval '1 hour'`;
    const age = await sql<{
      scope: AgeCell['scope'];
      site_id: string;
      device_id: string;
      camera_id: string;
      max_age_hours: number | null;
      items: string;
      bytes: string;
      overdue: string;
      held: string;
      next_due_at: Date | null;
      due_within_24h: string;
    }>`select x.age_scope as scope, x.age_site as site_id, x.age_device as device_id, x.age_camera as camera_id,
        x.max_age_hours, count(*) as items, coalesce(sum(x.bytes), 0) as bytes,
        count(*) filter (where ${PAST_AGE(now)} and not x.held) as overdue,
        count(*) filter (where ${PAST_AGE(now)} and x.held) as held,
        min(${due}) filter (where not ${PAST_AGE(now)}) as next_due_at,
        count(*) filter (where not ${PAST_AGE(now)} and not x.held
          and ${due} < ${now}::timestamptz + interval '24 hours') as due_within_24h
      from (${resolvedRows(o)}) x
      group by 1, 2, 3, 4, 5 order by 1, 2, 3, 4`.execute(db);
    const size = await sql<{
      scope: SizeCell['scope'];
      site_id: string;
      device_id: string;
      camera_id: string;
      max_bytes: string;
      items: string;
      bytes: string;
      over_budget: string;
      held: string;
    }>`select x.size_scope as scope, x.size_site as site_id, x.size_device as device_id,
        x.size_camera as camera_id, x.max_bytes, count(*) as items, coalesce(sum(x.bytes), 0) as bytes,
        count(*) filter (where x.cum > x.max_bytes and not x.held) as over_budget,
        count(*) filter (where x.cum > x.max_bytes and x.held) as held
      from (${budgetedRows(o)}) x group by 1, 2, 3, 4, 5 order by 1, 2, 3, 4`.execute(db);
    type ItemRow = { id: string; at: Date; due_at: Date | null; scope: string };
    const view =
      (reason: 'age' | 'size') =>
      (r: ItemRow): ItemDue => ({ id: r.id, at: iso(r.at)!, due_at: iso(r.due_at), reason, scope: r.scope });
    const byAge = async (where: RawBuilder<unknown>): Promise<ItemDue[]> =>
      (
        await sql<ItemRow>`select x.id, x.at, ${due} as due_at, x.age_scope as scope
          from (${resolvedRows(o)}) x where x.max_age_hours is not null and ${where}
          order by ${due}, x.id limit ${listLimit}`.execute(db)
      ).rows.map(view('age'));
    const bySize = async (held: boolean): Promise<ItemDue[]> =>
      (
        await sql<ItemRow>`select x.id, x.at, null as due_at, x.size_scope as scope
          from (${budgetedRows(o)}) x where x.cum > x.max_bytes and x.held = ${held}
          order by x.at, x.id limit ${listLimit}`.execute(db)
      ).rows.map(view('size'));
    const keptPast = [...(await byAge(sql`${PAST_AGE(now)} and not x.held`)), ...(await bySize(false))];
    const heldPast = [...(await byAge(sql`${PAST_AGE(now)} and x.held`)), ...(await bySize(true))];
    const upcoming = await byAge(sql`not ${PAST_AGE(now)} and not x.held`);
    classes.push({
      data_class: dataClass,
      age: age.rows.map((r) => ({
        ...r,
        max_age_hours: r.max_age_hours,
        items: Number(r.items),
        bytes: Number(r.bytes),
        overdue: Number(r.overdue),
        held: Number(r.held),
        next_due_at: iso(r.next_due_at),
        due_within_24h: Number(r.due_within_24h),
      })),
      size: size.rows.map((r) => ({
        ...r,
        max_bytes: Number(r.max_bytes),
        items: Number(r.items),
        bytes: Number(r.bytes),
        over_budget: Number(r.over_budget),
        held: Number(r.held),
      })),
      kept_past_policy: keptPast.slice(0, listLimit),
      held: heldPast.slice(0, listLimit),
      // What is past its policy goes at the next run, then the rest as it becomes due.
      next_deletions: [...keptPast, ...upcoming].slice(0, listLimit),
    });
  }
  const audit = await db
    .selectFrom('audit_log')
    .select((eb) => [eb.fn.countAll<string>().as('n'), eb.fn.min('at').as('oldest')])
    .where('tenant_id', '=', tenantId)
    .executeTakeFirstOrThrow();
  const sum = (f: (c: ClassReport) => number): number => classes.reduce((n, c) => n + f(c), 0);
  return {
    tenant_id: tenantId,
    checked_at: now.toISOString(),
    classes,
    audit: {
      data_class: 'audit',
      entries: Number(audit.n),
      oldest_at: iso(audit.oldest),
      policy: 'fixed',
      why: AUDIT_FIXED_WHY,
    },
    kept_past_policy: sum(
      (c) => c.age.reduce((n, a) => n + a.overdue, 0) + c.size.reduce((n, s) => n + s.over_budget, 0),
    ),
    held_past_policy: sum(
      (c) => c.age.reduce((n, a) => n + a.held, 0) + c.size.reduce((n, s) => n + s.held, 0),
    ),
  };
}
