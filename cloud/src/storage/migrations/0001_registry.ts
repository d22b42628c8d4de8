import { sql, type Kysely } from 'kysely';

// Fleet registry: tenants own sites and devices. Every row carries its tenant so that every query can be
// scoped by tenant; keys are (tenant_id, id) so one tenant cannot collide with, or guess into, another.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('tenants')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .createTable('sites')
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
    .addColumn('id', 'text', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('sites_pkey', ['tenant_id', 'id'])
    .execute();
  await db.schema
    .createTable('devices')
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
    .addColumn('id', 'text', (c) => c.notNull())
    .addColumn('site_id', 'text')
    .addColumn('agent_version', 'text')
    .addColumn('config_version', 'bigint')
    .addColumn('last_seen_at', 'timestamptz')
    .addColumn('heartbeats', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('devices_pkey', ['tenant_id', 'id'])
    .addForeignKeyConstraint('devices_site_fkey', ['tenant_id', 'site_id'], 'sites', ['tenant_id', 'id'])
    .execute();
  // The fleet view lists devices by staleness.
  await db.schema
    .createIndex('devices_last_seen_idx')
    .on('devices')
    .columns(['tenant_id', 'last_seen_at'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('devices').execute();
  await db.schema.dropTable('sites').execute();
  await db.schema.dropTable('tenants').execute();
}
