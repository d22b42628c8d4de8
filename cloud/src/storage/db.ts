import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Database } from './tables.js';

// bigint columns arrive as strings from pg; keep them strings (no silent precision loss) and let the
// code that needs numbers convert deliberately.
export function createDb(
  url: string,
  poolMax = 10,
  onIdleError: (err: Error) => void = () => undefined,
): Kysely<Database> {
  const pool = new pg.Pool({ connectionString: url, max: poolMax, connectionTimeoutMillis: 5_000 });
  // An idle pooled connection that the server drops (restart, failover) is emitted as 'error' on the
  // pool; without a listener that is an uncaught exception that kills the process. pg removes the
  // client from the pool and the next query connects again.
  pool.on('error', onIdleError);
  // A connection that is checked out (e.g. inside a transaction, between two statements) when the server goes
  // away emits 'error' on the client itself, where the pool does not listen: the same uncaught exception (the
  // fault test crashed PostgreSQL at exactly that moment). The statement in progress still fails and is retried;
  // this listener only keeps the process alive.
  pool.on('connect', (client) => {
    client.on('error', onIdleError);
  });
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}
