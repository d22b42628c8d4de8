// The rollout executor against PostgreSQL: leader election by advisory lock, and one rollout driven through
// canary, waves and completion with a stand-in ConfigIssuer.
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useDatabase } from '@vigil/testkit';
import { AuditLog } from '../src/audit/audit-log.js';
import type { DeviceConfigState } from '../src/config-ota/issuer.js';
import { ROLLOUT_LEADER_LOCK, RolloutExecutor, type RolloutIssuer } from '../src/rollouts/executor.js';
import { RolloutStore } from '../src/rollouts/store.js';
import { createDb, migrateToLatest } from '../src/index.js';
import type { Database } from '../src/storage/tables.js';

const log = pino({ level: 'silent' });

/** Issues versions in memory; devices "apply" whatever they were issued when `applyAll` runs. */
class FakeIssuer implements RolloutIssuer {
  readonly versions = new Map<string, bigint>();
  readonly applied = new Map<string, bigint>();
  readonly bodies = new Map<string, unknown>();
  issue(input: {
    deviceIds: string[];
    body: Record<string, unknown>;
  }): Promise<Array<{ deviceId: string; version: bigint }>> {
    return Promise.resolve(
      input.deviceIds.map((deviceId) => {
        const version = (this.versions.get(deviceId) ?? 0n) + 1n;
        this.versions.set(deviceId, version);
        this.bodies.set(deviceId, input.body);
        return { deviceId, version };
      }),
    );
  }
  applyAll(): void {
    for (const [d, v] of this.versions) this.applied.set(d, v);
  }
  desiredAndReported(_t: string, ids: string[]): Promise<DeviceConfigState[]> {
    return Promise.resolve(
      ids.map((deviceId) => {
        const desired = this.versions.get(deviceId) ?? 0n;
        const applied = this.applied.get(deviceId) ?? null;
        return {
          deviceId,
          desiredVersion: desired,
          reportedVersion: applied,
          appliedVersion: applied,
          state: applied !== null && applied >= desired ? 'applied' : 'pending',
          reason: '',
          health: 'ok',
          reportedAt: new Date(),
          goodVersion: null,
        };
      }),
    );
  }
  effectiveConfigBody(): Promise<Record<string, unknown>> {
    return Promise.resolve({ attributes: { rev: 'old' } });
  }
  /** Nothing applied before the first tick: devices run their local config. */
  knownConfigs(): ReturnType<RolloutIssuer['knownConfigs']> {
    return Promise.resolve({ applied: new Map(), good: new Map() });
  }
  readonly promoted: Array<{ deviceId: string; version: bigint }> = [];
  promoteKnownGood(_t: string, rows: ReadonlyArray<{ deviceId: string; version: bigint }>): Promise<void> {
    this.promoted.push(...rows);
    return Promise.resolve();
  }
}

describe('rollout executor', () => {
  const dbUrl = useDatabase();
  let db: Kysely<Database>;
  beforeAll(async () => {
    db = createDb(dbUrl());
    await migrateToLatest(db as Kysely<unknown>);
    await sql`insert into tenants (id, name) values ('acme', 'acme')`.execute(db);
    await sql`insert into sites (tenant_id, id, name) values ('acme', 'hq', 'hq')`.execute(db);
    for (let i = 0; i < 10; i++)
      await sql`insert into devices (tenant_id, id, site_id, enrolled_at) values ('acme', ${`gw-${i}`}, 'hq', now())`.execute(
        db,
      );
  });
  afterAll(async () => {
    await db?.destroy();
  });

  const executor = (issuer: RolloutIssuer): RolloutExecutor =>
    new RolloutExecutor({
      db,
      store: new RolloutStore(db),
      issuer,
      audit: new AuditLog(db, log, new Registry()),
      log,
    });

  it('only the process holding the advisory lock ticks', async () => {
    const other = new pg.Client({ connectionString: dbUrl() });
    await other.connect();
    try {
      await other.query('select pg_advisory_lock($1)', [ROLLOUT_LEADER_LOCK.toString()]);
      expect(await executor(new FakeIssuer()).tickAsLeader()).toBe(false);
      await other.query('select pg_advisory_unlock($1)', [ROLLOUT_LEADER_LOCK.toString()]);
      expect(await executor(new FakeIssuer()).tickAsLeader()).toBe(true);
    } finally {
      await other.end();
    }
  });

  it('drives canary, waves and completion; the devices the gates passed become known good', async () => {
    const store = new RolloutStore(db);
    const issuer = new FakeIssuer();
    const ex = executor(issuer);
    const id = '0190f5c2-8a3e-7b1c-9d2e-4f5a6b7c8d9e';
    expect(
      await store.create({
        id,
        tenantId: 'acme',
        scope: 'site',
        scopeId: 'hq',
        body: { attributes: { rev: 'new' } },
        spec: {
          canary: 2,
          waves: [50, 100],
          gateWindowSeconds: 60,
          soakSeconds: 0,
          gates: { appliedRatio: 1, allowDegraded: true },
          abort: { failureRatio: 0.2, minReported: 2 },
        },
        createdBy: 'user@acme',
        now: new Date(),
      }),
    ).toBe(10);
    const states: string[] = [];
    for (let i = 0; i < 8; i++) {
      await ex.tick();
      issuer.applyAll();
      const r = await store.get('acme', id);
      states.push(`${r!.state}:${r!.current_wave}:${issuer.versions.size}`);
      if (r!.state === 'completed') break;
    }
    expect(states).toEqual(['running:0:2', 'running:1:5', 'running:2:10', 'completed:2:10']);
    const rows = await store.devices(id);
    expect(rows.every((r) => r.status === 'applied' && r.issued_version === '1')).toBe(true);
    // They ran no remote config before: nothing to fall back to but a last known good.
    expect(rows[0]!.previous_body).toBeNull();
    expect(issuer.promoted.map((p) => p.deviceId).sort()).toEqual(rows.map((r) => r.device_id).sort());
    expect(issuer.promoted.every((p) => p.version === 1n)).toBe(true);
    const audit = await db
      .selectFrom('audit_log')
      .select('action')
      .where('action', 'like', 'rollout.%')
      .execute();
    expect(audit.map((a) => a.action)).toEqual(['rollout.completed']);
  });
});
