import { sql, type Kysely } from 'kysely';

// Legal holds (cloud/src/media/holds.ts): while a hold is active (released_at null), retention and erasure skip
// what it covers. A hold covers one event, a whole device, or one camera of a device over a capture time range
// [from_ts, to_ts). Rows are never deleted: a release sets released_*, so the table is its own history, and both
// placing and releasing need a reason and are on the audit log.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('legal_holds')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('event', 'device', 'camera_range')`))
    .addColumn('event_id', 'uuid')
    .addColumn('device_id', 'text')
    .addColumn('camera_id', 'text')
    .addColumn('from_ts', 'timestamptz')
    .addColumn('to_ts', 'timestamptz')
    .addColumn('reason', 'text', (c) => c.notNull().check(sql`length(reason) between 1 and 500`))
    .addColumn('placed_by', 'text', (c) => c.notNull())
    .addColumn('placed_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('released_by', 'text')
    .addColumn('released_at', 'timestamptz')
    .addColumn('release_reason', 'text')
    .addCheckConstraint(
      'legal_holds_shape',
      sql`(kind = 'event' and event_id is not null)
        or (kind = 'device' and device_id is not null)
        or (kind = 'camera_range' and device_id is not null and camera_id is not null
            and from_ts is not null and to_ts is not null and from_ts < to_ts)`,
    )
    .execute();
  await db.schema
    .createIndex('legal_holds_active')
    .on('legal_holds')
    .columns(['tenant_id', 'kind'])
    .where(sql.ref('released_at'), 'is', null)
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('legal_holds').execute();
}
