import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Database } from './tables.js';

// bigint columns arrive as strings from pg; keep them strings (no silent precision loss) and let the
// code that needs numbers convert deliberately.
export function createDb(url: string, poolMax = 10): Kysely<Database> {
  const pool = new pg.Pool({ connectionString: url, max: poolMax, connectionTimeoutMillis: 5_000 });
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}
