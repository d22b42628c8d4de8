import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useDatabase } from '@vigil/testkit';
import { createDb, FleetRegistry, migrateDown, migrateToLatest } from '../src/index.js';
import type { Database } from '../src/storage/tables.js';

async function tables(db: Kysely<Database>): Promise<string[]> {
  const { rows } = await sql<{ table_name: string }>`
    select table_name from information_schema.tables where table_schema = 'public' order by table_name`.execute(
    db,
  );
  return rows.map((r) => r.table_name);
}

describe('PostgreSQL migrations', () => {
  const dbUrl = useDatabase();
  let db: Kysely<Database>;
  beforeAll(() => {
    db = createDb(dbUrl());
  });
  afterAll(() => db.destroy());

  it('apply on an empty database, then are a no-op', async () => {
    expect(await migrateToLatest(db as Kysely<unknown>)).toEqual([
      '0001_registry',
      '0002_events',
      '0003_enrollment_tokens',
      '0004_device_identity',
      '0005_audit_log',
      '0006_idempotency_keys',
      '0007_device_configs',
      '0008_rollouts',
      '0009_rollout_signals',
      '0010_media',
      '0011_audit_tenant_index',
      '0012_webhooks',
      '0013_nats_key_unique',
      '0014_config_known_good',
      '0015_webhook_outbox',
      '0016_alerts',
      '0018_webhooks_enabled_index',
      '0021_legal_holds',
      '0022_agent_rollouts',
      '0023_device_cameras',
      '0024_scheduler_leases',
      '0025_retention_policies',
      '0026_erasure',
      '0027_alerts_eido_pull',
      '0030_console_sessions_reviews',
      '0032_alert_incident_end',
      '0033_edge_retention_sync',
      '0034_rollouts_one_active',
      '0037_events_site_index',
      '0038_audit_chain_head',
    ]);
    expect(await tables(db)).toEqual(
      expect.arrayContaining([
        'audit_log',
        'config_documents',
        'device_certificates',
        'device_config_state',
        'device_configs',
        'devices',
        'enrollment_tokens',
        'idempotency_keys',
        'rollout_devices',
        'rollouts',
        'sites',
        'tenants',
        'vigil_migration',
        'webhook_deliveries',
        'webhook_outbox',
        'webhooks',
      ]),
    );
    expect(await migrateToLatest(db as Kysely<unknown>)).toEqual([]);
  });

  it('build a registry that keeps tenants apart', async () => {
    const reg = new FleetRegistry(db);
    await reg.registerDevice({ tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' });
    await reg.registerDevice({ tenantId: 'globex', siteId: 'hq', deviceId: 'gw-1' });
    expect(await reg.recordHeartbeat('acme', 'gw-1', new Date('2026-01-01T00:00:00Z'), '0.1.0', 3n)).toBe(
      true,
    );
    expect(await reg.recordHeartbeat('acme', 'nope', new Date(), '0.1.0', 0n)).toBe(false);
    const acme = await reg.listDevices('acme');
    expect(acme).toHaveLength(1);
    expect(acme[0]).toMatchObject({ id: 'gw-1', config_version: '3', heartbeats: '1' });
    expect((await reg.listDevices('globex'))[0]).toMatchObject({ heartbeats: '0', last_seen_at: null });
  });

  it('partition events by UTC day, created idempotently', async () => {
    const { rows } = await sql<{
      name: string;
    }>`select vigil_ensure_event_partition('2026-11-27') as name`.execute(db);
    expect(rows[0]?.name).toBe('events_20261127');
    await sql`select vigil_ensure_event_partition('2026-11-27')`.execute(db);
    const bounds = await sql<{ b: string }>`
      select pg_get_expr(c.relpartbound, c.oid) as b from pg_class c where c.relname = 'events_20261127'`.execute(
      db,
    );
    expect(bounds.rows[0]?.b).toBe(
      "FOR VALUES FROM ('2026-11-27 00:00:00+00') TO ('2026-11-28 00:00:00+00')",
    );
    // 0037's index on the parent is created on each new partition.
    const site = await sql<{ def: string }>`
      select indexdef as def from pg_indexes where tablename = 'events_20261127' and indexdef like '%site_id%'`.execute(
      db,
    );
    expect(site.rows.map((r) => r.def)).toEqual([
      expect.stringContaining('(tenant_id, site_id, occurred_at DESC, event_id DESC)'),
    ]);
  });

  it('roll back and forward again', async () => {
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0038_audit_chain_head']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0037_events_site_index']);
    const siteIdx = await sql<{ n: number }>`
      select count(*)::int as n from pg_indexes where indexname like 'events%site%'`.execute(db);
    expect(siteIdx.rows[0]?.n).toBe(0);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0034_rollouts_one_active']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0033_edge_retention_sync']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0032_alert_incident_end']);
    const endAt = await sql<{ n: number }>`
      select count(*)::int as n from information_schema.columns
      where table_name = 'alert_incidents' and column_name in ('end_at', 'end_event_id', 'end_due_at')`.execute(
      db,
    );
    expect(endAt.rows[0]?.n).toBe(0);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0030_console_sessions_reviews']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0027_alerts_eido_pull']);
    const lastSeen = await sql<{ n: number }>`
      select count(*)::int as n from information_schema.columns
      where table_name = 'alert_incidents' and column_name = 'last_seen_at'`.execute(db);
    expect(lastSeen.rows[0]?.n).toBe(0);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0026_erasure']);
    expect(await tables(db)).not.toContain('erasure_requests');
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0025_retention_policies']);
    expect(await tables(db)).not.toContain('retention_policies');
    // Holds of 0021 (one active, one released) keep their meaning when 0025 generalizes the table.
    await sql`insert into legal_holds (tenant_id, kind, device_id, reason, placed_by) values ('mh', 'device', 'gw', 'r', 'a')`.execute(
      db,
    );
    await sql`insert into legal_holds (tenant_id, kind, device_id, reason, placed_by, released_by, released_at, release_reason)
      values ('mh', 'device', 'gw2', 'r', 'a', 'b', now(), 'done')`.execute(db);
    expect(await migrateToLatest(db as Kysely<unknown>)).toEqual([
      '0025_retention_policies',
      '0026_erasure',
      '0027_alerts_eido_pull',
      '0030_console_sessions_reviews',
      '0032_alert_incident_end',
      '0033_edge_retention_sync',
      '0034_rollouts_one_active',
      '0037_events_site_index',
      '0038_audit_chain_head',
    ]);
    const states = await sql<{ device_id: string; state: string }>`
      select device_id, state from legal_holds where tenant_id = 'mh' order by device_id`.execute(db);
    expect(states.rows).toEqual([
      { device_id: 'gw', state: 'active' },
      { device_id: 'gw2', state: 'released' },
    ]);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0038_audit_chain_head']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0037_events_site_index']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0034_rollouts_one_active']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0033_edge_retention_sync']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0032_alert_incident_end']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0030_console_sessions_reviews']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0027_alerts_eido_pull']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0026_erasure']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0025_retention_policies']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0024_scheduler_leases']);
    expect(await tables(db)).not.toContain('scheduler_leases');
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0023_device_cameras']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0022_agent_rollouts']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0021_legal_holds']);
    expect(await tables(db)).not.toContain('legal_holds');
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0018_webhooks_enabled_index']);
    const enabledIdx = await sql<{ n: number }>`
      select count(*)::int as n from pg_indexes where indexname = 'webhooks_tenant_enabled'`.execute(db);
    expect(enabledIdx.rows[0]?.n).toBe(0);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0016_alerts']);
    expect(await tables(db)).not.toContain('alert_messages');
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0015_webhook_outbox']);
    expect(await tables(db)).not.toContain('webhook_outbox');
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0014_config_known_good']);
    const known = await sql<{ n: number }>`
      select count(*)::int as n from information_schema.columns
      where column_name in ('good_version', 'kind', 'restore_source')
        and table_name in ('device_config_state', 'device_configs', 'rollout_devices')`.execute(db);
    expect(known.rows[0]?.n).toBe(0);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0013_nats_key_unique']);
    const keyIdx = await sql<{ n: number }>`
      select count(*)::int as n from pg_indexes where indexname = 'devices_nats_public_key_active'`.execute(
      db,
    );
    expect(keyIdx.rows[0]?.n).toBe(0);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0012_webhooks']);
    expect(await tables(db)).not.toContain('webhooks');
    expect(await tables(db)).not.toContain('webhook_deliveries');
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0011_audit_tenant_index']);
    const idx = await sql<{ n: number }>`
      select count(*)::int as n from pg_indexes where indexname = 'audit_log_tenant_seq'`.execute(db);
    expect(idx.rows[0]?.n).toBe(0);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0010_media']);
    expect(await tables(db)).not.toContain('media');
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0009_rollout_signals']);
    const cols = await sql<{ n: number }>`
      select count(*)::int as n from information_schema.columns
      where column_name in ('mean_inference_ms', 'events_per_minute', 'baseline_inference_ms')`.execute(db);
    expect(cols.rows[0]?.n).toBe(0);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0008_rollouts']);
    expect(await tables(db)).not.toContain('rollouts');
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0007_device_configs']);
    expect(await tables(db)).not.toContain('device_configs');
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0006_idempotency_keys']);
    expect(await tables(db)).not.toContain('idempotency_keys');
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0005_audit_log']);
    expect(await tables(db)).not.toContain('audit_log');
    const fn = await sql<{ n: number }>`
      select count(*)::int as n from pg_proc where proname = 'vigil_audit_log_append_only'`.execute(db);
    expect(fn.rows[0]?.n).toBe(0);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0004_device_identity']);
    expect(await tables(db)).not.toContain('device_certificates');
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0003_enrollment_tokens']);
    expect(await tables(db)).not.toContain('enrollment_tokens');
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0002_events']);
    expect(await tables(db)).not.toContain('events');
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0001_registry']);
    expect(await tables(db)).not.toContain('devices');
    expect(await migrateToLatest(db as Kysely<unknown>)).toEqual([
      '0001_registry',
      '0002_events',
      '0003_enrollment_tokens',
      '0004_device_identity',
      '0005_audit_log',
      '0006_idempotency_keys',
      '0007_device_configs',
      '0008_rollouts',
      '0009_rollout_signals',
      '0010_media',
      '0011_audit_tenant_index',
      '0012_webhooks',
      '0013_nats_key_unique',
      '0014_config_known_good',
      '0015_webhook_outbox',
      '0016_alerts',
      '0018_webhooks_enabled_index',
      '0021_legal_holds',
      '0022_agent_rollouts',
      '0023_device_cameras',
      '0024_scheduler_leases',
      '0025_retention_policies',
      '0026_erasure',
      '0027_alerts_eido_pull',
      '0030_console_sessions_reviews',
      '0032_alert_incident_end',
      '0033_edge_retention_sync',
      '0034_rollouts_one_active',
      '0037_events_site_index',
      '0038_audit_chain_head',
    ]);
  });

  it('0013 backfills current NATS keys; of two active devices sharing one, the first enrolled keeps it', async () => {
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0038_audit_chain_head']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0037_events_site_index']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0034_rollouts_one_active']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0033_edge_retention_sync']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0032_alert_incident_end']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0030_console_sessions_reviews']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0027_alerts_eido_pull']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0026_erasure']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0025_retention_policies']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0024_scheduler_leases']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0023_device_cameras']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0022_agent_rollouts']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0021_legal_holds']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0018_webhooks_enabled_index']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0016_alerts']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0015_webhook_outbox']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0014_config_known_good']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0013_nats_key_unique']);
    const t = (s: string): Date => new Date(`2026-01-0${s}T00:00:00Z`);
    await sql`insert into tenants (id, name) values ('mk-a', 'a'), ('mk-b', 'b') on conflict do nothing`.execute(
      db,
    );
    await sql`insert into devices (tenant_id, id, enrolled_at) values
      ('mk-b', 'victim', ${t('1')}), ('mk-a', 'thief', ${t('2')}), ('mk-a', 'plain', ${t('1')}),
      ('mk-a', 'gone', ${t('1')})`.execute(db);
    await sql`update devices set revoked_at = ${t('3')} where tenant_id = 'mk-a' and id = 'gone'`.execute(db);
    const cert = (serial: string, tenant: string, device: string, key: string, issued: Date) =>
      sql`insert into device_certificates
        (serial, tenant_id, device_id, fingerprint_sha256, not_before, not_after, nats_public_key, issued_at, issued_by)
        values (${serial}, ${tenant}, ${device}, ${serial}, ${issued}, ${t('9')}, ${key}, ${issued}, 'enroll')`.execute(
        db,
      );
    await cert('S1', 'mk-b', 'victim', 'UKEYSHARED', t('1'));
    await cert('S2', 'mk-a', 'thief', 'UKEYSHARED', t('2'));
    await cert('S3', 'mk-a', 'plain', 'UKEYOLD', t('1'));
    await cert('S4', 'mk-a', 'plain', 'UKEYNEW', t('2'));
    await cert('S5', 'mk-a', 'gone', 'UKEYNEW2', t('1'));
    expect(await migrateToLatest(db as Kysely<unknown>)).toEqual([
      '0013_nats_key_unique',
      '0014_config_known_good',
      '0015_webhook_outbox',
      '0016_alerts',
      '0018_webhooks_enabled_index',
      '0021_legal_holds',
      '0022_agent_rollouts',
      '0023_device_cameras',
      '0024_scheduler_leases',
      '0025_retention_policies',
      '0026_erasure',
      '0027_alerts_eido_pull',
      '0030_console_sessions_reviews',
      '0032_alert_incident_end',
      '0033_edge_retention_sync',
      '0034_rollouts_one_active',
      '0037_events_site_index',
      '0038_audit_chain_head',
    ]);
    const rows = await db
      .selectFrom('devices')
      .select(['id', 'nats_public_key'])
      .where('tenant_id', 'in', ['mk-a', 'mk-b'])
      .orderBy('id')
      .execute();
    expect(rows).toEqual([
      { id: 'gone', nats_public_key: null },
      { id: 'plain', nats_public_key: 'UKEYNEW' },
      { id: 'thief', nats_public_key: null },
      { id: 'victim', nats_public_key: 'UKEYSHARED' },
    ]);
  });

  it('0034 makes one active rollout per tenant a constraint, and will not build over a race that happened', async () => {
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0038_audit_chain_head']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0037_events_site_index']);
    expect(await migrateDown(db as Kysely<unknown>)).toEqual(['0034_rollouts_one_active']);
    const rollout = (id: string, tenant: string, state: string) =>
      sql`insert into rollouts (id, tenant_id, scope, scope_id, spec, state, created_by, created_at, updated_at)
        values (${id}, ${tenant}, 'tenant', ${tenant}, '{}', ${state}, 'a', now(), now())`.execute(db);
    await rollout('r1', 'ra', 'running');
    await rollout('r2', 'ra', 'paused');
    await rollout('r3', 'rb', 'running');
    await expect(migrateToLatest(db as Kysely<unknown>)).rejects.toThrow(
      /0034_rollouts_one_active failed: more than one active rollout in a tenant.*ra: r1, r2$/,
    );
    // Nothing was changed: the operator ends one of them.
    await sql`update rollouts set state = 'rolled_back' where id = 'r1'`.execute(db);
    expect(await migrateToLatest(db as Kysely<unknown>)).toEqual([
      '0034_rollouts_one_active',
      '0037_events_site_index',
      '0038_audit_chain_head',
    ]);
    // Ended rollouts do not count; an active one more in a tenant is refused, in any active state.
    await rollout('r4', 'ra', 'completed');
    for (const state of ['pending', 'running', 'paused', 'aborted', 'rolling_back'])
      await expect(rollout(`r-${state}`, 'rb', state)).rejects.toMatchObject({
        code: '23505',
        constraint: 'rollouts_one_active',
      });
    await rollout('r5', 'rc', 'pending');
    await sql`delete from rollouts where id in ('r1', 'r2', 'r3', 'r4', 'r5')`.execute(db);
  });
});
