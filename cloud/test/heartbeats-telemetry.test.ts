// Heartbeats through the TELEMETRY stream: the real cloud (startCloud) against a real nats-server (mTLS +
// JetStream) and PostgreSQL; devices core-publish heartbeats with their own client certificates, like agents.
import type { JetStreamManager, StoredMsg } from '@nats-io/jetstream';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Kysely } from 'kysely';
import { pino, type Logger } from 'pino';
import { Registry, type Counter } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeviceHealth, Heartbeat, subjectFor } from '@vigil/proto';
import { natsConfig, printLogsOnFailure, useDatabase, useNats, usePki } from '@vigil/testkit';
import { HeartbeatConsumer } from '../src/fleet/heartbeats.js';
import {
  HEARTBEATS_CONSUMER,
  TELEMETRY_MAX_MSGS_PER_SUBJECT,
  TELEMETRY_STREAM,
} from '../src/ingest/streams.js';
import {
  createDb,
  ensureDevSigningKey,
  FleetRegistry,
  mintDevToken,
  parseCloudConfig,
  startCloud,
  type CloudApp,
  type DevSigningKey,
} from '../src/index.js';
import type { Database } from '../src/storage/tables.js';

const GW1 = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' };
const GW2 = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-2' };
const GW3 = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-3' };
const GW4 = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-4' };
/** Has a certificate, is never registered. */
const GHOST = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-ghost' };
const OFFLINE_AFTER_SECONDS = 5;
const ISSUER = 'vigil-test';
const AUDIENCE = 'vigil-api-test';

type Dev = typeof GW1;

interface DeviceView {
  id: string;
  status: 'online' | 'offline' | 'never';
  last_seen_at: string | null;
  agent_version: string | null;
  config_version: string | null;
  heartbeats: number;
}

// The cloud clock: the system clock shifted by `offset`, or `pinned` when set.
let offset = 0;
let pinned: number | undefined;
const now = (): Date => new Date(pinned ?? Date.now() + offset);

const pki = usePki({ devices: [GW1, GW2, GW3, GW4, GHOST], services: ['cloud'] });
const nats = useNats({
  config: (ctx) =>
    natsConfig({
      tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
    })(ctx),
});
const dbUrl = useDatabase();
const lines: string[] = [];
const logger: Logger = pino(
  { level: 'info' },
  {
    write: (line: string) => {
      lines.push(line);
      if (lines.length > 3000) lines.shift();
    },
  },
);
printLogsOnFailure('cloud', () => lines.join(''));

let cloud: CloudApp | undefined;
let key: DevSigningKey;
let token: string;
let inspector: NatsConnection;
let jsm: JetStreamManager;
const devices = new Map<string, NatsConnection>();

const natsUrl = (): string => `tls://localhost:${nats().port}`;
const serviceTls = () => {
  const svc = pki().services.cloud!;
  return { caFile: pki().caCert, certFile: svc.cert, keyFile: svc.key };
};

async function startTestCloud(): Promise<CloudApp> {
  cloud = await startCloud(
    parseCloudConfig({
      http: { port: 0 },
      database: { url: dbUrl() },
      nats: { servers: [natsUrl()], tls: serviceTls() },
      auth: { issuer: ISSUER, audience: AUDIENCE, jwksFile: key.jwksFile },
      fleet: { offlineAfterSeconds: OFFLINE_AFTER_SECONDS },
      // Heartbeats do not need the ingest role.
      ingest: { enabled: false },
    }),
    { logger, now },
  );
  return cloud;
}

async function stopTestCloud(): Promise<void> {
  await cloud?.stop();
  cloud = undefined;
}

/** The device's own connection (its client certificate). */
async function deviceNc(d: Dev): Promise<NatsConnection> {
  let nc = devices.get(d.deviceId);
  if (!nc) {
    const paths = pki().devices[`${d.tenantId}/${d.deviceId}`]!;
    nc = await connect({
      servers: [natsUrl()],
      tls: { caFile: pki().caCert, certFile: paths.cert, keyFile: paths.key },
    });
    devices.set(d.deviceId, nc);
  }
  return nc;
}

function heartbeat(d: Dev, overrides: Partial<Heartbeat> = {}): Uint8Array {
  return Heartbeat.encode(
    Heartbeat.fromPartial({
      tenantId: d.tenantId,
      siteId: d.siteId,
      deviceId: d.deviceId,
      // The device's clock plays no part: a day off on purpose.
      sentAt: new Date(Date.now() - 86_400_000),
      agentVersion: '2.0.0',
      configVersion: 1n,
      health: DeviceHealth.DEVICE_HEALTH_OK,
      ...overrides,
    }),
  ).finish();
}

/** Core-publishes like the agent (no JetStream API), then waits until TELEMETRY holds it. */
async function publish(
  d: Dev,
  data: Uint8Array,
  subject = subjectFor(d.tenantId, d.deviceId, 'hb'),
): Promise<StoredMsg> {
  const nc = await deviceNc(d);
  const before = await lastStored(subject);
  nc.publish(subject, data);
  await nc.flush();
  const deadline = Date.now() + 15_000; // a wait for a condition: room for a loaded machine
  for (;;) {
    const stored = await lastStored(subject);
    if (stored && stored.seq !== before?.seq) return stored;
    if (Date.now() > deadline) throw new Error(`${subject}: not stored in TELEMETRY`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function lastStored(subject: string): Promise<StoredMsg | null> {
  const info = await jsm.streams.info(TELEMETRY_STREAM, { subjects_filter: subject });
  if (!info.state.subjects?.[subject]) return null;
  return jsm.streams.getMessage(TELEMETRY_STREAM, { last_by_subj: subject });
}

async function getDevice(id: string): Promise<DeviceView> {
  const res = await fetch(`http://127.0.0.1:${cloud!.httpPort}/v1/devices/${id}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as DeviceView;
}

async function metric(name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${cloud!.httpPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

const hbMetric = (result: string) => metric('vigil_cloud_heartbeats_total', `{result="${result}"}`);

/** Every heartbeat delivered has been acked and none is waiting. */
async function drained(): Promise<void> {
  await expect
    .poll(
      async () => {
        const info = await jsm.consumers.info(TELEMETRY_STREAM, HEARTBEATS_CONSUMER);
        return { pending: info.num_pending, ackPending: info.num_ack_pending };
      },
      { timeout: 10_000, interval: 50 },
    )
    .toEqual({ pending: 0, ackPending: 0 });
}

beforeAll(async () => {
  key = ensureDevSigningKey(pki().dir);
  token = await mintDevToken({
    key,
    issuer: ISSUER,
    audience: AUDIENCE,
    tenant: 'acme',
    roles: ['viewer'],
    sub: 'user@acme',
    ttlSeconds: 3600,
  });
  inspector = await connect({ servers: [natsUrl()], tls: serviceTls() });
  jsm = await jetstreamManager(inspector);
  const app = await startTestCloud();
  for (const d of [GW1, GW2, GW3, GW4]) await app.registry.registerDevice(d);
});

afterAll(async () => {
  for (const nc of devices.values()) await nc.close();
  await inspector?.close();
  await stopTestCloud();
});

describe('heartbeats through TELEMETRY', () => {
  it('creates TELEMETRY bounded (limits, a few per device, an hour) and the durable heartbeats consumer', async () => {
    expect((await jsm.streams.info(TELEMETRY_STREAM)).config).toMatchObject({
      subjects: ['vigil.v1.*.*.hb'],
      retention: 'limits',
      discard: 'old',
      storage: 'file',
      max_msgs_per_subject: 5,
      max_msgs: -1,
      max_age: 3600e9,
      max_bytes: 256 * 1024 ** 2,
      max_msg_size: 64 * 1024,
      num_replicas: 1,
    });
    // The consumer is created by the heartbeat loop, in the background of startCloud.
    await expect
      .poll(() => jsm.consumers.info(TELEMETRY_STREAM, HEARTBEATS_CONSUMER).then((i) => i.config), {
        timeout: 15_000,
        interval: 50,
      })
      .toMatchObject({
        durable_name: 'heartbeats',
        ack_policy: 'explicit',
        deliver_policy: 'last_per_subject',
        ack_wait: 10e9,
        max_deliver: -1,
        max_ack_pending: 1000,
      });

    // Core publishes are captured; only the newest few per device are kept.
    for (let i = 0; i < TELEMETRY_MAX_MSGS_PER_SUBJECT + 2; i++)
      await publish(GW4, heartbeat(GW4, { configVersion: BigInt(i) }));
    const subject = subjectFor('acme', 'gw-4', 'hb');
    const info = await jsm.streams.info(TELEMETRY_STREAM, { subjects_filter: subject });
    expect(info.state.subjects?.[subject]).toBe(TELEMETRY_MAX_MSGS_PER_SUBJECT);
    // A heartbeat bigger than max_msg_size is refused by the stream (it gets no sequence).
    const before = await lastStored(subject);
    const nc = await deviceNc(GW4);
    nc.publish(subject, new Uint8Array(64 * 1024 + 1));
    const after = await publish(GW4, heartbeat(GW4, { configVersion: 7n }));
    expect(after.seq).toBe(before!.seq + 1);
    await drained();
    expect(await getDevice('gw-4')).toMatchObject({ heartbeats: 8, config_version: '7' });
  });

  it('records a heartbeat that arrived while the cloud was down, at the stream’s time, not at processing', async () => {
    expect((await getDevice('gw-1')).status).toBe('never');
    await stopTestCloud();

    const stored = await publish(GW1, heartbeat(GW1, { agentVersion: '2.1.0', configVersion: 9n }));
    // The cloud comes back "20 s later" (its clock is shifted instead of sleeping).
    offset = 20_000;
    try {
      await startTestCloud();
      await expect
        .poll(async () => (await getDevice('gw-1')).heartbeats, { timeout: 10_000, interval: 50 })
        .toBe(1);
      const seen = await getDevice('gw-1');
      expect(seen).toMatchObject({
        last_seen_at: stored.time.toISOString(),
        agent_version: '2.1.0',
        config_version: '9',
        // Heard from 20 s ago (> offlineAfterSeconds): offline, though the heartbeat was processed just now.
        status: 'offline',
      });
      expect(now().getTime() - Date.parse(seen.last_seen_at!)).toBeGreaterThanOrEqual(19_000);
    } finally {
      offset = 0;
    }

    // A live heartbeat: online at once.
    const live = await publish(GW1, heartbeat(GW1, { agentVersion: '2.2.0' }));
    await expect
      .poll(async () => (await getDevice('gw-1')).heartbeats, { timeout: 15_000, interval: 50 })
      .toBe(2);
    expect(await getDevice('gw-1')).toMatchObject({
      status: 'online',
      last_seen_at: live.time.toISOString(),
      agent_version: '2.2.0',
    });
    await drained();
  });

  it('acks and counts undecodable, mismatched and unknown-device heartbeats without blocking valid ones', async () => {
    const base = {
      ok: await hbMetric('ok'),
      undecodable: await hbMetric('undecodable'),
      mismatch: await hbMetric('mismatch'),
      unknown_device: await hbMetric('unknown_device'),
      error: await hbMetric('error'),
    };
    const gw2 = subjectFor('acme', 'gw-2', 'hb');
    // Wire type 7 does not exist: protobuf decoding throws.
    await publish(GW2, new Uint8Array([0xff, 0xff, 0xff]), gw2);
    // gw-2 sending a payload that names gw-3 (and another tenant).
    await publish(GW2, heartbeat(GW3), gw2);
    await publish(GW2, heartbeat({ ...GW2, tenantId: 'globex' }), gw2);
    // A device with a certificate but no registration.
    await publish(GHOST, heartbeat(GHOST));
    await publish(GW2, heartbeat(GW2, { agentVersion: '3.0.0', configVersion: 3n }), gw2);

    await expect
      .poll(async () => (await getDevice('gw-2')).agent_version, { timeout: 15_000, interval: 50 })
      .toBe('3.0.0');
    await drained();
    expect(await getDevice('gw-2')).toMatchObject({ status: 'online', heartbeats: 1, config_version: '3' });
    expect((await getDevice('gw-3')).status).toBe('never');
    expect({
      ok: (await hbMetric('ok')) - base.ok,
      undecodable: (await hbMetric('undecodable')) - base.undecodable,
      mismatch: (await hbMetric('mismatch')) - base.mismatch,
      unknown_device: (await hbMetric('unknown_device')) - base.unknown_device,
      error: (await hbMetric('error')) - base.error,
    }).toEqual({ ok: 1, undecodable: 1, mismatch: 2, unknown_device: 1, error: 0 });
    expect(await metric('vigil_cloud_heartbeats_pending')).toBe(0);
  });

  it('shows a device offline no later than offlineAfterSeconds after its last heartbeat', async () => {
    let last: StoredMsg | undefined;
    for (let i = 0; i < 3; i++) {
      last = await publish(GW3, heartbeat(GW3, { configVersion: BigInt(i) }));
      await new Promise((r) => setTimeout(r, 100));
    }
    await expect
      .poll(async () => (await getDevice('gw-3')).heartbeats, { timeout: 15_000, interval: 50 })
      .toBe(3);
    const seen = await getDevice('gw-3');
    expect(seen).toMatchObject({ status: 'online', last_seen_at: last!.time.toISOString() });
    // The device stops. The cloud clock is pinned around the bound rather than slept through.
    const lastSeen = Date.parse(seen.last_seen_at!);
    try {
      pinned = lastSeen + OFFLINE_AFTER_SECONDS * 1000 - 1;
      expect((await getDevice('gw-3')).status).toBe('online');
      pinned = lastSeen + OFFLINE_AFTER_SECONDS * 1000;
      expect((await getDevice('gw-3')).status).toBe('offline');
      const res = await fetch(`http://127.0.0.1:${cloud!.httpPort}/v1/devices?status=offline`, {
        headers: { authorization: `Bearer ${token}` },
      });
      const page = (await res.json()) as { items: DeviceView[] };
      expect(page.items.map((d) => d.id)).toContain('gw-3');
    } finally {
      pinned = undefined;
    }
  });

  it('naks a heartbeat whose database write fails and records it on redelivery, at the stream’s time', async () => {
    // The cloud is stopped: this consumer (same durable) is the only one taking heartbeats.
    await stopTestCloud();
    const db: Kysely<Database> = createDb(dbUrl(), 2);
    const conn = await connect({ servers: [natsUrl()], tls: serviceTls() });
    let failures = 2;
    class FlakyRegistry extends FleetRegistry {
      override recordHeartbeats(
        ...args: Parameters<FleetRegistry['recordHeartbeats']>
      ): Promise<Set<string>> {
        if (failures-- > 0) return Promise.reject(new Error('connection terminated unexpectedly'));
        return super.recordHeartbeats(...args);
      }
    }
    const metrics = new Registry();
    const consumer = new HeartbeatConsumer(conn, new FlakyRegistry(db), logger, metrics);
    try {
      const stored = await publish(GW4, heartbeat(GW4, { agentVersion: '4.0.0', configVersion: 40n }));
      consumer.start();
      const row = () =>
        db
          .selectFrom('devices')
          .select(['agent_version', 'last_seen_at', 'heartbeats'])
          .where('tenant_id', '=', 'acme')
          .where('id', '=', 'gw-4')
          .executeTakeFirstOrThrow();
      await expect.poll(async () => (await row()).heartbeats, { timeout: 10_000, interval: 50 }).toBe('9');
      // Recorded after two backed-off redeliveries, with the time the server stored it.
      expect(await row()).toMatchObject({ agent_version: '4.0.0', last_seen_at: stored.time });
      expect(Date.now() - stored.time.getTime()).toBeGreaterThan(100);
      const counter = metrics.getSingleMetric('vigil_cloud_heartbeats_total') as Counter<'result'>;
      const counts = await counter.get();
      const by = Object.fromEntries(counts.values.map((v) => [String(v.labels.result), v.value] as const));
      expect(by).toEqual({ error: 2, ok: 1 });
      await drained();
    } finally {
      await consumer.stop();
      await conn.close();
      await db.destroy();
    }
  });
});
