import { sql, type Kysely } from 'kysely';

// Staged rollouts (issue #7; cloud/src/rollouts explains the model).
//
// - rollouts: one row per rollout of a config body to a tenant or a site: the body snapshot (null: each device
//   gets its own effective document), the spec (canary, waves, gates, abort criteria) and the state machine's
//   position (state, current wave, when it started) with the abort reason.
// - rollout_devices: the target devices in rollout order (`position`), the wave each was issued in, what it ran
//   before (body and version, for the rollback), the version issued to it and the one that rolled it back, its
//   pre-rollout fps baseline and the last observed status.
// - devices: the analytics signals of the last heartbeat the rollout gates read (health, mean fps).
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('rollouts')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('scope', 'text', (c) => c.notNull())
    .addColumn('scope_id', 'text', (c) => c.notNull())
    .addColumn('body', 'jsonb')
    .addColumn('spec', 'jsonb', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('current_wave', 'integer', (c) => c.notNull().defaultTo(-1))
    .addColumn('wave_started_at', 'timestamptz')
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
    .addColumn('finished_at', 'timestamptz')
    .addColumn('abort_reason', 'text')
    .addCheckConstraint('rollouts_scope', sql`scope in ('tenant', 'site')`)
    .addCheckConstraint(
      'rollouts_state',
      sql`state in ('pending', 'running', 'paused', 'completed', 'aborted', 'rolling_back', 'rolled_back')`,
    )
    .execute();
  await db.schema
    .createIndex('rollouts_tenant_created')
    .on('rollouts')
    .columns(['tenant_id', 'created_at desc'])
    .execute();
  await sql`create index rollouts_active on rollouts (state) where state not in ('completed', 'rolled_back')`.execute(
    db,
  );

  await db.schema
    .createTable('rollout_devices')
    .addColumn('rollout_id', 'text', (c) => c.notNull().references('rollouts.id').onDelete('cascade'))
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('device_id', 'text', (c) => c.notNull())
    .addColumn('position', 'integer', (c) => c.notNull())
    .addColumn('wave', 'integer')
    .addColumn('issued_at', 'timestamptz')
    .addColumn('previous_body', 'jsonb')
    .addColumn('previous_version', 'bigint')
    .addColumn('issued_version', 'bigint')
    .addColumn('baseline_fps', 'real')
    .addColumn('rollback_version', 'bigint')
    .addColumn('status', 'text', (c) => c.notNull().defaultTo('not_issued'))
    .addColumn('reason', 'text')
    .addPrimaryKeyConstraint('rollout_devices_pkey', ['rollout_id', 'device_id'])
    .addUniqueConstraint('rollout_devices_position', ['rollout_id', 'position'])
    .addForeignKeyConstraint('rollout_devices_device_fkey', ['tenant_id', 'device_id'], 'devices', [
      'tenant_id',
      'id',
    ])
    .addCheckConstraint(
      'rollout_devices_status',
      sql`status in ('not_issued', 'pending', 'applied', 'failed', 'rolled_back')`,
    )
    .execute();

  await db.schema
    .alterTable('devices')
    .addColumn('last_health', 'text')
    .addColumn('mean_fps', 'real')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('devices').dropColumn('last_health').dropColumn('mean_fps').execute();
  await db.schema.dropTable('rollout_devices').execute();
  await db.schema.dropTable('rollouts').execute();
}
