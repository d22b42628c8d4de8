import type { Kysely } from 'kysely';

// alert_incidents.last_seen_at: the newest occurred_at applied to the incident (cloud/src/alerts/rules.ts).
// Ingest commits up to `ingest.commitsInFlight` batches at once and redelivers a failed batch after later ones,
// so the events of one track can reach the commit hook out of order: a late START must move first_seen_at back
// (else the dwell never counts and the incident stays pending), and an event older than the newest one applied
// must not raise an Update (it describes the past). Null on rows written before 0027: first_seen_at stands in.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('alert_incidents').addColumn('last_seen_at', 'timestamptz').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('alert_incidents').dropColumn('last_seen_at').execute();
}
