import { sql, type Kysely } from 'kysely';

// Desired configuration of devices (issue #7; cloud/src/config-ota explains the model).
//
// - config_documents: the desired-state documents an admin writes, per scope (the whole tenant, a site, one
//   device), each write a new revision (never updated in place). A device's effective body is the tenant
//   document overlaid by its site's and then by its own (config-ota/merge.ts).
// - device_configs: every config issued to a device, signed (jws). The version is per device, strictly
//   increasing and never reused: a rollback is a new version carrying an older body.
// - device_config_state: one row per device, the desired version and what the device last reported.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('config_documents')
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('scope', 'text', (c) => c.notNull())
    .addColumn('scope_id', 'text', (c) => c.notNull())
    .addColumn('revision', 'integer', (c) => c.notNull())
    .addColumn('body', 'jsonb', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    .addPrimaryKeyConstraint('config_documents_pkey', ['tenant_id', 'scope', 'scope_id', 'revision'])
    .addCheckConstraint('config_documents_scope', sql`scope in ('tenant', 'site', 'device')`)
    .addCheckConstraint('config_documents_revision', sql`revision > 0`)
    .execute();

  await db.schema
    .createTable('device_configs')
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('device_id', 'text', (c) => c.notNull())
    .addColumn('version', 'bigint', (c) => c.notNull())
    .addColumn('body', 'jsonb', (c) => c.notNull())
    .addColumn('jws', 'text', (c) => c.notNull())
    .addColumn('key_id', 'text', (c) => c.notNull())
    .addColumn('rollout_id', 'text')
    .addColumn('issued_by', 'text', (c) => c.notNull())
    .addColumn('issued_at', 'timestamptz', (c) => c.notNull())
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addPrimaryKeyConstraint('device_configs_pkey', ['tenant_id', 'device_id', 'version'])
    .addForeignKeyConstraint(
      'device_configs_device_fkey',
      ['tenant_id', 'device_id'],
      'devices',
      ['tenant_id', 'id'],
      (fk) => fk.onDelete('cascade'),
    )
    .addCheckConstraint('device_configs_version', sql`version > 0`)
    .execute();

  await db.schema
    .createTable('device_config_state')
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('device_id', 'text', (c) => c.notNull())
    // the newest issued version (what the device should run)
    .addColumn('desired_version', 'bigint', (c) => c.notNull().defaultTo(0))
    // the last ConfigStatus: the version it was about, the one the device runs, and the outcome
    .addColumn('reported_version', 'bigint')
    .addColumn('applied_version', 'bigint')
    .addColumn('state', 'text', (c) => c.notNull().defaultTo('unknown'))
    .addColumn('reason', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('health', 'text', (c) => c.notNull().defaultTo('unknown'))
    .addColumn('reported_at', 'timestamptz')
    .addPrimaryKeyConstraint('device_config_state_pkey', ['tenant_id', 'device_id'])
    .addForeignKeyConstraint(
      'device_config_state_device_fkey',
      ['tenant_id', 'device_id'],
      'devices',
      ['tenant_id', 'id'],
      (fk) => fk.onDelete('cascade'),
    )
    .addCheckConstraint(
      'device_config_state_state',
      sql`state in ('pending', 'applied', 'failed', 'rolled_back', 'unknown')`,
    )
    .addCheckConstraint('device_config_state_health', sql`health in ('ok', 'degraded', 'failing', 'unknown')`)
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('device_config_state').execute();
  await db.schema.dropTable('device_configs').execute();
  await db.schema.dropTable('config_documents').execute();
}
