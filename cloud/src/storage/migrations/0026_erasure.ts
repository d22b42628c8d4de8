import { sql, type Kysely } from 'kysely';

// Scoped erasure (cloud/src/privacy/, issue 19).
//
// - events.erased_at, events.erasure_id: an erased event stays as a tombstone (time, device, camera, label and
//   score stay, for counts and statistics); its personal fields are cleared by the erasure job (track id, box,
//   zones, attributes, the device's original bytes, the snapshot reference) and these two say when and by which
//   request. Added on the partitioned parent, so every partition (present and future) has them.
// - erasure_requests: one row per request, which is also the job's journal. The job works in batches and moves
//   a keyset cursor (cursor_at, cursor_id) and the counters in the same transaction as the batch's tombstones,
//   so a crash anywhere repeats at most the batch in flight (its byte deletions are idempotent) and counts
//   nothing twice. Rows are kept (the completion record); the reason is here, never on the audit log.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE events ADD COLUMN erased_at timestamptz, ADD COLUMN erasure_id uuid`.execute(db);
  await db.schema
    .createTable('erasure_requests')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('scope', 'jsonb', (c) => c.notNull())
    .addColumn('reason', 'text', (c) => c.notNull().check(sql`length(reason) between 1 and 500`))
    .addColumn('requested_by', 'text', (c) => c.notNull())
    .addColumn('requested_at', 'timestamptz', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull().check(sql`state in ('pending', 'running', 'done')`))
    .addColumn('phase', 'text', (c) => c.notNull().check(sql`phase in ('media', 'events', 'done')`))
    .addColumn('cursor_at', 'timestamptz')
    .addColumn('cursor_id', 'text')
    .addColumn('media_erased', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('media_held', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('media_failed', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('events_erased', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('events_held', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('batches', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('started_at', 'timestamptz')
    .addColumn('finished_at', 'timestamptz')
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
    .execute();
  // The job takes open requests oldest first.
  await db.schema
    .createIndex('erasure_requests_open')
    .on('erasure_requests')
    .columns(['requested_at'])
    .where(sql.ref('state'), '<>', 'done')
    .execute();
  await db.schema
    .createIndex('erasure_requests_tenant')
    .on('erasure_requests')
    .columns(['tenant_id', 'requested_at'])
    .execute();
  // Erasure by track walks a device's events by track id.
  await sql`CREATE INDEX events_track_idx ON events (tenant_id, device_id, track_id)`.execute(db);
  // Erasure and export by site walk the site's media.
  await db.schema
    .createIndex('media_site_captured')
    .on('media')
    .columns(['tenant_id', 'site_id', 'captured_at'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('media_site_captured').execute();
  await sql`DROP INDEX events_track_idx`.execute(db);
  await db.schema.dropTable('erasure_requests').execute();
  await sql`ALTER TABLE events DROP COLUMN erased_at, DROP COLUMN erasure_id`.execute(db);
}
