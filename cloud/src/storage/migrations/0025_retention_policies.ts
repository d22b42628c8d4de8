import { sql, type Kysely } from 'kysely';

// Retention policies and general legal holds (cloud/src/privacy/, issue 19).
//
// retention_policies: one row per (tenant, scope, scope ids, data class). Scope `tenant` has site, device and
// camera '', `site` names a site, `camera` names a device and one of its cameras (camera ids are unique per
// device only). Empty strings rather than nulls so that the primary key is the natural key. A row sets an age
// limit, a size budget or both; each is resolved on its own, from the most specific scope that sets it (camera >
// site > tenant > the config default).
//
// legal_holds (0021) is generalized in place, so media's holds keep working: a `track` kind (device, camera,
// track id); a `state` (a hold placed or released under the two-admin rule waits for a second admin: only
// `active` and `release_pending` holds take effect); who requested and who approved. privacy_settings holds the
// per-tenant two-admin rule.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('retention_policies')
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('scope', 'text', (c) => c.notNull().check(sql`scope in ('tenant', 'site', 'camera')`))
    .addColumn('site_id', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('device_id', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('camera_id', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('data_class', 'text', (c) =>
      c.notNull().check(sql`data_class in ('event_metadata', 'redacted_media', 'personal_media')`),
    )
    .addColumn('max_age_hours', 'integer', (c) => c.check(sql`max_age_hours between 1 and 876000`))
    .addColumn('max_bytes', 'bigint', (c) => c.check(sql`max_bytes >= 1`))
    .addColumn('updated_by', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
    .addPrimaryKeyConstraint('retention_policies_pkey', [
      'tenant_id',
      'data_class',
      'scope',
      'site_id',
      'device_id',
      'camera_id',
    ])
    .addCheckConstraint('retention_policies_limit', sql`max_age_hours is not null or max_bytes is not null`)
    .addCheckConstraint(
      'retention_policies_shape',
      sql`(scope = 'tenant' and site_id = '' and device_id = '' and camera_id = '')
        or (scope = 'site' and site_id <> '' and device_id = '' and camera_id = '')
        or (scope = 'camera' and site_id = '' and device_id <> '' and camera_id <> '')`,
    )
    .execute();

  await sql`alter table legal_holds drop constraint legal_holds_shape`.execute(db);
  await sql`alter table legal_holds drop constraint legal_holds_kind_check`.execute(db);
  await sql`alter table legal_holds add constraint legal_holds_kind_check
    check (kind in ('event', 'device', 'camera_range', 'track'))`.execute(db);
  await sql`alter table legal_holds add column track_id text`.execute(db);
  await sql`alter table legal_holds add column state text not null default 'active'
    check (state in ('place_pending', 'active', 'release_pending', 'released'))`.execute(db);
  await sql`update legal_holds set state = 'released' where released_at is not null`.execute(db);
  await sql`alter table legal_holds add column approved_by text`.execute(db);
  await sql`alter table legal_holds add column release_requested_by text`.execute(db);
  await sql`alter table legal_holds add column release_requested_at timestamptz`.execute(db);
  await sql`alter table legal_holds add constraint legal_holds_shape check (
        (kind = 'event' and event_id is not null)
     or (kind = 'device' and device_id is not null)
     or (kind = 'camera_range' and device_id is not null and camera_id is not null
         and from_ts is not null and to_ts is not null and from_ts < to_ts)
     or (kind = 'track' and device_id is not null and camera_id is not null and track_id is not null))`.execute(
    db,
  );
  await sql`alter table legal_holds add constraint legal_holds_released
    check ((state = 'released') = (released_at is not null))`.execute(db);
  await sql`drop index legal_holds_active`.execute(db);
  // Retention and erasure probe the holds that take effect, per tenant, for every batch.
  await sql`create index legal_holds_effective on legal_holds (tenant_id, kind)
    where state in ('active', 'release_pending')`.execute(db);

  await db.schema
    .createTable('privacy_settings')
    .addColumn('tenant_id', 'text', (c) => c.primaryKey())
    // Placing and releasing a legal hold need a second admin's approval.
    .addColumn('holds_two_admin', 'boolean', (c) => c.notNull().defaultTo(false))
    // Turning the rule off is itself a two-admin change: who asked first (null: nobody is asking).
    .addColumn('two_admin_off_requested_by', 'text')
    .addColumn('updated_by', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('privacy_settings').execute();
  await db.schema.dropTable('retention_policies').execute();
  // Holds that only the new model can express (tracks, pending placements) cannot stay in 0021's table.
  await sql`delete from legal_holds where kind = 'track' or state = 'place_pending'`.execute(db);
  await sql`drop index legal_holds_effective`.execute(db);
  await sql`alter table legal_holds drop constraint legal_holds_released`.execute(db);
  await sql`alter table legal_holds drop constraint legal_holds_shape`.execute(db);
  await sql`alter table legal_holds drop constraint legal_holds_kind_check`.execute(db);
  for (const c of ['track_id', 'state', 'approved_by', 'release_requested_by', 'release_requested_at'])
    await sql`alter table legal_holds drop column ${sql.ref(c)}`.execute(db);
  await sql`alter table legal_holds add constraint legal_holds_kind_check
    check (kind in ('event', 'device', 'camera_range'))`.execute(db);
  await sql`alter table legal_holds add constraint legal_holds_shape check (
        (kind = 'event' and event_id is not null)
     or (kind = 'device' and device_id is not null)
     or (kind = 'camera_range' and device_id is not null and camera_id is not null
         and from_ts is not null and to_ts is not null and from_ts < to_ts))`.execute(db);
  await sql`create index legal_holds_active on legal_holds (tenant_id, kind) where released_at is null`.execute(
    db,
  );
}
