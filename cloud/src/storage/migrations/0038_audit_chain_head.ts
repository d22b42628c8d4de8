import { sql, type Kysely } from 'kysely';

/*
 * The audit chain's append took the chain lock and then read the head in two round trips, and the lock is held
 * until COMMIT: every round trip under it is time every other append (each enrollment, each admin action) waits.
 * This function does both in one. It must be PL/pgSQL and VOLATILE: at READ COMMITTED each of its statements takes
 * a fresh snapshot, so the SELECT runs after the lock is granted and sees the entry its previous holder committed.
 * (One plain SQL statement would read with the snapshot taken before it waited for the lock, and miss it.)
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE FUNCTION vigil_audit_chain_head(lock_key bigint) RETURNS TABLE (seq bigint, hash bytea)
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
      PERFORM pg_advisory_xact_lock(lock_key);
      RETURN QUERY SELECT a.seq, a.hash FROM audit_log a ORDER BY a.seq DESC LIMIT 1;
    END
    $$`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP FUNCTION vigil_audit_chain_head(bigint)`.execute(db);
}
