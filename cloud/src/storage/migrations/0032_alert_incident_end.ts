import { sql, type Kysely } from 'kysely';

// Agency alerts across ingest processes (issue 16).
//
// Two ingest processes on the same durable commit one track's events in whatever order their batches finish:
// an END can be committed before the ZONE_ENTER before it (the Update would be lost, the incident closed), or
// before the START (the incident would be opened after its track ended and never cancelled). So an END no
// longer closes an incident in its own commit: it records when the track ended (end_at, end_event_id) and when
// the incident may be closed (end_due_at = commit + alerts.endGraceMs); events older than end_at committed in
// the meantime still apply, and the alert end sweeper (cloud/src/alerts/end-sweeper.ts) closes the incident
// (Cancel, or silently when it never alerted) once it is due. Partial index: the sweeper reads only those.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('alert_incidents')
    .addColumn('end_at', 'timestamptz')
    .addColumn('end_event_id', 'text')
    .addColumn('end_due_at', 'timestamptz')
    .execute();
  await sql`create index alert_incidents_end_due on alert_incidents (end_due_at) where end_due_at is not null`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index alert_incidents_end_due`.execute(db);
  await db.schema
    .alterTable('alert_incidents')
    .dropColumn('end_at')
    .dropColumn('end_event_id')
    .dropColumn('end_due_at')
    .execute();
}
