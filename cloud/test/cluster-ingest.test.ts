// Scale-out on a real 3-node NATS cluster (routes over mutual TLS, JetStream R3) with two real cloud processes
// running only the ingest role: they share the durable `ingest` consumer (each commits part of the events, none
// twice), and when the node leading EVENTS is killed -9 mid-stream, publishing and ingest continue on the other
// two nodes: every event id is in PostgreSQL exactly once, and EVENTS drains to zero (nothing stranded).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DetectionEvent } from '@vigil/proto';
import { freePort, printLogsOnFailure, useDatabase, useNatsCluster, usePki } from '@vigil/testkit';
import { createDb, FleetRegistry, parseCloudConfig } from '../src/index.js';
import { ensureStreams, EVENTS_STREAM, INGEST_CONSUMER } from '../src/ingest/streams.js';
import { JOBS_STREAM } from '../src/integrations/jobs.js';
import type { Database } from '../src/storage/tables.js';
import { spawnCloud, type CloudProcess } from './support/cloud-process.js';
import { evtSubject, makeEvent, type TestDevice } from './support/ingest-stack.js';

const gw: TestDevice = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-cluster' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('NATS cluster: two ingest processes, kill -9 of the EVENTS leader node', () => {
  const pki = usePki({ devices: [gw], services: ['cloud'] });
  const cluster = useNatsCluster(pki);
  const dbUrl = useDatabase();
  const dir = mkdtempSync(join(tmpdir(), 'vigil-cluster-'));
  const procs: Array<{ p: CloudProcess; port: number }> = [];
  printLogsOnFailure('cloud processes', () => procs.map((x) => x.p.output().slice(-20_000)).join('\n----\n'));
  let db: Kysely<Database>;
  let inspector: NatsConnection;
  let jsm: JetStreamManager;
  let device: NatsConnection;
  let js: JetStreamClient;
  /** Every event id published (PubAck received, stored or duplicate). */
  const published: string[] = [];

  const tls = () => {
    const c = pki().services.cloud!;
    return { caFile: pki().caCert, certFile: c.cert, keyFile: c.key };
  };
  const cloudConfig = (port: number): Record<string, unknown> => ({
    http: { port },
    database: { url: dbUrl() },
    // Every node's URL: a process reconnects to a surviving node by itself.
    nats: { servers: cluster().urls, tls: tls() },
    streams: { replicas: 3 },
    // Small batches, so that both processes take turns on a steady stream of events.
    ingest: { batchSize: 20, maxAckPending: 200 },
    api: { enabled: false },
    tracing: { enabled: false },
  });

  beforeAll(async () => {
    inspector = await connect({
      servers: cluster().urls,
      tls: tls(),
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    });
    jsm = await jetstreamManager(inspector);
    // Streams that exist with one replica (a deployment grown from one server): the cloud scales them to R3.
    await ensureStreams(
      jsm,
      parseCloudConfig({
        database: { url: dbUrl() },
        nats: { servers: ['x'], tls: tls() },
        api: { enabled: false },
      }),
    );
    expect((await jsm.streams.info(EVENTS_STREAM)).config.num_replicas).toBe(1);

    const start = async (name: string) => {
      const port = await freePort();
      const p = spawnCloud(dir, cloudConfig(port), { name, roles: ['ingest'] });
      procs.push({ p, port });
      await p.waitForLog('ingest consuming EVENTS', 120_000);
    };
    await Promise.all([start('ingest-a'), start('ingest-b')]);
    db = createDb(dbUrl(), 2);
    await new FleetRegistry(db).registerDevice(gw);

    const paths = pki().devices[`${gw.tenantId}/${gw.deviceId}`]!;
    device = await connect({
      servers: cluster().urls,
      tls: { caFile: pki().caCert, certFile: paths.cert, keyFile: paths.key },
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    });
    js = jetstream(device);
  }, 240_000);
  afterAll(async () => {
    for (const { p } of procs) await p.stop();
    await device?.close();
    await inspector?.close();
    await db?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Publishes as an agent does: the same Nats-Msg-Id until a PubAck comes back. Returns the longest wait. */
  const publish = async (n: number, onEach?: (i: number) => Promise<void>): Promise<number> => {
    let longest = 0;
    for (let i = 0; i < n; i++) {
      const ev = makeEvent(gw);
      const data = DetectionEvent.encode(ev).finish();
      const began = Date.now();
      for (let attempt = 0; ; attempt++) {
        try {
          await js.publish(evtSubject(gw), data, { msgID: ev.eventId, timeout: 2000 });
          break;
        } catch (err) {
          if (attempt >= 120) throw err;
          await sleep(250);
        }
      }
      longest = Math.max(longest, Date.now() - began);
      published.push(ev.eventId);
      await onEach?.(i);
    }
    return longest;
  };
  const counts = async () => {
    const r = await sql<{ rows: number; ids: number }>`
      select count(*)::int as rows, count(distinct event_id)::int as ids from events
      where tenant_id = ${gw.tenantId} and device_id = ${gw.deviceId}`.execute(db);
    return r.rows[0]!;
  };
  const inserted = async (port: number): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const m = /^vigil_cloud_ingest_events_inserted_total(?:\{[^}]*\})? (\d+)/m.exec(text);
    return m ? Number(m[1]) : 0;
  };

  it('creates every stream with 3 replicas (scaling up the existing ones)', async () => {
    for (const name of [EVENTS_STREAM, 'DEAD_LETTER', 'TELEMETRY', 'MEDIA', JOBS_STREAM]) {
      const info = await jsm.streams.info(name);
      expect([name, info.config.num_replicas]).toEqual([name, 3]);
    }
    await expect
      .poll(async () => (await jsm.streams.info(EVENTS_STREAM)).cluster?.replicas?.length, {
        timeout: 30_000,
      })
      .toBe(2);
  });

  it('two ingest processes share the durable consumer: each commits some, together all, none twice', async () => {
    await publish(300, async (i) => {
      if (i % 20 === 19) await sleep(100);
    });
    await expect.poll(counts, { timeout: 60_000 }).toEqual({ rows: 300, ids: 300 });
    const [a, b] = [await inserted(procs[0]!.port), await inserted(procs[1]!.port)];
    console.log(`ingest processes: a inserted ${a}, b inserted ${b}`);
    expect(a + b).toBe(300);
    expect(a).toBeGreaterThan(0);
    expect(b).toBeGreaterThan(0);
  }, 120_000);

  it('kill -9 of the node leading EVENTS: publishing and ingest continue, nothing lost, duplicated or stranded', async () => {
    const before = await jsm.streams.info(EVENTS_STREAM);
    const leader = before.cluster!.leader!;
    expect(leader).toMatch(/^n[123]$/);
    let killedAt = 0;
    const longest = await publish(400, async (i) => {
      if (i === 100) {
        await cluster().kill(leader);
        killedAt = Date.now();
      }
      if (i % 20 === 19) await sleep(50);
    });
    console.log(
      `EVENTS leader ${leader} killed -9 after 100 of 400 events; longest publish wait ${longest} ms; ` +
        `400 published ${Date.now() - killedAt} ms after the kill`,
    );
    await expect.poll(counts, { timeout: 90_000, interval: 500 }).toEqual({ rows: 700, ids: 700 });
    expect(new Set(published).size).toBe(700);
    const after = await jsm.streams.info(EVENTS_STREAM);
    expect(after.cluster?.leader).not.toBe(leader);
    // Work queue: acked = committed. Nothing left behind in the stream or pending on the consumer.
    await expect
      .poll(
        async () => {
          const s = await jsm.streams.info(EVENTS_STREAM);
          const c = await jsm.consumers.info(EVENTS_STREAM, INGEST_CONSUMER);
          return [s.state.messages, c.num_ack_pending, c.num_pending];
        },
        { timeout: 60_000 },
      )
      .toEqual([0, 0, 0]);
    // Both processes survived the node's death.
    for (const { p } of procs) expect(p.running()).toBe(true);
    const total = (await inserted(procs[0]!.port)) + (await inserted(procs[1]!.port));
    expect(total).toBe(700);

    // The node comes back: in the meta group again, and EVENTS has its three peers online.
    await cluster().restart(leader);
    await cluster().waitForMetaLeader(60_000);
    await expect
      .poll(
        async () => {
          const r = (await jsm.streams.info(EVENTS_STREAM)).cluster?.replicas ?? [];
          return r.length === 2 && r.every((p) => !p.offline);
        },
        { timeout: 60_000 },
      )
      .toBe(true);
  }, 240_000);
});
