// Rollbacks restore what devices last ran healthy, and gates wait for evidence (issue #13, findings 1 and 2):
// the real cloud (API, ConfigIssuer, PostgreSQL) with the rollout executor ticked by hand on an injected clock
// (the cloud's own executor is kept out by holding the leader lock), and devices that report ConfigStatus and
// heartbeats as the agent does, through the cloud's own recordStatus and recordHeartbeat.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigState, ConfigStatus, DeviceHealth } from '@vigil/proto';
import { ensureDevConfigSigningKey } from '../src/index.js';
import { RolloutExecutor } from '../src/rollouts/executor.js';
import { RolloutStore } from '../src/rollouts/store.js';
import { useApiCloud } from './api-fixtures.js';

const keyDir = mkdtempSync(join(tmpdir(), 'vigil-rollouts-known-good-'));
afterAll(() => rmSync(keyDir, { recursive: true, force: true }));
const keyReady = ensureDevConfigSigningKey(keyDir);

const IDS = Array.from({ length: 10 }, (_, i) => `gw-${i}`);
let clock = Date.now();
const now = (): Date => new Date(clock);
const step = (s = 1): void => void (clock += s * 1000);

interface RolloutJson {
  id: string;
  state: string;
  current_wave: number;
  abort_reason: string | null;
  totals: Record<string, number>;
}
interface DeviceJson {
  device_id: string;
  status: string;
  issued_version: string | null;
  rollback_version: string | null;
  applied_version: string | null;
  desired_version: string;
  last_known_good_version: string | null;
}
interface PageJson {
  items: DeviceJson[];
  next_after: number | null;
}

/** A device as the agent behaves: takes the newest version, refuses some, reports its last outcome. */
interface Dev {
  applied: bigint;
  last: { version: bigint; state: ConfigState };
  health: DeviceHealth;
}

describe('rollouts: rollback to the last known good config; gates wait for evidence', () => {
  beforeAll(async () => {
    await keyReady;
  });
  // Every role but the scheduler: the cloud's own executor ticks on its own timer and real clock, keep it out
  // and tick ours by hand.
  const t = useApiCloud(
    {
      configSigning: { privateJwkFile: join(keyDir, 'config-signing.jwk.json') },
      roles: ['api', 'ingest', 'media', 'integrations', 'realtime'],
    },
    { now },
  );
  const devs = new Map<string, Dev>(
    IDS.map((id) => [
      id,
      { applied: 0n, last: { version: 0n, state: ConfigState.CONFIG_STATE_UNSPECIFIED }, health: 1 },
    ]),
  );
  let ex: RolloutExecutor;
  let admin: string;

  beforeAll(async () => {
    const db = t.cloud().db;
    await sql`insert into tenants (id, name) values ('acme', 'acme') on conflict do nothing`.execute(db);
    await sql`insert into sites (tenant_id, id, name) values ('acme', 'hq', 'hq') on conflict do nothing`.execute(
      db,
    );
    for (const id of IDS)
      await sql`insert into devices (tenant_id, id, site_id, enrolled_at) values ('acme', ${id}, 'hq', now())`.execute(
        db,
      );
    ex = new RolloutExecutor({
      db,
      store: new RolloutStore(db),
      issuer: t.cloud().configs,
      audit: t.cloud().audit,
      log: pino({ level: 'silent' }),
      now,
    });
    admin = await t.token('acme', ['admin']);
  });

  /** Each device takes its newest issued version (unless `refuse` says no) and reports, as the agent does. */
  async function sync(ids: readonly string[], refuse: (id: string, rev: string) => boolean = () => false) {
    const db = t.cloud().db;
    for (const id of ids) {
      const d = devs.get(id)!;
      const newest = await db
        .selectFrom('device_configs')
        .select(['version', 'body'])
        .where('tenant_id', '=', 'acme')
        .where('device_id', '=', id)
        .orderBy('version', 'desc')
        .limit(1)
        .executeTakeFirst();
      const have = d.last.version > d.applied ? d.last.version : d.applied;
      if (newest && BigInt(newest.version) > have) {
        const v = BigInt(newest.version);
        const rev = String((newest.body as { attributes?: Record<string, string> }).attributes?.rev ?? '');
        if (refuse(id, rev)) d.last = { version: v, state: ConfigState.CONFIG_STATE_FAILED };
        else {
          d.applied = v;
          d.last = { version: v, state: ConfigState.CONFIG_STATE_APPLIED };
        }
      }
      step(0.01);
      await t.cloud().configs.recordStatus(
        'acme',
        id,
        ConfigStatus.fromPartial({
          tenantId: 'acme',
          deviceId: id,
          version: d.last.version,
          appliedVersion: d.applied,
          state: d.last.state,
          reason: d.last.state === ConfigState.CONFIG_STATE_FAILED ? 'invalid: refused' : '',
          health: d.health,
          reportedAt: now(),
        }),
      );
    }
  }

  async function heartbeat(ids: readonly string[], eventsPerMinute = 3): Promise<void> {
    for (const id of ids) {
      const d = devs.get(id)!;
      step(0.01);
      await t.cloud().registry.recordHeartbeat('acme', id, now(), 'test', d.applied, {
        health: d.health === DeviceHealth.DEVICE_HEALTH_OK ? 'ok' : 'degraded',
        meanFps: 5,
        meanInferenceMs: 14,
        eventsPerMinute,
      });
    }
  }

  async function api<T = RolloutJson>(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; json: T }> {
    const res = await t.get(path, admin, {
      method,
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, json: (await res.json()) as T };
  }

  async function state(id: string): Promise<string> {
    const r = await t
      .cloud()
      .db.selectFrom('rollouts')
      .select('state')
      .where('id', '=', id)
      .executeTakeFirst();
    return r!.state;
  }

  /** Ticks (devices syncing between ticks) until the rollout reaches `want`. */
  async function driveTo(id: string, want: string, between: () => Promise<void>): Promise<void> {
    for (let i = 0; i < 30 && (await state(id)) !== want; i++) {
      await ex.tick();
      step();
      await between();
    }
    expect(await state(id)).toBe(want);
  }

  /** The `attributes.rev` of the body each device runs (per its last report), from PostgreSQL. */
  async function runs(): Promise<Record<string, string>> {
    const rows = await sql<{ device_id: string; rev: string | null }>`
      select s.device_id, c.body -> 'attributes' ->> 'rev' as rev
      from device_config_state s
      left join device_configs c on c.tenant_id = s.tenant_id and c.device_id = s.device_id
        and c.version = s.applied_version
      where s.tenant_id = 'acme' order by s.device_id`.execute(t.cloud().db);
    return Object.fromEntries(rows.rows.map((r) => [r.device_id, r.rev ?? 'local']));
  }

  const spec = (over: Record<string, unknown> = {}) => ({
    canary: 10,
    waves: [100],
    gate_window_seconds: 60,
    soak_seconds: 0,
    gates: { applied_ratio: 0.9 },
    abort: { failure_ratio: 0.2, min_reported: 5 },
    ...over,
  });

  it('a rollout with FAILED devices aborts, then a second one aborts: every device ends on its last known good body', async () => {
    // Before: gw-0..gw-8 run `base` (gw-8 reports degraded: never known good), gw-9 its local config only.
    step();
    await t.cloud().configs.issue({
      tenantId: 'acme',
      deviceIds: IDS.slice(0, 9),
      body: { attributes: { rev: 'base' } },
      actor: 'user@acme',
    });
    devs.get('gw-8')!.health = DeviceHealth.DEVICE_HEALTH_DEGRADED;
    await sync(IDS);
    await heartbeat(IDS);

    // Rollout A: three devices refuse it (FAILED); 3 of 10 > 0.2: it aborts.
    const failing = new Set(['gw-1', 'gw-4', 'gw-7']);
    const a = await api('POST', '/v1/rollouts', {
      target: { scope: 'tenant' },
      body: { attributes: { rev: 'A' } },
      spec: spec(),
    });
    expect(a.status).toBe(201);
    await driveTo(a.json.id, 'rolled_back', () => sync(IDS, (id, rev) => rev === 'A' && failing.has(id)));
    expect((await api('GET', `/v1/rollouts/${a.json.id}`)).json.abort_reason).toMatch(/failure ratio/);

    // Rollout B: everyone applies it; the operator aborts it.
    const b = await api('POST', '/v1/rollouts', {
      target: { scope: 'tenant' },
      body: { attributes: { rev: 'B' } },
      spec: spec({ soak_seconds: 3600 }),
    });
    expect(b.status).toBe(201);
    await ex.tick();
    step();
    // Devices that refused A refuse it again if it is ever re-sent (as a real bad config would fail again).
    const refuseA = (id: string, rev: string): boolean => rev === 'A' && failing.has(id);
    await sync(IDS, refuseA);
    await heartbeat(IDS);
    expect((await api('POST', `/v1/rollouts/${b.json.id}/abort`, { reason: 'test' })).status).toBe(200);
    await driveTo(b.json.id, 'rolled_back', () => sync(IDS, refuseA));

    // Every device that had a known good config (or ran one before) runs `base` again; gw-9 never ran a
    // remote config: nothing to restore, left on B and reported as such.
    expect(await runs()).toEqual({
      ...Object.fromEntries(IDS.slice(0, 9).map((id) => [id, 'base'])),
      'gw-9': 'B',
    });

    // The API says so, per device.
    const page = await api<PageJson>('GET', `/v1/rollouts/${b.json.id}/devices?limit=500`);
    expect(page.status).toBe(200);
    const byId = new Map(page.json.items.map((d) => [d.device_id, d]));
    expect(page.json.next_after).toBeNull();
    for (const id of IDS.slice(0, 8)) {
      const d = byId.get(id)!;
      expect(d, id).toMatchObject({
        status: 'rolled_back',
        restore_source: 'last_known_good',
        config_state: 'applied',
        runs_last_known_good: true,
        health: 'ok',
      });
      expect(d.applied_version, id).toBe(d.rollback_version);
      expect(d.desired_version, id).toBe(d.rollback_version);
      // the restored version applied healthy is itself the newest known good
      expect(d.last_known_good_version, id).toBe(d.rollback_version);
    }
    expect(byId.get('gw-8')).toMatchObject({
      status: 'rolled_back',
      restore_source: 'ran_before',
      last_known_good_version: null,
      runs_last_known_good: false,
      health: 'degraded',
    });
    expect(byId.get('gw-9')).toMatchObject({
      status: 'not_restored',
      reason: 'no_known_good_config',
      last_known_good_version: null,
      rollback_version: null,
    });
    expect(byId.get('gw-9')!.applied_version).toBe(byId.get('gw-9')!.issued_version);
    const view = (await api('GET', `/v1/rollouts/${b.json.id}`)).json;
    expect(view.state).toBe('rolled_back');
    expect(view.totals).toMatchObject({
      rolled_back: 9,
      not_restored: 1,
      rolling_back: 0,
      restore_failed: 0,
    });
    // A's failed devices were part of A's rollback too.
    const aPage = (await api<PageJson>('GET', `/v1/rollouts/${a.json.id}/devices`)).json;
    for (const id of failing)
      expect(aPage.items.find((d) => d.device_id === id)).toMatchObject({ status: 'rolled_back' });
  }, 60_000);

  it('soak 0 with an event-rate gate: applied devices without a heartbeat hold the canary; 0 events abort', async () => {
    const c = await api('POST', '/v1/rollouts', {
      target: { scope: 'tenant' },
      body: { attributes: { rev: 'C' } },
      spec: spec({
        canary: 2,
        waves: [50, 100],
        gates: { applied_ratio: 1, event_rate: { min: 1 } },
        abort: { failure_ratio: 0.2, min_reported: 2 },
      }),
    });
    expect(c.status).toBe(201);
    const store = new RolloutStore(t.cloud().db);
    await ex.tick(); // the canary
    step();
    const canary = (await store.devices(c.json.id)).filter((d) => d.wave === 0).map((d) => d.device_id);
    expect(canary).toHaveLength(2);
    await sync(canary); // applied, reported ok, but no heartbeat since
    for (let i = 0; i < 3; i++) {
      await ex.tick();
      step();
    }
    const held = (await api('GET', `/v1/rollouts/${c.json.id}`)).json;
    expect(held).toMatchObject({ state: 'running', current_wave: 0 });
    expect(held.totals).toMatchObject({ pending: 2, not_issued: 8 });
    // A heartbeat sent before the apply is no evidence either.
    await heartbeat(IDS.filter((id) => !canary.includes(id)));
    await ex.tick();
    expect((await api('GET', `/v1/rollouts/${c.json.id}`)).json.current_wave).toBe(0);
    // Their first heartbeats after the apply say 0 events per minute: the gate fails them, the rollout aborts.
    step();
    await heartbeat(canary, 0);
    await driveTo(c.json.id, 'rolled_back', () => sync(canary));
    const rows = await store.devices(c.json.id);
    expect(
      rows
        .filter((d) => d.wave !== null)
        .map((d) => d.device_id)
        .sort(),
    ).toEqual([...canary].sort());
    // The abort is decided on the event-rate failures: the first canary judged may already abort the rollout
    // before the other is judged (which of the two depends on when their heartbeats land), so at least one.
    expect(rows.filter((d) => d.reason === 'event_rate_low').length).toBeGreaterThanOrEqual(1);
  }, 60_000);
});
