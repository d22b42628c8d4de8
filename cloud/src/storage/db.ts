import { readFileSync } from 'node:fs';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { ConfigError } from '../lib/errors.js';
import type { Database } from './tables.js';

export interface CreateDbOptions {
  /**
   * Config database.passwordFile: read at each new connection (not once), so a rotated secret is picked up
   * without a restart. Ignored when the URL carries a password.
   */
  passwordFile?: string | undefined;
}

// bigint columns arrive as strings from pg; keep them strings (no silent precision loss) and let the
// code that needs numbers convert deliberately.
export function createDb(
  url: string,
  poolMax = 10,
  onIdleError: (err: Error) => void = () => undefined,
  opts: CreateDbOptions = {},
): Kysely<Database> {
  const passwordFile = new URL(url).password === '' ? opts.passwordFile : undefined;
  const pool = new pg.Pool({
    connectionString: url,
    max: poolMax,
    connectionTimeoutMillis: 5_000,
    ...(passwordFile ? { password: () => readPasswordFile(passwordFile) } : {}),
  });
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

/** The file's content without its trailing newline (`echo secret > file` writes one). */
export function readPasswordFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new ConfigError(`database.passwordFile ${path} cannot be read`, { cause });
  }
  const password = text.replace(/\r?\n$/, '');
  if (password === '') throw new ConfigError(`database.passwordFile ${path} is empty`);
  return password;
}
