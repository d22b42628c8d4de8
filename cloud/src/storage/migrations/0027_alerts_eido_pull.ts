import { sql, type Kysely } from 'kysely';

// Agency alerts, continued (issue 16).
//
// - alert_incidents.last_seen_at: the newest occurred_at applied to the incident (cloud/src/alerts/rules.ts).
//   Ingest commits up to `ingest.commitsInFlight` batches at once and redelivers a failed batch after later
//   ones, so the events of one track can reach the commit hook out of order: a late START must move
//   first_seen_at back (else the dwell never counts and the incident stays pending), and an event older than
//   the newest one applied must not raise an Update (it describes the past). Null on rows written before 0027:
//   first_seen_at stands in.
// - alert_targets.format: what a target is sent, 'cap' (CAP 1.2 XML, as before) or 'eido' (the EIDO-style JSON
//   incident document, cloud/src/alerts/eido-v1.schema.json).
// - alert_targets.delivery: 'push' (POSTed to url, as before) or 'pull' (only the target's Atom feed: no url,
//   auth 'feed', the feed's bearer token is its only credential).
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('alert_incidents').addColumn('last_seen_at', 'timestamptz').execute();
  await db.schema
    .alterTable('alert_targets')
    .addColumn('format', 'text', (c) => c.notNull().defaultTo('cap'))
    .addColumn('delivery', 'text', (c) => c.notNull().defaultTo('push'))
    .execute();
  await sql`alter table alert_targets alter column url drop not null`.execute(db);
  await sql`alter table alert_targets drop constraint alert_targets_auth`.execute(db);
  await sql`alter table alert_targets
    add constraint alert_targets_format check (format in ('cap', 'eido')),
    add constraint alert_targets_delivery check (
      (delivery = 'push' and url is not null and auth in ('mtls', 'signature'))
      or (delivery = 'pull' and url is null and auth = 'feed'))`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  // Pull-only targets cannot exist before 0027 (they have no url).
  await sql`delete from alert_targets where delivery = 'pull'`.execute(db);
  await sql`alter table alert_targets drop constraint alert_targets_delivery, drop constraint alert_targets_format`.execute(
    db,
  );
  await db.schema.alterTable('alert_targets').dropColumn('format').dropColumn('delivery').execute();
  await sql`alter table alert_targets alter column url set not null`.execute(db);
  await sql`alter table alert_targets add constraint alert_targets_auth check (auth in ('mtls', 'signature'))`.execute(
    db,
  );
  await db.schema.alterTable('alert_incidents').dropColumn('last_seen_at').execute();
}
