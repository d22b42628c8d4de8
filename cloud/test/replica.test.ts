import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql, type Kysely } from 'kysely';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresCluster, registry } from '@vigil/testkit';
import {
  createDb,
  migrateToLatest,
  openDatabases,
  parseCloudConfig,
  ReplicaReads,
  type Databases,
} from '../src/index.js';
import { DeviceReader } from '../src/api/device-store.js';
import type { Database } from '../src/storage/tables.js';

// database.replicaUrl against a real streaming replica: a private primary (initdb) and a replica made from it
// with pg_basebackup, both on loopback ports. Replication lag is made real by pausing WAL replay on the replica.

describe('read replica: lists read a fresh replica, the primary otherwise', () => {
  let dir = '';
  let primary: PostgresCluster;
  let replica: PostgresCluster;
  let db: Kysely<Database>;
  let replicaDb: Kysely<Database>;
  const metrics = new Registry();
  const log = pino({ level: 'silent' });
  let reads: ReplicaReads;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vigil-replica-'));
    primary = await new PostgresCluster({ dir: join(dir, 'primary'), registry }).start();
    replica = await primary.startReplica({ dir: join(dir, 'replica'), registry });
    db = createDb(primary.url, 4);
    replicaDb = createDb(replica.url, 4);
    await migrateToLatest(db as Kysely<unknown>);
    reads = new ReplicaReads({
      primary: db,
      replica: replicaDb,
      maxLagSeconds: 1,
      checkIntervalMs: 100,
      log,
      metrics,
    });
  }, 120_000);
  afterAll(async () => {
    await db?.destroy();
    await replicaDb?.destroy();
    await replica?.stop();
    await primary?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  const reads_ = async (): Promise<Record<string, number>> => {
    const m = await metrics.getSingleMetric('vigil_cloud_db_replica_reads_total')!.get();
    return Object.fromEntries(m.values.map((v) => [`${v.labels.target}/${v.labels.reason}`, v.value]));
  };
  const addDevice = async (id: string): Promise<void> => {
    await sql`insert into tenants (id, name) values ('acme', 'Acme') on conflict do nothing`.execute(db);
    await sql`insert into devices (tenant_id, id) values ('acme', ${id})`.execute(db);
  };
  const deviceIds = (on: Kysely<Database>) => on.selectFrom('devices').select('id').orderBy('id').execute();

  it('unmeasured: the primary answers', () => {
    expect(reads.target()).toEqual({ target: 'primary', reason: 'unmeasured' });
  });

  it('caught up: lag 0 and reads go to the replica, which has the primary writes', async () => {
    await addDevice('gw-1');
    await expect.poll(async () => (await reads.measure()).lagSeconds, { timeout: 20_000 }).toBe(0);
    expect(reads.target()).toEqual({ target: 'replica', reason: 'fresh' });
    const pid = await reads.read((on) => sql<{ r: boolean }>`select pg_is_in_recovery() as r`.execute(on));
    expect(pid.rows[0]!.r).toBe(true); // it ran on the standby
    expect((await reads.read(deviceIds)).map((r) => r.id)).toEqual(['gw-1']);
  });

  it('replay paused past the bound: reads go to the primary and see the newest writes; resumed: back', async () => {
    await sql`select pg_wal_replay_pause()`.execute(replicaDb);
    try {
      await addDevice('gw-2');
      // The replica has not replayed gw-2: it is behind the primary by the time since its last replayed commit.
      await new Promise((r) => setTimeout(r, 1200));
      const s = await reads.measure();
      expect(s.lagSeconds).toBeGreaterThan(1);
      expect(reads.target()).toEqual({ target: 'primary', reason: 'lagging' });
      expect((await reads.read(deviceIds)).map((r) => r.id)).toEqual(['gw-1', 'gw-2']);
      expect((await deviceIds(replicaDb)).map((r) => r.id)).toEqual(['gw-1']); // what a replica read would have missed
    } finally {
      await sql`select pg_wal_replay_resume()`.execute(replicaDb);
    }
    await expect.poll(async () => (await reads.measure()).lagSeconds, { timeout: 20_000 }).toBe(0);
    expect((await reads.read(deviceIds)).map((r) => r.id)).toEqual(['gw-1', 'gw-2']);
    expect(reads.target().target).toBe('replica');
  });

  it('a fresh measurement ages: past the bound without a new one, the primary answers', async () => {
    let t = Date.now();
    const aging = new ReplicaReads({
      primary: db,
      replica: replicaDb,
      maxLagSeconds: 1,
      checkIntervalMs: 100,
      log,
      metrics: new Registry(),
      now: () => new Date(t),
    });
    expect((await aging.measure()).lagSeconds).toBe(0);
    expect(aging.target().target).toBe('replica');
    t += 1500; // lag can only have grown by the time elapsed since the measurement
    expect(aging.target()).toEqual({ target: 'primary', reason: 'lagging' });
  });

  it('a server that is not a standby is never read as a replica', async () => {
    const notStandby = new ReplicaReads({
      primary: db,
      replica: db,
      maxLagSeconds: 5,
      checkIntervalMs: 100,
      log,
      metrics: new Registry(),
    });
    const s = await notStandby.measure();
    expect(s.error).toMatch(/not a standby/);
    expect(notStandby.target()).toEqual({ target: 'primary', reason: 'unavailable' });
  });

  it('openDatabases (what the cloud runs): the devices list reads the replica; replica down: the primary', async () => {
    const config = parseCloudConfig({
      database: {
        url: primary.url,
        replicaUrl: replica.url,
        replicaMaxLagSeconds: 2,
        replicaLagCheckIntervalMs: 100,
      },
      nats: { servers: ['tls://localhost:1'], tls: { caFile: 'x', certFile: 'x', keyFile: 'x' } },
      api: { enabled: false },
    });
    const m = new Registry();
    const dbs: Databases = openDatabases(config.database, { log, metrics: m });
    try {
      const devices = new DeviceReader(dbs.db, 30, () => new Date(), dbs.readHeavy);
      await expect.poll(() => dbs.replica!.target().target, { timeout: 10_000 }).toBe('replica');
      expect((await devices.list('acme', { limit: 10 })).items.map((d) => d.id)).toEqual(['gw-1', 'gw-2']);
      const counted = async () =>
        Object.fromEntries(
          (await m.getSingleMetric('vigil_cloud_db_replica_reads_total')!.get()).values.map((v) => [
            `${v.labels.target}/${v.labels.reason}`,
            v.value,
          ]),
        );
      expect(await counted()).toMatchObject({ 'replica/fresh': 1 });

      // The replica goes away between two measurements: the read is answered by the primary all the same.
      await replica.stop('immediate');
      expect((await devices.list('acme', { limit: 10 })).items.map((d) => d.id)).toEqual(['gw-1', 'gw-2']);
      expect(await counted()).toMatchObject({ 'primary/unavailable': 1 });
      await expect
        .poll(() => dbs.replica!.target(), { timeout: 10_000 })
        .toEqual({
          target: 'primary',
          reason: 'unavailable',
        });
      expect((await m.getSingleMetric('vigil_cloud_db_replica_lag_seconds')!.get()).values[0]!.value).toBe(
        -1,
      );
    } finally {
      await dbs.close();
      await replica.start();
    }
    const counted = await reads_();
    expect(counted['replica/fresh']).toBeGreaterThan(0);
    expect(counted['primary/lagging']).toBe(1);
  }, 60_000);
});
