// Finding 4 of issue 13: webhook jobs must survive a crash between the commit of an ingest batch and their
// enqueue on JOBS. The cloud runs as a real child process; a failpoint (VIGIL_FAILPOINTS) kill -9s it right
// after the batch's COMMIT (before any ack or enqueue), and again right after the outbox relay's PubAcks (before
// it deletes the rows). After a clean restart every (webhook, event) must reach the receiver exactly once.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DetectionEvent } from '@vigil/proto';
import { natsConfig, printLogsOnFailure, useDatabase, useNats, usePki } from '@vigil/testkit';
import { createDb, FleetRegistry } from '../src/index.js';
import { WebhookStore } from '../src/integrations/store.js';
import type { Database } from '../src/storage/tables.js';
import { spawnCloud, type CloudProcess } from './support/cloud-process.js';
import { evtSubject, makeEvent, type TestDevice } from './support/ingest-stack.js';

const gw: TestDevice = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-crash' };
const EVENTS = 120;

describe('webhook outbox: kill -9 between commit and enqueue loses no delivery', () => {
  const pki = usePki({ devices: [gw], services: ['cloud'] });
  const nats = useNats({
    config: (ctx) =>
      natsConfig({
        tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
      })(ctx),
  });
  const databaseUrl = useDatabase();
  const dir = mkdtempSync(join(tmpdir(), 'vigil-outbox-crash-'));
  /** (path, event id) of every request answered 200. */
  const received: string[] = [];
  /** While false the receiver answers 503 (and records nothing): deliveries are retried later. */
  let accepting = true;
  let server: Server;
  let receiver = '';
  let db: Kysely<Database>;
  let svc: NatsConnection;
  let jsm: JetStreamManager;
  let current: CloudProcess | undefined;
  const outputs: string[] = [];
  printLogsOnFailure('cloud processes', () => [...outputs, current?.output() ?? ''].join('\n----\n'));

  const natsUrl = (): string => `tls://localhost:${nats().port}`;
  const cloudConfig = (): Record<string, unknown> => {
    const c = pki().services.cloud!;
    return {
      http: { port: 0 },
      database: { url: databaseUrl() },
      nats: { servers: [natsUrl()], tls: { caFile: pki().caCert, certFile: c.cert, keyFile: c.key } },
      api: { enabled: false },
      tracing: { enabled: false },
      integrations: {
        allowInsecureHttp: true,
        allowPrivateNetworks: true,
        // ack_wait of JOBS is 2 x timeoutMs + 10 s: a job held by a killed worker comes back after 12 s.
        timeoutMs: 1000,
        maxAttempts: 50,
        backoff: { initialMs: 100, maxMs: 500 },
      },
    };
  };
  const start = (failpoints: string[] = []): CloudProcess => {
    if (current) outputs.push(current.output());
    current = spawnCloud(dir, cloudConfig(), { failpoints });
    return current;
  };

  beforeAll(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        let id = '?';
        try {
          id = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { event: { event_id: string } }).event
            .event_id;
        } catch {
          // counted under '?': the assertions then fail
        }
        if (accepting) received.push(`${req.url} ${id}`);
        res.statusCode = accepting ? 200 : 503;
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    receiver = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const c = pki().services.cloud!;
    svc = await connect({
      servers: [natsUrl()],
      tls: { caFile: pki().caCert, certFile: c.cert, keyFile: c.key },
    });
    jsm = await jetstreamManager(svc);
  });
  afterAll(async () => {
    await current?.stop();
    await svc?.close();
    await db?.destroy();
    await new Promise<void>((resolve) => server?.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  async function count(query: string): Promise<number> {
    const { rows } = await sql<{ n: string }>`${sql.raw(query)}`.execute(db);
    return Number(rows[0]?.n ?? 0);
  }

  it('delivers every (webhook, event) exactly once after crashes at commit and at relay', async () => {
    // First start: migrations, streams, JOBS; then the device and two webhooks, and a clean stop.
    const first = start();
    await first.waitForLog('ingest consuming EVENTS');
    db = createDb(databaseUrl(), 2, () => undefined);
    await new FleetRegistry(db).registerDevice(gw);
    const hooks = new WebhookStore(db);
    const all = await hooks.create({
      tenantId: 'acme',
      url: `${receiver}/all`,
      filter: {},
      description: undefined,
      createdBy: 'test',
    });
    await hooks.create({
      tenantId: 'acme',
      url: `${receiver}/people`,
      filter: { labels: ['person'] },
      description: undefined,
      createdBy: 'test',
    });
    expect(all.enabled).toBe(true);
    await first.stop();

    // Events wait in EVENTS while no cloud runs, so that the next start takes them in one batch.
    const paths = pki().devices[`${gw.tenantId}/${gw.deviceId}`]!;
    const device = await connect({
      servers: [natsUrl()],
      tls: { caFile: pki().caCert, certFile: paths.cert, keyFile: paths.key },
    });
    const js = jetstream(device);
    const expected: string[] = [];
    for (let i = 0; i < EVENTS; i++) {
      const ev = makeEvent(gw, { label: i % 2 === 0 ? 'person' : 'car', trackId: `t-${i}` });
      await js.publish(evtSubject(gw), DetectionEvent.encode(ev).finish(), { msgID: ev.eventId });
      expected.push(`/all ${ev.eventId}`);
      if (i % 2 === 0) expected.push(`/people ${ev.eventId}`);
    }
    await device.close();

    // Crash 1: the batch is committed, then the process dies (SIGKILL) before acking or enqueuing anything.
    const crash = start(['ingest.after_commit']);
    expect(await crash.exited()).toMatchObject({ signal: 'SIGKILL' });
    expect(await count('select count(*) as n from events')).toBe(EVENTS);
    expect((await jsm.streams.info('JOBS')).state.messages).toBe(0);
    expect(received).toEqual([]);

    // The jobs were committed with the events. Crash 2: the relay publishes them to JOBS and the process dies
    // before deleting them from the outbox. The receiver refuses meanwhile (503, not recorded), so that a
    // delivery in flight at the kill is retried, not counted: what is checked here is the jobs, not HTTP.
    const jobs = expected.length;
    expect(await count('select count(*) as n from webhook_outbox')).toBe(jobs);
    accepting = false;
    const relayCrash = start(['webhooks.relay.after_publish']);
    expect(await relayCrash.exited()).toMatchObject({ signal: 'SIGKILL' });
    expect(await count('select count(*) as n from webhook_outbox')).toBe(jobs);
    expect((await jsm.streams.info('JOBS')).state.last_seq).toBe(jobs);

    // A clean start: the events are redelivered (duplicates now: no new jobs), the outbox is relayed again
    // (JOBS drops every id as a duplicate) and each job is delivered.
    accepting = true;
    const last = start();
    await expect
      .poll(() => received.length, { timeout: 90_000, interval: 250 })
      .toBeGreaterThanOrEqual(expected.length);
    // Settled: nothing left to relay or deliver, so any duplicate would have arrived by now.
    await expect
      .poll(async () => (await jsm.streams.info('JOBS')).state.messages, { timeout: 30_000 })
      .toBe(0);
    expect([...received].sort()).toEqual([...expected].sort());
    expect(await count('select count(*) as n from webhook_outbox')).toBe(0);
    // Every job was stored in JOBS once, across both relays.
    expect((await jsm.streams.info('JOBS')).state.last_seq).toBe(jobs);
    await last.stop();
  }, 240_000);
});
