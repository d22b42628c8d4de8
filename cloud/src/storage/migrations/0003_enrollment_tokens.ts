import { sql, type Kysely } from 'kysely';

// One-time, expiring enrollment tokens, scoped to a tenant and site. The secret itself is never stored:
// only its SHA-256 (a 256-bit random secret needs no salt or slow hash), so a database dump cannot enroll.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('enrollment_tokens')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('site_id', 'text', (c) => c.notNull())
    .addColumn('token_sha256', 'bytea', (c) => c.notNull().unique())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('used_at', 'timestamptz')
    .addColumn('used_by_device', 'text')
    .addColumn('note', 'text')
    .addForeignKeyConstraint(
      'enrollment_tokens_site_fkey',
      ['tenant_id', 'site_id'],
      'sites',
      ['tenant_id', 'id'],
      (fk) => fk.onDelete('cascade'),
    )
    .addCheckConstraint('enrollment_tokens_sha256_len', sql`octet_length(token_sha256) = 32`)
    .execute();
  // The API lists a tenant's tokens newest first.
  await db.schema
    .createIndex('enrollment_tokens_tenant_idx')
    .on('enrollment_tokens')
    .columns(['tenant_id', 'created_at'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('enrollment_tokens').execute();
}
