import { sql, type Kysely } from 'kysely';

// The console's shared state (issue 15), so that several API processes behind a load balancer serve one login:
//
// - console_sessions: a session per login. The key is the SHA-256 of the cookie's random id (a database read
//   never yields a usable cookie); the principal (tenant, roles, sites) and the CSRF token are stored, the ID
//   token for logout. Expired rows are deleted on access and at every login; a user's sessions are bounded
//   (the oldest deleted first: console.maxSessionsPerUser), by the (tenant_id, subject) index.
// - console_logins: an OIDC login in flight (state hashed, PKCE verifier, nonce), taken once by the callback,
//   whichever process the provider redirects the browser to.
// - event_reviews: who marked an event reviewed and when (tenant in the key; no foreign key: events is
//   partitioned by day and its unique key holds occurred_at). Deleted by un-review.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('console_sessions')
    .addColumn('id_hash', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('subject', 'text', (c) => c.notNull())
    .addColumn('principal', 'jsonb', (c) => c.notNull())
    .addColumn('csrf', 'text', (c) => c.notNull())
    .addColumn('id_token', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('console_sessions_user')
    .on('console_sessions')
    .columns(['tenant_id', 'subject', 'created_at'])
    .execute();
  await db.schema
    .createIndex('console_sessions_expiry')
    .on('console_sessions')
    .column('expires_at')
    .execute();
  await db.schema
    .createTable('console_logins')
    .addColumn('state_hash', 'text', (c) => c.primaryKey())
    .addColumn('nonce', 'text', (c) => c.notNull())
    .addColumn('verifier', 'text', (c) => c.notNull())
    .addColumn('return_to', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('console_logins_expiry').on('console_logins').column('expires_at').execute();
  await db.schema
    .createTable('event_reviews')
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('event_id', 'uuid', (c) => c.notNull())
    .addColumn('reviewed_by', 'text', (c) => c.notNull())
    .addColumn('reviewed_at', 'timestamptz', (c) => c.notNull())
    .addPrimaryKeyConstraint('event_reviews_pkey', ['tenant_id', 'event_id'])
    .execute();
  await sql`comment on table event_reviews is 'Events marked reviewed (console, POST /v1/events/{id}/review)'`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('event_reviews').execute();
  await db.schema.dropTable('console_logins').execute();
  await db.schema.dropTable('console_sessions').execute();
}
