import { Migrator, sql, type Kysely, type Migration, type MigrationResultSet } from 'kysely';
import { VigilError } from '../lib/errors.js';
import * as m0001 from './migrations/0001_registry.js';
import * as m0002 from './migrations/0002_events.js';
import * as m0003 from './migrations/0003_enrollment_tokens.js';
import * as m0004 from './migrations/0004_device_identity.js';
import * as m0005 from './migrations/0005_audit_log.js';
import * as m0006 from './migrations/0006_idempotency_keys.js';
import * as m0007 from './migrations/0007_device_configs.js';
import * as m0008 from './migrations/0008_rollouts.js';
import * as m0009 from './migrations/0009_rollout_signals.js';
import * as m0010 from './migrations/0010_media.js';
import * as m0011 from './migrations/0011_audit_tenant_index.js';
import * as m0012 from './migrations/0012_webhooks.js';
import * as m0013 from './migrations/0013_nats_key_unique.js';
import * as m0014 from './migrations/0014_config_known_good.js';
import * as m0015 from './migrations/0015_webhook_outbox.js';
import * as m0016 from './migrations/0016_alerts.js';
import * as m0018 from './migrations/0018_webhooks_enabled_index.js';
import * as m0021 from './migrations/0021_legal_holds.js';
import * as m0022 from './migrations/0022_agent_rollouts.js';
import * as m0023 from './migrations/0023_device_cameras.js';
import * as m0024 from './migrations/0024_scheduler_leases.js';
import * as m0025 from './migrations/0025_retention_policies.js';
import * as m0026 from './migrations/0026_erasure.js';
import * as m0027 from './migrations/0027_alerts_eido_pull.js';
import * as m0030 from './migrations/0030_console_sessions_reviews.js';
import * as m0032 from './migrations/0032_alert_incident_end.js';
import * as m0033 from './migrations/0033_edge_retention_sync.js';
import * as m0034 from './migrations/0034_rollouts_one_active.js';
import * as m0037 from './migrations/0037_events_site_index.js';
import * as m0038 from './migrations/0038_audit_chain_head.js';

// Migrations are listed in code (not read from a folder at run time) so that a bundled or relocated
// build runs exactly the set it was built with. Names sort in order of application.
const migrations: Record<string, Migration> = {
  '0001_registry': m0001,
  '0002_events': m0002,
  '0003_enrollment_tokens': m0003,
  '0004_device_identity': m0004,
  '0005_audit_log': m0005,
  '0006_idempotency_keys': m0006,
  '0007_device_configs': m0007,
  '0008_rollouts': m0008,
  '0009_rollout_signals': m0009,
  '0010_media': m0010,
  '0011_audit_tenant_index': m0011,
  '0012_webhooks': m0012,
  '0013_nats_key_unique': m0013,
  '0014_config_known_good': m0014,
  '0015_webhook_outbox': m0015,
  '0016_alerts': m0016,
  '0018_webhooks_enabled_index': m0018,
  '0021_legal_holds': m0021,
  '0022_agent_rollouts': m0022,
  '0023_device_cameras': m0023,
  '0024_scheduler_leases': m0024,
  '0025_retention_policies': m0025,
  '0026_erasure': m0026,
  '0027_alerts_eido_pull': m0027,
  '0030_console_sessions_reviews': m0030,
  '0032_alert_incident_end': m0032,
  '0033_edge_retention_sync': m0033,
  '0034_rollouts_one_active': m0034,
  '0037_events_site_index': m0037,
  '0038_audit_chain_head': m0038,
};

/** pg_advisory_xact_lock key of migrations: the bytes of ASCII "vigilmig" as a signed int64. */
export const MIGRATION_LOCK = 0x7669_6769_6c6d_6967n;

export function migrator(db: Kysely<unknown>, opts: { disableTransactions?: boolean } = {}): Migrator {
  return new Migrator({
    db,
    provider: { getMigrations: () => Promise.resolve(migrations) },
    migrationTableName: 'vigil_migration',
    migrationLockTableName: 'vigil_migration_lock',
    ...opts,
  });
}

/**
 * Applies every pending migration, all in one transaction serialized across processes, so several processes
 * may start at once (and through pgbouncer: see runInOneTransaction).
 */
export async function migrateToLatest(db: Kysely<unknown>): Promise<string[]> {
  return applied(await runInOneTransaction(db, (m) => m.migrateToLatest()));
}

export async function migrateDown(db: Kysely<unknown>): Promise<string[]> {
  return applied(await runInOneTransaction(db, (m) => m.migrateDown()));
}

/**
 * kysely 0.28 serializes migrations with a session-level advisory lock taken on its connection before, and
 * released after, its own transaction. Through pgbouncer in transaction pooling mode those are three separate
 * server transactions that may land on three different server connections: the unlock misses, the lock stays
 * held by an idle server connection, and the next migration run waits on it for kysely's hour-long
 * lock_timeout. So the whole run happens inside one transaction of ours (one server connection for its whole
 * length, whatever the pooler), which first takes a transaction-scoped lock: concurrent runs wait there, and
 * kysely's own lock and unlock fall inside the same transaction. Any failure rolls everything back.
 */
async function runInOneTransaction(
  db: Kysely<unknown>,
  run: (m: Migrator) => Promise<MigrationResultSet>,
): Promise<MigrationResultSet> {
  return db.connection().execute(async (conn) => {
    await sql`begin`.execute(conn);
    try {
      await sql`select pg_advisory_xact_lock(${sql.lit(MIGRATION_LOCK)})`.execute(conn);
      const result = await run(migrator(conn, { disableTransactions: true }));
      const failed = result.error !== undefined || result.results?.some((r) => r.status === 'Error');
      await sql.raw(failed ? 'rollback' : 'commit').execute(conn);
      return result;
    } catch (err) {
      await sql`rollback`.execute(conn).catch(() => undefined);
      throw err;
    }
  });
}

function applied({ error, results }: MigrationResultSet): string[] {
  const failed = results?.find((r) => r.status === 'Error');
  if (error || failed) {
    const name = failed?.migrationName ?? 'unknown';
    throw new VigilError(
      'MIGRATION_FAILED',
      `migration ${name} failed: ${String((error as Error | undefined)?.message ?? error)}`,
      false,
      {
        cause: error,
      },
    );
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
