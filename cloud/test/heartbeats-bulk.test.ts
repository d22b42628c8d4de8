// Heartbeats written a batch per statement (issue 17: one commit per heartbeat capped the fleet): against real
// PostgreSQL, last_seen_at never moves backwards within a batch, across batches or between concurrent batches,
// every heartbeat is counted, unregistered devices are told apart; and through a real nats-server, bursts of
// several heartbeats per device arrive in shared batches and are all recorded at their stream times.
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Kysely } from 'kysely';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeviceHealth, Heartbeat, subjectFor } from '@vigil/proto';
import { useDatabase, useNats } from '@vigil/testkit';
import { HeartbeatConsumer } from '../src/fleet/heartbeats.js';
import { heartbeatKey, type HeartbeatRow } from '../src/fleet/registry.js';
import { HEARTBEATS_CONSUMER, TELEMETRY_STREAM } from '../src/ingest/streams.js';
import { createDb, FleetRegistry, migrateToLatest } from '../src/index.js';
import type { Database } from '../src/storage/tables.js';

const dbUrl = useDatabase();
const nats = useNats();
let db: Kysely<Database>;
let registry: FleetRegistry;

beforeAll(async () => {
  db = createDb(dbUrl(), 4);
  await migrateToLatest(db as Kysely<unknown>);
  registry = new FleetRegistry(db);
  for (const id of ['d1', 'd2', 'd3'])
    await registry.registerDevice({ tenantId: 'acme', siteId: 'hq', deviceId: id });
  // The same device id in another tenant: rows are told apart by tenant.
  await registry.registerDevice({ tenantId: 'other', siteId: 'hq', deviceId: 'd1' });
});
afterAll(async () => {
  await db?.destroy();
});

const T0 = Date.parse('2026-12-08T01:00:00Z');
const at = (s: number): Date => new Date(T0 + s * 1000);
const row = (tenantId: string, deviceId: string, s: number, agentVersion = `v${s}`): HeartbeatRow => ({
  tenantId,
  deviceId,
  seenAt: at(s),
  agentVersion,
  configVersion: BigInt(s),
  signals: { health: 'ok', meanFps: s, meanInferenceMs: null, eventsPerMinute: 0 },
  cameras: [],
  update: null,
});
const device = (tenantId: string, id: string) =>
  db
    .selectFrom('devices')
    .select(['last_seen_at', 'agent_version', 'config_version', 'heartbeats', 'mean_fps', 'update_state'])
    .where('tenant_id', '=', tenantId)
    .where('id', '=', id)
    .executeTakeFirstOrThrow();

describe('FleetRegistry.recordHeartbeats', () => {
  it('keeps the newest heartbeat per device, counts them all and names the registered devices', async () => {
    const known = await registry.recordHeartbeats([
      row('acme', 'd1', 30),
      row('acme', 'd1', 10),
      row('acme', 'd1', 20),
      row('acme', 'd2', 5),
      row('acme', 'ghost', 7),
      row('other', 'd1', 1),
    ]);
    expect([...known].sort()).toEqual(
      [heartbeatKey('acme', 'd1'), heartbeatKey('acme', 'd2'), heartbeatKey('other', 'd1')].sort(),
    );
    expect(await device('acme', 'd1')).toMatchObject({
      last_seen_at: at(30),
      agent_version: 'v30',
      config_version: '30',
      heartbeats: '3',
      mean_fps: 30,
    });
    expect(await device('other', 'd1')).toMatchObject({ last_seen_at: at(1), heartbeats: '1' });
    expect(await registry.recordHeartbeats([])).toEqual(new Set());
  });

  it('never moves last_seen_at backwards: an older batch (a redelivery) only adds to the count', async () => {
    await registry.recordHeartbeats([row('acme', 'd1', 25, 'stale'), row('acme', 'd1', 29, 'stale')]);
    expect(await device('acme', 'd1')).toMatchObject({
      last_seen_at: at(30),
      agent_version: 'v30',
      heartbeats: '5',
    });
    // A heartbeat without an updater status leaves the updater columns as they are.
    await registry.recordHeartbeats([
      {
        ...row('acme', 'd3', 40),
        update: {
          state: 'committed',
          current: '1.1.0',
          previous: null,
          target: null,
          reason: null,
          at: null,
        },
      },
    ]);
    await registry.recordHeartbeats([row('acme', 'd3', 41)]);
    expect(await device('acme', 'd3')).toMatchObject({
      last_seen_at: at(41),
      update_state: 'committed',
      heartbeats: '2',
    });
  });

  it('keeps the greatest seen time when batches sharing devices are written concurrently', async () => {
    const batches = Array.from({ length: 8 }, (_, b) =>
      ['d1', 'd2', 'd3'].map((d) => row('acme', d, 100 + ((b * 7) % 8), `b${b}`)),
    );
    const before = await Promise.all(['d1', 'd2', 'd3'].map((d) => device('acme', d)));
    await Promise.all(batches.map((b) => registry.recordHeartbeats(b)));
    for (const [i, d] of ['d1', 'd2', 'd3'].entries()) {
      const now = await device('acme', d);
      expect(now.last_seen_at).toEqual(at(107));
      expect(Number(now.heartbeats) - Number(before[i]!.heartbeats)).toBe(8);
    }
  });
});

describe('HeartbeatConsumer: bursts through TELEMETRY', () => {
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let consumer: HeartbeatConsumer;
  const ids = Array.from({ length: 40 }, (_, i) => `burst-${String(i).padStart(2, '0')}`);
  beforeAll(async () => {
    for (const id of ids) await registry.registerDevice({ tenantId: 'acme', siteId: 'hq', deviceId: id });
    nc = await connect({ servers: [nats().url] });
    jsm = await jetstreamManager(nc);
    consumer = new HeartbeatConsumer(nc, registry, pino({ level: 'silent' }), new Registry());
    consumer.start();
    // Wait for a condition (the consumer created its stream and durable): room for a loaded machine.
    const deadline = Date.now() + 20_000;
    while (
      !(await jsm.consumers.info(TELEMETRY_STREAM, HEARTBEATS_CONSUMER).then(
        () => true,
        () => false,
      ))
    ) {
      if (Date.now() > deadline) throw new Error('the heartbeats consumer was not created');
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  afterAll(async () => {
    await consumer?.stop();
    await nc?.close();
  });

  it('records every heartbeat of a burst (several per device per batch) at the newest stream time', async () => {
    // 4 per device (TELEMETRY keeps 5 per subject), 160 in all, published at once.
    const perDevice = 4;
    for (let k = 0; k < perDevice; k++)
      for (const id of ids)
        nc.publish(
          subjectFor('acme', id, 'hb'),
          Heartbeat.encode(
            Heartbeat.fromPartial({
              tenantId: 'acme',
              deviceId: id,
              agentVersion: `1.0.${k}`,
              configVersion: BigInt(k),
              health: DeviceHealth.DEVICE_HEALTH_OK,
            }),
          ).finish(),
        );
    await nc.flush();
    const counts = () =>
      db
        .selectFrom('devices')
        .select(['id', 'heartbeats', 'last_seen_at', 'agent_version'])
        .where('tenant_id', '=', 'acme')
        .where('id', 'in', ids)
        .orderBy('id')
        .execute();
    await expect
      .poll(async () => (await counts()).every((r) => Number(r.heartbeats) === perDevice), {
        timeout: 20_000,
        interval: 100,
      })
      .toBe(true);
    for (const r of await counts()) {
      const last = await jsm.streams.getMessage(TELEMETRY_STREAM, {
        last_by_subj: subjectFor('acme', r.id, 'hb'),
      });
      expect(r).toMatchObject({ last_seen_at: last!.time, agent_version: `1.0.${perDevice - 1}` });
    }
  });
});
