import { sql, type Kysely } from 'kysely';
import type { Database } from './tables.js';

/**
 * Runs `work` only if this process gets the advisory lock `key`, held until `work` ends, so one process at a
 * time does it (the rollout executor, media retention).
 *
 * The lock is transaction-scoped, taken in a transaction that stays open (idle, holding no snapshot, so it
 * holds back no vacuum) while `work` runs on other pooled connections, and released by its commit, or by the
 * server when the process dies and its connection drops. A session lock (pg_try_advisory_lock ... unlock) on a
 * checked-out connection would not survive pgbouncer in transaction pooling mode: each statement is its own
 * transaction there and may run on another server connection, so the unlock misses and the lock stays with an
 * idle server connection that any process may later be handed, two leaders at once.
 */
export async function whileHoldingLock<T>(
  db: Kysely<Database>,
  key: bigint,
  work: () => Promise<T>,
): Promise<{ held: true; result: T } | { held: false }> {
  return db.transaction().execute(async (trx) => {
    const got = await sql<{ ok: boolean }>`select pg_try_advisory_xact_lock(${key}) as ok`.execute(trx);
    if (!got.rows[0]?.ok) return { held: false as const };
    return { held: true as const, result: await work() };
  });
}
