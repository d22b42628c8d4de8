import { Migrator, type Kysely, type Migration, type MigrationResultSet } from 'kysely';
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
};

export function migrator(db: Kysely<unknown>): Migrator {
  return new Migrator({
    db,
    provider: { getMigrations: () => Promise.resolve(migrations) },
    migrationTableName: 'vigil_migration',
    migrationLockTableName: 'vigil_migration_lock',
  });
}

/** Applies every pending migration (under kysely's lock, so several processes may race safely). */
export async function migrateToLatest(db: Kysely<unknown>): Promise<string[]> {
  return applied(await migrator(db).migrateToLatest());
}

export async function migrateDown(db: Kysely<unknown>): Promise<string[]> {
  return applied(await migrator(db).migrateDown());
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
