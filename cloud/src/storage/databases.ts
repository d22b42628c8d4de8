import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { CloudConfig } from '../config/schema.js';
import { createDb } from './db.js';
import { ReplicaReads, type ReadHeavy } from './replica.js';
import type { Database } from './tables.js';

export interface Databases {
  /** The primary: every write, every read that must see writes (through pgbouncer or not). */
  db: Kysely<Database>;
  /** The events and devices lists: the replica while fresh (database.replicaUrl), else the primary. */
  readHeavy: ReadHeavy;
  replica: ReplicaReads | undefined;
  close(): Promise<void>;
}

/** The primary pool and, with database.replicaUrl, the replica pool and its lag checks (started). */
export function openDatabases(
  config: CloudConfig['database'],
  deps: { log: Logger; metrics: Registry; now?: (() => Date) | undefined },
): Databases {
  const onIdleError = (which: string) => (err: Error) =>
    deps.log.warn({ err: err.message }, `PostgreSQL ${which} connection lost; the next query reconnects`);
  const options = { passwordFile: config.passwordFile };
  const db = createDb(config.url, config.poolMax, onIdleError('primary'), options);
  if (config.replicaUrl === undefined) {
    return { db, readHeavy: (query) => query(db), replica: undefined, close: () => db.destroy() };
  }
  const replicaDb = createDb(config.replicaUrl, config.replicaPoolMax, onIdleError('replica'), options);
  const replica = new ReplicaReads({
    primary: db,
    replica: replicaDb,
    maxLagSeconds: config.replicaMaxLagSeconds,
    checkIntervalMs: config.replicaLagCheckIntervalMs,
    log: deps.log.child({ component: 'replica' }),
    metrics: deps.metrics,
    now: deps.now,
  });
  replica.start();
  return {
    db,
    readHeavy: (query) => replica.read(query),
    replica,
    close: async () => {
      await replica.stop();
      await replicaDb.destroy();
      await db.destroy();
    },
  };
}
