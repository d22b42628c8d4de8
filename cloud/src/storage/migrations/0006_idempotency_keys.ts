import { sql, type Kysely } from 'kysely';

// Idempotency-Key records of the API (cloud/src/api/idempotency.ts explains the protocol).
//
// One row per (tenant, caller, method, path, key): the first request claims it (in_progress) with an
// INSERT ... ON CONFLICT, runs, then stores its response (done) for replay; a 5xx deletes the claim so that a
// retry runs again. Rows expire (expires_at, default 24 h) and are deleted lazily in bounded batches.
// Every key column is bounded by the API (tenant and path parameters are validated first, the JWT `sub` is at
// most 256 characters, the key at most 255), so the primary key always fits a B-tree entry.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('idempotency_keys')
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    // the JWT subject
    .addColumn('principal', 'text', (c) => c.notNull())
    .addColumn('method', 'text', (c) => c.notNull())
    // the request path, without the query
    .addColumn('path', 'text', (c) => c.notNull())
    .addColumn('key', 'text', (c) => c.notNull())
    // SHA-256 of the canonical JSON body: the same key with another payload is refused (422)
    .addColumn('request_sha256', 'bytea', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    // who holds an in_progress claim: only that request completes or releases it
    .addColumn('claim_id', 'uuid', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    // an in_progress claim older than this is abandoned (crashed process): a retry may take it over
    .addColumn('locked_until', 'timestamptz', (c) => c.notNull())
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('response_status', 'integer')
    .addColumn('response_headers', 'jsonb')
    // the response body as sent (JSON text); null when it is withheld
    .addColumn('response_body', 'text')
    // why a done response has no body to replay: `secret` (a one-time secret is never stored), `too_large`
    .addColumn('withheld', 'text')
    .addPrimaryKeyConstraint('idempotency_keys_pkey', ['tenant_id', 'principal', 'method', 'path', 'key'])
    .addCheckConstraint('idempotency_keys_state', sql`state in ('in_progress', 'done')`)
    .addCheckConstraint('idempotency_keys_request_sha256_len', sql`octet_length(request_sha256) = 32`)
    .addCheckConstraint(
      'idempotency_keys_withheld',
      sql`withheld is null or withheld in ('secret', 'too_large')`,
    )
    .addCheckConstraint(
      'idempotency_keys_done',
      sql`state = 'in_progress' or (response_status is not null and (response_body is not null or withheld is not null))`,
    )
    .addCheckConstraint(
      'idempotency_keys_body_len',
      sql`response_body is null or octet_length(response_body) <= 65536`,
    )
    .execute();
  // The cleanup deletes the oldest expired rows first, a bounded batch at a time.
  await db.schema
    .createIndex('idempotency_keys_expires_at')
    .on('idempotency_keys')
    .column('expires_at')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('idempotency_keys').execute();
}
