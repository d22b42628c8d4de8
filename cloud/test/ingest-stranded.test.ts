// Finding 5 of issue 13: messages stranded in the EVENTS work queue below the ingest consumer's ack floor.
//
// How the stranded state is made on a real nats-server 2.10: a work-queue stream refuses any consumer that does
// not deliver all (so a consumer cannot start past messages), and only one unfiltered consumer is allowed. What
// 2.9.10 did on kill -9 was lose the removals of acked messages while the consumer's state kept the acks. This
// test does exactly that to the server's files: it copies the EVENTS message blocks while 41 messages wait in
// them, lets ingest consume (and ack: the stream empties, the ack floor reaches 41), stops the server and puts
// the old blocks back. 2.10.27 restarts with all 41 messages below an ack floor of 41 and never delivers them
// (asserted below before any repair). PostgreSQL meanwhile "lost" 10 of the 40 rows (deleted here, as a restore
// from an older backup would), and one message is poison (dead-lettered the first time). The repair must delete
// the 30 stored copies, re-ingest the 10 missing events, dead-letter the poison once, and lose nothing.
import { cpSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { sql, type Kysely } from 'kysely';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DetectionEvent } from '@vigil/proto';
import { natsConfig, printLogsOnFailure, useDatabase, useNats, usePki } from '@vigil/testkit';
import {
  createDb,
  DEAD_LETTER_STREAM,
  ensureIngestConsumer,
  ensureStreams,
  EVENTS_STREAM,
  FleetRegistry,
  INGEST_CONSUMER,
  migrateToLatest,
  parseCloudConfig,
  startCloud,
  type CloudApp,
} from '../src/index.js';
import type { Database } from '../src/storage/tables.js';
import { evtSubject, makeEvent, type TestDevice } from './support/ingest-stack.js';

const gw: TestDevice = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-strand' };
const STORED = 40;
const LOST = 10;

describe('stranded messages in EVENTS below the ingest ack floor', () => {
  const pki = usePki({ devices: [gw], services: ['cloud'] });
  const nats = useNats({
    config: (ctx) =>
      natsConfig({
        tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
      })(ctx),
  });
  const databaseUrl = useDatabase();
  const lines: string[] = [];
  printLogsOnFailure('cloud', () => lines.join(''));
  const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push(l) });
  let db: Kysely<Database>;
  let cloud: CloudApp | undefined;
  /** A second ingest process during the repair (several processes repair at once, safely). */
  let second: CloudApp | undefined;
  let svc: NatsConnection | undefined;
  let jsm: JetStreamManager;

  const natsUrl = (): string => `tls://localhost:${nats().port}`;
  const tls = () => {
    const c = pki().services.cloud!;
    return { caFile: pki().caCert, certFile: c.cert, keyFile: c.key };
  };
  const config = () =>
    parseCloudConfig({
      http: { port: 0 },
      database: { url: databaseUrl() },
      nats: { servers: [natsUrl()], tls: tls() },
      api: { enabled: false },
      tracing: { enabled: false },
      // Small passes, so that the repair takes several; short interval, so that the test need not wait.
      ingest: { strandedRepairIntervalSeconds: 1, strandedRepairMaxPerPass: 16 },
    });
  const connectSvc = async (): Promise<void> => {
    svc = await connect({ servers: [natsUrl()], tls: tls(), maxReconnectAttempts: -1 });
    jsm = await jetstreamManager(svc);
  };
  const eventsDir = (): string => join(nats().dir, 'jetstream', 'jetstream', '$G', 'streams', EVENTS_STREAM);
  const metric = async (app: CloudApp, name: string, labels = ''): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${app.httpPort}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
    return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
  };
  /** A counter summed over both cloud processes. */
  const total = async (name: string, labels: string): Promise<number> =>
    (await metric(cloud!, name, labels)) + (second ? await metric(second, name, labels) : 0);
  const rows = async (): Promise<{ n: number; ids: number }> => {
    const r = await sql<{ n: string; ids: string }>`
      select count(*) as n, count(distinct event_id) as ids from events`.execute(db);
    return { n: Number(r.rows[0]?.n), ids: Number(r.rows[0]?.ids) };
  };

  beforeAll(async () => {
    db = createDb(databaseUrl(), 2, () => undefined);
    await migrateToLatest(db as Kysely<unknown>);
    await new FleetRegistry(db).registerDevice(gw);
  });
  afterAll(async () => {
    await second?.stop();
    await cloud?.stop();
    await svc?.close();
    await db?.destroy();
  });

  it('removes stored copies, re-ingests missing events, dead-letters poison once, loses nothing', async () => {
    // EVENTS and the ingest consumer as the cloud makes them; then 40 events and one poison message wait.
    await connectSvc();
    await ensureStreams(jsm, config());
    await ensureIngestConsumer(jsm, config());
    const paths = pki().devices[`${gw.tenantId}/${gw.deviceId}`]!;
    const device = await connect({
      servers: [natsUrl()],
      tls: { caFile: pki().caCert, certFile: paths.cert, keyFile: paths.key },
    });
    const js = jetstream(device);
    const events = Array.from({ length: STORED }, (_, i) => makeEvent(gw, { trackId: `s-${i}` }));
    for (const ev of events)
      await js.publish(evtSubject(gw), DetectionEvent.encode(ev).finish(), { msgID: ev.eventId });
    await js.publish(evtSubject(gw), new Uint8Array([0xff, 0xff, 0xff]), { msgID: 'poison-1' });
    await device.close();
    await svc!.close();

    // The blocks as they are now, with all 41 messages.
    await nats().stop();
    const backup = `${eventsDir()}-msgs-backup`;
    cpSync(join(eventsDir(), 'msgs'), backup, { recursive: true });
    await nats().start();

    // Ingest takes them: 40 rows, 1 dead letter, EVENTS empty, the ack floor at 41.
    cloud = await startCloud(config(), { logger });
    await connectSvc();
    await expect.poll(async () => (await rows()).n, { timeout: 30_000 }).toBe(STORED);
    await expect
      .poll(async () => (await jsm.streams.info(EVENTS_STREAM)).state.messages, { timeout: 30_000 })
      .toBe(0);
    await expect
      .poll(async () => (await jsm.consumers.info(EVENTS_STREAM, INGEST_CONSUMER)).ack_floor.stream_seq, {
        timeout: 30_000,
      })
      .toBe(STORED + 1);
    expect((await jsm.streams.info(DEAD_LETTER_STREAM)).state.messages).toBe(1);
    await cloud.stop();
    cloud = undefined;
    await svc!.close();

    // PostgreSQL loses 10 rows; the stream gets its old blocks back (the removals lost, the acks kept).
    const lost = events.slice(0, LOST).map((e) => e.eventId);
    await sql`delete from events where event_id = any(${lost}::uuid[])`.execute(db);
    await nats().stop();
    rmSync(join(eventsDir(), 'msgs'), { recursive: true, force: true });
    cpSync(backup, join(eventsDir(), 'msgs'), { recursive: true });
    expect(existsSync(join(eventsDir(), 'obs', INGEST_CONSUMER))).toBe(true);
    await nats().start();
    await connectSvc();

    // Stranded, on 2.10.27 too: 41 messages, all below the ack floor, none pending for the consumer.
    const stranded = await jsm.streams.info(EVENTS_STREAM);
    const ingest = await jsm.consumers.info(EVENTS_STREAM, INGEST_CONSUMER);
    expect(stranded.state).toMatchObject({ messages: STORED + 1, first_seq: 1, last_seq: STORED + 1 });
    expect(ingest.ack_floor.stream_seq).toBe(STORED + 1);
    expect(ingest.num_pending).toBe(0);

    // The repair (at start, then every second, 16 per pass), by two ingest processes at once.
    [cloud, second] = await Promise.all([startCloud(config(), { logger }), startCloud(config(), { logger })]);
    await expect
      .poll(async () => (await jsm.streams.info(EVENTS_STREAM)).state.messages, { timeout: 60_000 })
      .toBe(0);
    expect(await rows()).toEqual({ n: STORED, ids: STORED });
    // Each message is counted once, by the process whose delete removed it. Which of the two processes
    // stored a missing event first is a race: one that loses it finds the event in PostgreSQL (removed).
    const removed = await total('vigil_cloud_ingest_stranded_total', '{result="removed"}');
    const reingested = await total('vigil_cloud_ingest_stranded_total', '{result="reingested"}');
    expect(removed + reingested).toBe(STORED);
    expect(reingested).toBeLessThanOrEqual(LOST);
    expect(removed).toBeGreaterThanOrEqual(STORED - LOST);
    expect(await total('vigil_cloud_ingest_stranded_total', '{result="dead_lettered"}')).toBe(1);
    // The poison was dead-lettered again with the same msg id (dlq-<seq>): DEAD_LETTER holds it once.
    expect((await jsm.streams.info(DEAD_LETTER_STREAM)).state.messages).toBe(1);
    expect(lines.join('')).toContain('stranded messages below the ingest ack floor repaired');

    await second.stop();
    second = undefined;
    // Ingest goes on as before.
    const again = await connect({
      servers: [natsUrl()],
      tls: { caFile: pki().caCert, certFile: paths.cert, keyFile: paths.key },
    });
    const later = makeEvent(gw, { trackId: 'after' });
    await jetstream(again).publish(evtSubject(gw), DetectionEvent.encode(later).finish(), {
      msgID: later.eventId,
    });
    await again.close();
    await expect.poll(async () => (await rows()).n, { timeout: 30_000 }).toBe(STORED + 1);
    rmSync(backup, { recursive: true, force: true });
  }, 180_000);
});
