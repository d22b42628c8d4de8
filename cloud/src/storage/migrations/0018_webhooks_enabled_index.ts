import { sql, type Kysely } from 'kysely';

// The tenant's ENABLED webhooks, found without reading its disabled ones (issue 20 soak). Disabling keeps the row
// (its delivery history stays), so a tenant that creates and disables webhooks accumulates rows without bound,
// while at most MAX_ENABLED_WEBHOOKS_PER_TENANT are enabled. countEnabled (every POST /v1/webhooks) and enabledFor
// (ingest's outbox writer, re-read after every create/disable in the process) used webhooks_tenant and filtered
// `enabled` row by row: their cost grew with every webhook the tenant ever had ("Rows Removed by Filter: 776" after
// an 8-minute soak). This partial index holds only enabled rows: at most 20 entries per tenant.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX webhooks_tenant_enabled ON webhooks (tenant_id, created_at DESC) WHERE enabled`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX webhooks_tenant_enabled`.execute(db);
}
