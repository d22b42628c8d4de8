import pg from 'pg';

/**
 * Cumulative activity counters of one database (pg_stat_database and pg_stat_user_tables), for load figures:
 * take two readings and divide the difference by the time between them. PostgreSQL flushes a backend's
 * counters at the end of its transactions at most once a second, so a reading lags by about that much.
 */
export interface PgActivity {
  xactCommit: number;
  xactRollback: number;
  /** Rows inserted, updated (HOT updates included) and deleted in the database's user tables. */
  tupInserted: number;
  tupUpdated: number;
  tupDeleted: number;
  /** Backends connected to this database now. */
  backends: number;
}

/** Reads the counters of the database `url` names (a fresh connection, so no stats snapshot is reused). */
export async function readPgActivity(url: string): Promise<PgActivity> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const db = await client.query<{ xact_commit: string; xact_rollback: string; numbackends: string }>(
      `select xact_commit, xact_rollback, numbackends from pg_stat_database where datname = current_database()`,
    );
    const tables = await client.query<{ ins: string | null; upd: string | null; del: string | null }>(
      `select sum(n_tup_ins) as ins, sum(n_tup_upd) as upd, sum(n_tup_del) as del from pg_stat_user_tables`,
    );
    const d = db.rows[0];
    const t = tables.rows[0];
    return {
      xactCommit: Number(d?.xact_commit ?? 0),
      xactRollback: Number(d?.xact_rollback ?? 0),
      tupInserted: Number(t?.ins ?? 0),
      tupUpdated: Number(t?.upd ?? 0),
      tupDeleted: Number(t?.del ?? 0),
      backends: Number(d?.numbackends ?? 0),
    };
  } finally {
    await client.end().catch(() => undefined);
  }
}
