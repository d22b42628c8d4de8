import { sql, type Kysely } from 'kysely';

// Outgoing webhooks (cloud/src/integrations/).
//
// - webhooks: a tenant's subscriptions: where to POST (url), what (filter: labels, sites, cameras; empty = all)
//   and the HMAC key the requests are signed with. The secret is stored in the clear, unlike enrollment tokens
//   (kept as a hash): HMAC signing needs the key itself at every delivery. The trade-off: whoever reads this
//   table can forge requests to the tenant's receivers, so the API never returns it after the 201, and the
//   table belongs with the other secrets in backups and access control. Disabled rows are kept (the delivery
//   history refers to them); disabled_reason says why.
// - webhook_deliveries: one row per attempt (HTTP call or final verdict) of delivering one event to one webhook,
//   for GET /v1/webhooks/{id}/deliveries and for counting attempts across redeliveries. Bounded: the worker
//   keeps the newest rows of each webhook only (integrations/store.ts).
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('webhooks')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('url', 'text', (c) => c.notNull())
    .addColumn('secret', 'text', (c) => c.notNull())
    .addColumn('filter', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('description', 'text')
    .addColumn('enabled', 'boolean', (c) => c.notNull().defaultTo(true))
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    .addColumn('disabled_at', 'timestamptz')
    .addColumn('disabled_reason', 'text')
    .execute();
  await db.schema
    .createIndex('webhooks_tenant')
    .on('webhooks')
    .columns(['tenant_id', 'created_at'])
    .execute();

  await db.schema
    .createTable('webhook_deliveries')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('webhook_id', 'uuid', (c) => c.notNull().references('webhooks.id').onDelete('cascade'))
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('event_id', 'uuid', (c) => c.notNull())
    .addColumn('attempt', 'integer', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('http_status', 'integer')
    .addColumn('error', 'text')
    .addColumn('duration_ms', 'integer')
    .addColumn('at', 'timestamptz', (c) => c.notNull())
    .addCheckConstraint('webhook_deliveries_state', sql`state in ('delivered', 'retrying', 'dead')`)
    .execute();
  await db.schema
    .createIndex('webhook_deliveries_webhook')
    .on('webhook_deliveries')
    .columns(['webhook_id', 'id desc'])
    .execute();
  await db.schema
    .createIndex('webhook_deliveries_event')
    .on('webhook_deliveries')
    .columns(['webhook_id', 'event_id'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('webhook_deliveries').execute();
  await db.schema.dropTable('webhooks').execute();
}
