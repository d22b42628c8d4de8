// One active rollout per tenant under concurrency (issue #17): the API's check for an active rollout is a read
// before the insert, so concurrent creates (on one API process or several) could all pass it. Migration 0034's
// partial unique index decides: exactly one create wins, every other one is a 409 rollout-state-conflict naming
// the winner, and the database holds one active rollout.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDevConfigSigningKey } from '../src/index.js';
import { ActiveRolloutExistsError, RolloutStore } from '../src/rollouts/store.js';
import { PROBLEM_JSON, useApiCloud } from './api-fixtures.js';

const keyDir = mkdtempSync(join(tmpdir(), 'vigil-rollouts-one-active-'));
afterAll(() => rmSync(keyDir, { recursive: true, force: true }));
const keyReady = ensureDevConfigSigningKey(keyDir);

const spec = {
  canary: 1,
  waves: [100],
  gate_window_seconds: 60,
  soak_seconds: 0,
  gates: { applied_ratio: 0.9 },
  abort: { failure_ratio: 0.2, min_reported: 5 },
};

describe('rollouts: one active per tenant, decided by the database', () => {
  beforeAll(async () => {
    await keyReady;
  });
  // No scheduler: the executor must not move the rollouts on while the test looks at them.
  const t = useApiCloud({
    configSigning: { privateJwkFile: join(keyDir, 'config-signing.jwk.json') },
    roles: ['api', 'ingest', 'media', 'integrations', 'realtime'],
  });

  beforeAll(async () => {
    const db = t.cloud().db;
    for (const tenant of ['acme', 'globex']) {
      await sql`insert into tenants (id, name) values (${tenant}, ${tenant}) on conflict do nothing`.execute(
        db,
      );
      await sql`insert into sites (tenant_id, id, name) values (${tenant}, 'hq', 'hq') on conflict do nothing`.execute(
        db,
      );
      for (let i = 0; i < 3; i++)
        await sql`insert into devices (tenant_id, id, site_id, enrolled_at) values (${tenant}, ${`gw-${i}`}, 'hq', now())`.execute(
          db,
        );
    }
  });

  const active = async (tenant: string): Promise<string[]> =>
    (
      await sql<{ id: string }>`
        select id from rollouts where tenant_id = ${tenant}
          and state in ('pending', 'running', 'paused', 'aborted', 'rolling_back')`.execute(t.cloud().db)
    ).rows.map((r) => r.id);

  it('concurrent POST /v1/rollouts: one 201, every other one a 409 problem naming the winner', async () => {
    const admin = await t.token('acme', ['admin']);
    const N = 12;
    const results = await Promise.all(
      Array.from({ length: N }, async (_, i) => {
        const res = await t.get('/v1/rollouts', admin, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ target: { scope: 'tenant' }, body: { attributes: { rev: `r${i}` } }, spec }),
        });
        return {
          status: res.status,
          type: res.headers.get('content-type') ?? '',
          json: (await res.json()) as { id?: string; type?: string; detail?: string },
        };
      }),
    );
    const won = results.filter((r) => r.status === 201);
    const lost = results.filter((r) => r.status !== 201);
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(N - 1);
    const winner = won[0]!.json.id!;
    for (const r of lost) {
      expect(r.status).toBe(409);
      expect(r.type).toMatch(PROBLEM_JSON);
      expect(r.json.type).toBe('urn:vigil:problem:rollout-state-conflict');
      expect(r.json.detail).toContain(`rollout ${winner} is still pending`);
    }
    expect(await active('acme')).toEqual([winner]);
    // Once it has ended, the next one starts.
    await sql`update rollouts set state = 'completed' where id = ${winner}`.execute(t.cloud().db);
    const next = await t.get('/v1/rollouts', admin, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ target: { scope: 'tenant' }, body: { attributes: { rev: 'next' } }, spec }),
    });
    expect(next.status).toBe(201);
  });

  it('concurrent creates past the check (the store itself): the constraint lets one through', async () => {
    const store = new RolloutStore(t.cloud().db);
    const N = 8;
    const settled = await Promise.allSettled(
      Array.from({ length: N }, (_, i) =>
        store.create({
          id: `race-${i}`,
          tenantId: 'globex',
          scope: 'tenant',
          scopeId: 'globex',
          body: { attributes: { rev: `r${i}` } },
          spec: { canary: 1, waves: [100] } as never,
          createdBy: 'user@globex',
          now: new Date(),
        }),
      ),
    );
    const ok = settled.filter((s) => s.status === 'fulfilled');
    expect(ok).toHaveLength(1);
    expect((ok[0] as PromiseFulfilledResult<number>).value).toBe(3);
    for (const s of settled.filter((x) => x.status === 'rejected'))
      expect(s.reason).toBeInstanceOf(ActiveRolloutExistsError);
    const ids = await active('globex');
    expect(ids).toHaveLength(1);
    // The losers left nothing behind: no rollout row, no target device rows.
    const rows = await sql<{ n: number }>`
      select count(*)::int as n from rollout_devices where tenant_id = 'globex'`.execute(t.cloud().db);
    expect(rows.rows[0]!.n).toBe(3);
  });

  it('a rollout without target devices leaves no row behind (and does not hold the slot)', async () => {
    const admin = await t.token('initech', ['admin']);
    const res = await t.get('/v1/rollouts', admin, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ target: { scope: 'tenant' }, body: { attributes: { rev: 'x' } }, spec }),
    });
    expect(res.status).toBe(400);
    const rows = await sql<{ n: number }>`
      select count(*)::int as n from rollouts where tenant_id = 'initech'`.execute(t.cloud().db);
    expect(rows.rows[0]!.n).toBe(0);
  });
});
