import { sql, type Kysely } from 'kysely';

// Three facts per device: desired, applied and last known good config (issue #13, finding 1).
//
// - device_configs.kind: why a version was issued. `direct` (POST /v1/devices/{id}/config/issue), `rollout` (a
//   wave of a staged rollout) or `rollback` (a rollout's rollback re-issuing a last known good body). A rollout
//   version is on probation until its rollout completes: before that an APPLIED+ok report does not make it
//   known good (its gates may still fail it).
// - device_config_state.good_version / good_at: the device's last known good config, the newest version it
//   applied and reported healthy (ok) on, outside probation; null: none yet. What a rollback restores.
// - rollout_devices: previous_version/previous_body now hold the version (and body) the device *ran* when its
//   wave was issued, the fallback restore when it has no known good config; restored_from_version and
//   restore_source say what a rollback re-issued (`last_known_good` or `ran_before`); new statuses:
//   rolling_back (restore issued, not applied yet), restore_failed, not_restored (nothing to restore).
//
// Backfill: rollout versions are `rollout` (those a rollback issued are `rollback`); a device whose last report
// is APPLIED and ok on the version it runs, outside probation, gets that version as known good.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('device_configs')
    .addColumn('kind', 'text', (c) =>
      c
        .notNull()
        .defaultTo('direct')
        .check(sql`kind in ('direct', 'rollout', 'rollback')`),
    )
    .execute();
  await sql`update device_configs set kind = 'rollout' where rollout_id is not null`.execute(db);
  await sql`
    update device_configs c set kind = 'rollback'
    from rollout_devices r
    where r.rollout_id = c.rollout_id and r.tenant_id = c.tenant_id and r.device_id = c.device_id
      and r.rollback_version = c.version`.execute(db);

  await db.schema
    .alterTable('device_config_state')
    .addColumn('good_version', 'bigint')
    .addColumn('good_at', 'timestamptz')
    .execute();
  await sql`
    update device_config_state s set good_version = s.applied_version, good_at = s.reported_at
    from device_configs c left join rollouts r on r.id = c.rollout_id
    where c.tenant_id = s.tenant_id and c.device_id = s.device_id and c.version = s.applied_version
      and s.state = 'applied' and s.health = 'ok' and s.reported_version = s.applied_version
      and (c.kind <> 'rollout' or r.state = 'completed')`.execute(db);

  await db.schema
    .alterTable('rollout_devices')
    .addColumn('restored_from_version', 'bigint')
    .addColumn('restore_source', 'text', (c) =>
      c.check(sql`restore_source in ('last_known_good', 'ran_before')`),
    )
    .execute();
  await db.schema.alterTable('rollout_devices').dropConstraint('rollout_devices_status').execute();
  await db.schema
    .alterTable('rollout_devices')
    .addCheckConstraint(
      'rollout_devices_status',
      sql`status in ('not_issued', 'pending', 'applied', 'failed', 'rolling_back', 'rolled_back', 'restore_failed', 'not_restored')`,
    )
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('rollout_devices').dropConstraint('rollout_devices_status').execute();
  await sql`update rollout_devices set status = 'rolled_back' where status in ('rolling_back', 'restore_failed', 'not_restored')`.execute(
    db,
  );
  await db.schema
    .alterTable('rollout_devices')
    .addCheckConstraint(
      'rollout_devices_status',
      sql`status in ('not_issued', 'pending', 'applied', 'failed', 'rolled_back')`,
    )
    .execute();
  await db.schema
    .alterTable('rollout_devices')
    .dropColumn('restored_from_version')
    .dropColumn('restore_source')
    .execute();
  await db.schema
    .alterTable('device_config_state')
    .dropColumn('good_version')
    .dropColumn('good_at')
    .execute();
  await db.schema.alterTable('device_configs').dropColumn('kind').execute();
}
