import { sql, type Kysely } from 'kysely';

// The webhook outbox (cloud/src/integrations/outbox.ts, relay.ts): one row per delivery job, written by ingest in
// the SAME transaction as the events that cause it, so that a commit and its jobs exist together or not at all.
// The relay publishes rows to JOBS (Nats-Msg-Id = msg_id, deduplicated by the stream) and deletes them after the
// PubAck. Rows are short-lived; the table is bounded by the writer (MAX_OUTBOX_ROWS, excess counted).
// - msg_id: `<webhook id>:<event id>`, the job's identity on JOBS.
// - payload: the job as JSON text, exactly the message body (the writer bounds its size).
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('webhook_outbox')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('msg_id', 'text', (c) => c.notNull())
    .addColumn('payload', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('webhook_outbox').execute();
}
