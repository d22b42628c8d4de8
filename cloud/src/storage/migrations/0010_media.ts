import { sql, type Kysely } from 'kysely';

// Media objects (snapshots) that devices upload on the MEDIA stream (cloud/src/media/). The bytes live in the
// MediaStore (filesystem by default) under `storage_key`; this row is the index, the tenancy boundary and the
// record of what happened to them. One row per (tenant, media id): ingest inserts with ON CONFLICT DO NOTHING,
// so a resent object is stored once. Erasure and retention delete the bytes and keep the row as a tombstone
// (deleted_at, deleted_reason) so that an event's snapshot reference answers "gone, and why" rather than 404.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('media')
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('media_id', 'uuid', (c) => c.notNull())
    .addColumn('site_id', 'text', (c) => c.notNull())
    .addColumn('device_id', 'text', (c) => c.notNull())
    .addColumn('camera_id', 'text', (c) => c.notNull())
    // the event whose snapshot this is (no foreign key: events are partitioned and may arrive later)
    .addColumn('event_id', 'uuid', (c) => c.notNull())
    .addColumn('content_type', 'text', (c) => c.notNull())
    .addColumn('sha256', 'text', (c) => c.notNull())
    .addColumn('size_bytes', 'integer', (c) => c.notNull())
    .addColumn('redacted', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('captured_at', 'timestamptz', (c) => c.notNull())
    .addColumn('stored_at', 'timestamptz', (c) => c.notNull())
    // where the MediaStore keeps the bytes; null once they are deleted
    .addColumn('storage_key', 'text')
    .addColumn('deleted_at', 'timestamptz')
    // `retention` (the retention job) or `erasure` (an erasure request through the API)
    .addColumn('deleted_reason', 'text')
    .addPrimaryKeyConstraint('media_pkey', ['tenant_id', 'media_id'])
    .addCheckConstraint('media_sha256_hex', sql`sha256 ~ '^[0-9a-f]{64}$'`)
    .addCheckConstraint('media_size', sql`size_bytes >= 0`)
    .addCheckConstraint(
      'media_deleted',
      sql`(deleted_at is null and deleted_reason is null and storage_key is not null) or (deleted_at is not null and deleted_reason in ('retention', 'erasure') and storage_key is null)`,
    )
    .execute();
  // Retention walks each tenant's live media oldest first.
  await db.schema
    .createIndex('media_live_captured')
    .on('media')
    .columns(['tenant_id', 'captured_at'])
    .where(sql.ref('deleted_at'), 'is', null)
    .execute();
  // An event's snapshot, and erasure of everything a device or camera captured.
  await db.schema.createIndex('media_event').on('media').columns(['tenant_id', 'event_id']).execute();
  await db.schema
    .createIndex('media_device_captured')
    .on('media')
    .columns(['tenant_id', 'device_id', 'camera_id', 'captured_at'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('media').execute();
}
