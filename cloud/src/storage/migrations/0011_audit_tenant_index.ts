import type { Kysely } from 'kysely';

// GET /v1/audit-log reads one tenant's entries newest first (cursor = seq): without this it scans the whole
// chain, which spans every tenant.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.createIndex('audit_log_tenant_seq').on('audit_log').columns(['tenant_id', 'seq']).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('audit_log_tenant_seq').execute();
}
