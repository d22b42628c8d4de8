import { sql, type Kysely } from 'kysely';

// Retention policy changes reach the devices (privacy/edge-sync.ts, issue 19).
//
// device_configs.requested_retention: the `retention` section of the body as it was asked for, before the
// retention policies capped its edge media limits (privacy/edge.ts); null when the body had none. `body` keeps
// the capped section (what was signed). Without it a loosened policy could never loosen a device's limits
// again: the capped value would be all there is. Backfill: the stored (capped) section, which errs on the side of
// the stricter limits until the next issue.
//
// edge_retention_syncs: one row per tenant, the re-issue pass a policy change asked for. A change in the policy's
// transaction bumps `generation`, resets the cursor and counters and makes it pending; the job walks the tenant's
// devices in id order, `cursor_device` the last one handled, and moves the cursor only while the generation it
// read is still current (a change during a batch restarts the pass with the new policies).
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('device_configs').addColumn('requested_retention', 'jsonb').execute();
  await sql`update device_configs set requested_retention = body -> 'retention' where body ? 'retention'`.execute(
    db,
  );
  await db.schema
    .createTable('edge_retention_syncs')
    .addColumn('tenant_id', 'text', (c) => c.primaryKey())
    .addColumn('generation', 'bigint', (c) => c.notNull().defaultTo(1))
    .addColumn('state', 'text', (c) => c.notNull().check(sql`state in ('pending', 'running', 'done')`))
    .addColumn('cursor_device', 'text')
    .addColumn('devices_checked', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('devices_reissued', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('devices_failed', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('batches', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('requested_by', 'text', (c) => c.notNull())
    .addColumn('requested_at', 'timestamptz', (c) => c.notNull())
    .addColumn('started_at', 'timestamptz')
    .addColumn('finished_at', 'timestamptz')
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
    .execute();
  await sql`create index edge_retention_syncs_open on edge_retention_syncs (requested_at)
    where state <> 'done'`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('edge_retention_syncs').execute();
  await db.schema.alterTable('device_configs').dropColumn('requested_retention').execute();
}
