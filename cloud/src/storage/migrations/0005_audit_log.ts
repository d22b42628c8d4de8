import { sql, type Kysely } from 'kysely';

// The audit log: one append-only, hash-chained record of every admin action, device identity change and media
// access (cloud/src/audit/audit-log.ts defines the chain and its canonical hash input; read that first).
//
// Append-only is enforced by the database itself, not only by the application's privileges, so that it holds
// for the table owner (the application role, which runs these migrations) and for superusers alike:
//  - one statement-level BEFORE UPDATE OR DELETE OR TRUNCATE trigger that raises an exception. Statement-level,
//    so even a statement that matches no row is refused, and INSERT ... ON CONFLICT DO UPDATE and MERGE (which
//    fire the UPDATE/DELETE statement triggers) are refused too;
//  - ENABLE ALWAYS, so that `SET session_replication_role = replica` (how a superuser usually skips triggers)
//    does not skip this one;
//  - REVOKE UPDATE, DELETE, TRUNCATE FROM PUBLIC (no other role gets them by default either: this states it).
// What the database cannot stop is the table's owner or a superuser deliberately running
// `ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only` (or dropping the table). Today the application
// role runs the migrations and so owns the table; a deployment that wants the application unable even to do that
// transfers ownership to a separate maintenance role (ALTER TABLE audit_log OWNER TO ...) and grants the
// application role only SELECT and INSERT. Whatever happens, the hash chain makes it visible:
// `pnpm -F @vigil/cloud audit:verify` names the first entry that no longer matches.
//
// Retention and archival (not built yet): old entries can only be removed by that maintenance role, which
// exports a range, checks it with the verifier, disables the trigger deliberately inside one transaction, deletes
// the range, re-enables it with `ENABLE ALWAYS TRIGGER` (plain ENABLE would let the replica role skip it again)
// and records its own audit entry. The chain then starts at the first kept entry: verify({ fromSeq }) checks
// from there, trusting that entry's prev_hash as the anchor.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('audit_log')
    // Gap-free order of the chain: 1, 2, 3, ... assigned under an advisory lock (not a sequence, which
    // leaves gaps on rollback).
    .addColumn('seq', 'bigint', (c) => c.primaryKey())
    .addColumn('at', 'timestamptz', (c) => c.notNull())
    // null for system-wide actions
    .addColumn('tenant_id', 'text')
    // JWT subject, `device:<tenant>/<id>`, a service name, or `system`
    .addColumn('actor', 'text', (c) => c.notNull())
    .addColumn('actor_kind', 'text', (c) => c.notNull())
    // e.g. device.revoke, enrollment_token.create, device.enroll, device.renew, media.read
    .addColumn('action', 'text', (c) => c.notNull())
    // e.g. device:acme/gw-1
    .addColumn('resource', 'text')
    .addColumn('outcome', 'text', (c) => c.notNull())
    .addColumn('detail', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('request_id', 'text')
    .addColumn('prev_hash', 'bytea', (c) => c.notNull())
    .addColumn('hash', 'bytea', (c) => c.notNull())
    .addCheckConstraint('audit_log_seq_positive', sql`seq >= 1`)
    .addCheckConstraint('audit_log_actor_kind', sql`actor_kind in ('user', 'device', 'service', 'system')`)
    .addCheckConstraint('audit_log_outcome', sql`outcome in ('allowed', 'denied', 'failed')`)
    .addCheckConstraint('audit_log_detail_object', sql`jsonb_typeof(detail) = 'object'`)
    .addCheckConstraint('audit_log_prev_hash_len', sql`octet_length(prev_hash) = 32`)
    .addCheckConstraint('audit_log_hash_len', sql`octet_length(hash) = 32`)
    .execute();

  await sql`
    create function vigil_audit_log_append_only() returns trigger language plpgsql as $$
    begin
      raise exception 'audit_log is append-only: % is not allowed', tg_op
        using errcode = 'insufficient_privilege',
              hint = 'retention needs the maintenance procedure (see migration 0005_audit_log)';
    end
    $$`.execute(db);
  await sql`
    create trigger audit_log_append_only
      before update or delete or truncate on audit_log
      for each statement execute function vigil_audit_log_append_only()`.execute(db);
  await sql`alter table audit_log enable always trigger audit_log_append_only`.execute(db);
  await sql`revoke update, delete, truncate on audit_log from public`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  // DROP TABLE does not fire the trigger (and drops it with the table).
  await db.schema.dropTable('audit_log').execute();
  await sql`drop function vigil_audit_log_append_only()`.execute(db);
}
