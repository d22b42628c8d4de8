// The scheduler role's leader lease (scheduler/lease.ts, table scheduler_leases): the SQL against real PostgreSQL
// (one holder at a time, fencing token +1 at every change of holder, expiry by the database clock), the local
// step-down when renewals stop reaching the database, and two real scheduler processes: exactly one leads, and a
// kill -9 of the leader hands the lease to the other within the ttl plus one renewal interval.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Kysely } from 'kysely';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, natsConfig, printLogsOnFailure, useDatabase, useNats, usePki } from '@vigil/testkit';
import { createDb } from '../src/index.js';
import { roleOverride } from '../src/config/roles.js';
import { LeaderLease, LeaseStore } from '../src/scheduler/lease.js';
import { SCHEDULER_LEASE } from '../src/scheduler/start.js';
import { migrateToLatest } from '../src/storage/migrate.js';
import type { Database } from '../src/storage/tables.js';
import { spawnCloud, type CloudProcess } from './support/cloud-process.js';

const silent = pino({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('scheduler lease: SQL, step-down, and handover between real processes', () => {
  const dbUrl = useDatabase();
  let db: Kysely<Database>;
  beforeAll(async () => {
    db = createDb(dbUrl(), 4);
    await migrateToLatest(db as Kysely<unknown>);
  });
  afterAll(async () => {
    await db?.destroy();
  });

  it('one holder at a time; renewals keep the token; a takeover after expiry gets token + 1', async () => {
    const store = new LeaseStore(db);
    expect(await store.acquire('t1', 'a', 1500)).toEqual({ holder: 'a', token: 1n });
    expect(await store.acquire('t1', 'b', 1500)).toBeNull();
    expect(await store.acquire('t1', 'a', 1500)).toEqual({ holder: 'a', token: 1n });
    await sleep(1700); // a stops renewing: the row expires by the database clock
    expect((await store.current('t1'))?.live).toBe(false);
    expect(await store.acquire('t1', 'b', 1500)).toEqual({ holder: 'b', token: 2n });
    // The old holder comes back: refused while b's lease is live, and its release cannot end b's term.
    expect(await store.acquire('t1', 'a', 1500)).toBeNull();
    expect(await store.release('t1', 'a', 1n)).toBe(false);
    expect(await store.release('t1', 'b', 2n)).toBe(true);
    expect(await store.acquire('t1', 'a', 1500)).toEqual({ holder: 'a', token: 3n });
    // Other lease names are independent.
    expect(await store.acquire('t2', 'b', 1500)).toEqual({ holder: 'b', token: 1n });
  });

  it('concurrent contenders: exactly one wins', async () => {
    const store = new LeaseStore(db);
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => store.acquire('race', `p${i}`, 10_000)),
    );
    expect(results.filter((r) => r !== null)).toHaveLength(1);
  });

  it('a leader that cannot renew steps down by its own monotonic clock, before the row expires', async () => {
    let clock = 0;
    const lease = new LeaderLease({
      db,
      name: 'local',
      holder: 'solo',
      ttlMs: 10_000,
      renewMs: 3000,
      log: silent,
      metrics: new Registry(),
      monotonic: () => clock,
    });
    await lease.tick();
    expect(lease.isLeader()).toBe(true);
    expect(lease.fencingToken()).toBe(1n);
    clock = 8999; // ttl - ttl/10 after the renewal was sent: still leader
    expect(lease.isLeader()).toBe(true);
    clock = 9000;
    expect(lease.isLeader()).toBe(false);
    expect(lease.fencingToken()).toBeUndefined();
    // The database still shows it live: nobody else could have taken it yet.
    expect((await new LeaseStore(db).current('local'))?.live).toBe(true);
    expect(
      () =>
        new LeaderLease({ db, name: 'x', ttlMs: 4000, renewMs: 2000, log: silent, metrics: new Registry() }),
    ).toThrow(/under half of ttlMs/);
  });

  it('--role / VIGIL_CLOUD_ROLES: lists and repeats; unknown or repeated names refused by name', () => {
    expect(roleOverride(['api', 'ingest,media'], 'scheduler')).toEqual(['api', 'ingest', 'media']);
    expect(roleOverride(undefined, 'api, realtime')).toEqual(['api', 'realtime']);
    expect(roleOverride([], '')).toBeUndefined();
    expect(() => roleOverride(['ingset'], undefined)).toThrow(/--role: unknown role "ingset"/);
    expect(() => roleOverride(undefined, 'api,api')).toThrow(/VIGIL_CLOUD_ROLES: role api named twice/);
  });

  describe('two scheduler processes', () => {
    const pki = usePki({ services: ['cloud'] });
    const nats = useNats({
      config: (ctx) =>
        natsConfig({
          tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
        })(ctx),
    });
    const dir = mkdtempSync(join(tmpdir(), 'vigil-scheduler-'));
    const procs: Array<{ p: CloudProcess; port: number }> = [];
    printLogsOnFailure('scheduler processes', () => procs.map((x) => x.p.output()).join('\n----\n'));
    afterAll(async () => {
      for (const { p } of procs) await p.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    const TTL_S = 4;
    const RENEW_S = 1;
    const start = async (name: string): Promise<{ p: CloudProcess; port: number }> => {
      const c = pki().services.cloud!;
      const port = await freePort();
      const p = spawnCloud(
        dir,
        {
          http: { port },
          database: { url: dbUrl() },
          nats: {
            servers: [`tls://localhost:${nats().port}`],
            tls: { caFile: pki().caCert, certFile: c.cert, keyFile: c.key },
          },
          tracing: { enabled: false },
          scheduler: { leaseTtlSeconds: TTL_S, renewIntervalSeconds: RENEW_S },
        },
        // The flag, as the deployment manifests pass it (no jwks needed: no api role).
        { name, roles: ['scheduler'] },
      );
      const x = { p, port };
      procs.push(x);
      await p.waitForLog('cloud HTTP listening', 90_000);
      return x;
    };
    const readyz = async (port: number) => {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      const body = (await res.json()) as {
        roles: Record<string, { ready: boolean; needs: string[] }>;
        checks: Array<{ name: string; ok: boolean; leader?: boolean; holder?: string }>;
      };
      return { status: res.status, body, lease: body.checks.find((c) => c.name === 'scheduler-lease')! };
    };
    const holderPid = async (): Promise<number | undefined> => {
      const row = await new LeaseStore(db).current(SCHEDULER_LEASE);
      return row?.live ? Number(row.holder.split('/')[1]) : undefined;
    };

    it('only one leads; kill -9 of the leader hands the lease over within ttl + one renewal', async () => {
      const [a, b] = await Promise.all([start('sched-a'), start('sched-b')]);
      // Both ready (a standby is healthy); exactly one says leader, and it is the holder of the row.
      await expect
        .poll(async () => {
          const ra = await readyz(a.port);
          const rb = await readyz(b.port);
          return [ra.status, rb.status, Number(ra.lease.leader) + Number(rb.lease.leader)];
        })
        .toEqual([200, 200, 1]);
      const ra = await readyz(a.port);
      expect(Object.keys(ra.body.roles)).toEqual(['scheduler']);
      expect(ra.body.roles.scheduler).toEqual({
        ready: true,
        needs: ['postgres', 'nats', 'scheduler-lease'],
      });
      const first = (await new LeaseStore(db).current(SCHEDULER_LEASE))!;
      const leader = [a, b].find((x) => x.p.child.pid === Number(first.holder.split('/')[1]))!;
      const standby = leader === a ? b : a;
      expect(leader).toBeDefined();
      // Over several renewals the leadership stays put (no flapping).
      await sleep(RENEW_S * 3000);
      expect(await holderPid()).toBe(leader.p.child.pid);
      expect((await readyz(standby.port)).lease.leader).toBe(false);

      await leader.p.kill();
      const killedAt = Date.now();
      await expect.poll(holderPid, { timeout: 30_000, interval: 100 }).toBe(standby.p.child.pid);
      const handover = Date.now() - killedAt;
      console.log(
        `scheduler lease handover after kill -9: ${handover} ms (ttl ${TTL_S} s, renew ${RENEW_S} s)`,
      );
      // The row expired at most TTL after the last renewal (before the kill), and the standby tries every RENEW:
      // plus a margin for a loaded machine (the poll's own interval, a slow tick).
      expect(handover).toBeLessThan((TTL_S + RENEW_S) * 1000 + 3000);
      const second = (await new LeaseStore(db).current(SCHEDULER_LEASE))!;
      expect(second.token).toBe(first.token + 1n);
      await expect.poll(async () => (await readyz(standby.port)).lease.leader).toBe(true);
      expect(standby.p.output()).toContain('"msg":"lease acquired: leader"');
    }, 180_000);
  });
});
