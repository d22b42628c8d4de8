import { sql, type Kysely } from 'kysely';

/*
 * GET /v1/events?site= (and the console, which filters by the caller's site) had no index with site_id: it
 * walked the tenant's index and filtered. Same shape as the device, camera and label indexes of 0002; on the
 * partitioned parent, so every partition, present and future, gets it.
 *
 * Building it locks each partition against writes until the migration commits (CREATE INDEX CONCURRENTLY
 * cannot run on a partitioned table nor inside the migration transaction). On a large table an operator can
 * build it first without blocking ingest, per partition with CREATE INDEX CONCURRENTLY on the same columns:
 * this statement then attaches those indexes instead of building new ones.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX events_site_time_idx ON events (tenant_id, site_id, occurred_at DESC, event_id DESC)`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX events_site_time_idx`.execute(db);
}
