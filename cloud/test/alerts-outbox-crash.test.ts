// Agency alerts survive kill -9 of the cloud between the commit that raises them and their sending. The cloud
// runs as a real child process; a failpoint (VIGIL_FAILPOINTS) kills it right after an ingest batch's COMMIT
// (incidents and CAP message jobs committed, nothing enqueued or sent), then right after the outbox relay's
// PubAcks (jobs in JOBS, still in the outbox). After a clean restart the mTLS agency receives every message
// exactly once, Alert before Cancel for each track.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DetectionEvent, TrackPhase } from '@vigil/proto';
import { natsConfig, printLogsOnFailure, useDatabase, useNats, usePki } from '@vigil/testkit';
import { AlertStore } from '../src/alerts/store.js';
import { createDb, FleetRegistry } from '../src/index.js';
import type { Database } from '../src/storage/tables.js';
import { CAP_XSD as XSD, INTRUSION, startAgency, type Agency } from './support/agency.js';
import { spawnCloud, type CloudProcess } from './support/cloud-process.js';
import { evtSubject, makeEvent, type TestDevice } from './support/ingest-stack.js';

const gw: TestDevice = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-alert-crash' };
const TRACKS = 6;

describe('agency alerts: kill -9 between commit and send loses and repeats nothing', () => {
  const pki = usePki({ devices: [gw], services: ['cloud'] });
  const nats = useNats({
    config: (ctx) =>
      natsConfig({
        tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
      })(ctx),
  });
  const databaseUrl = useDatabase();
  const dir = mkdtempSync(join(tmpdir(), 'vigil-alert-crash-'));
  /** `<msgType> <identifier>` of every message answered 200, in arrival order. */
  const received: string[] = [];
  let accepting = true;
  let agency: Agency;
  let db: Kysely<Database>;
  let current: CloudProcess | undefined;
  const outputs: string[] = [];
  printLogsOnFailure('cloud processes', () => [...outputs, current?.output() ?? ''].join('\n----\n'));

  const natsUrl = (): string => `tls://localhost:${nats().port}`;
  const start = (failpoints: string[] = []): CloudProcess => {
    if (current) outputs.push(current.output());
    const c = pki().services.cloud!;
    current = spawnCloud(
      dir,
      {
        http: { port: 0 },
        database: { url: databaseUrl() },
        nats: { servers: [natsUrl()], tls: { caFile: pki().caCert, certFile: c.cert, keyFile: c.key } },
        api: { enabled: false },
        tracing: { enabled: false },
        integrations: {
          allowPrivateNetworks: true,
          timeoutMs: 1000,
          backoff: { initialMs: 100, maxMs: 500 },
        },
        alerts: { capSchemaFile: XSD, maxAttempts: 200 },
      },
      { failpoints },
    );
    return current;
  };

  beforeAll(async () => {
    agency = await startAgency(
      (req) => {
        const id = /<identifier>([^<]*)<\/identifier>/.exec(req.body)?.[1] ?? '?';
        const type = /<msgType>([^<]*)<\/msgType>/.exec(req.body)?.[1] ?? '?';
        if (accepting) received.push(`${type} ${id}`);
        return { status: accepting ? 200 : 503 };
      },
      { clientName: 'vigil' },
    );
  });
  afterAll(async () => {
    await current?.stop();
    await db?.destroy();
    await agency?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('every Alert and Cancel reaches the agency exactly once, in order per track, across both crashes', async () => {
    const first = start();
    await first.waitForLog('ingest consuming EVENTS');
    db = createDb(databaseUrl(), 2, () => undefined);
    await new FleetRegistry(db).registerDevice(gw);
    const store = new AlertStore(db);
    const { target } = await store.createTarget({
      tenantId: 'acme',
      name: 'agency',
      url: `${agency.url}/cap`,
      auth: 'mtls',
      clientCertPem: agency.client.certPem,
      clientKeyPem: agency.client.keyPem,
      caPem: agency.ca.certPem,
      createdBy: 'test',
    });
    await store.createRule({
      tenantId: 'acme',
      name: 'people',
      match: { labels: ['person'] },
      cap: INTRUSION,
      targetIds: [target.id],
      createdBy: 'test',
    });
    await first.stop();

    // Events wait in EVENTS while no cloud runs: the next start takes them in one batch.
    const paths = pki().devices[`${gw.tenantId}/${gw.deviceId}`]!;
    const device: NatsConnection = await connect({
      servers: [natsUrl()],
      tls: { caFile: pki().caCert, certFile: paths.cert, keyFile: paths.key },
    });
    const js = jetstream(device);
    const t0 = Date.now() - 60_000;
    for (let i = 0; i < TRACKS; i++)
      for (const [phase, dt] of [
        [TrackPhase.TRACK_PHASE_START, 0],
        [TrackPhase.TRACK_PHASE_END, 1000],
      ] as const) {
        const ev = makeEvent(gw, {
          label: 'person',
          trackId: `t-${i}`,
          phase,
          occurredAt: new Date(t0 + i * 10 + dt),
        });
        await js.publish(evtSubject(gw), DetectionEvent.encode(ev).finish(), { msgID: ev.eventId });
      }
    await device.close();

    const crash = start(['ingest.after_commit']);
    expect(await crash.exited()).toMatchObject({ signal: 'SIGKILL' });
    const outboxed = await db
      .selectFrom('webhook_outbox')
      .select('msg_id')
      .where('subject', '=', 'vigil.jobs.alerts.deliver')
      .execute();
    // The Alerts: each track's END is recorded in the same commit, its Cancel is written by the end sweeper
    // once the grace is over (alerts.endGraceMs, migration 0032), which this process never lived to see.
    expect(outboxed).toHaveLength(TRACKS);
    expect(received).toEqual([]);

    accepting = false;
    const relayCrash = start(['webhooks.relay.after_publish']);
    expect(await relayCrash.exited()).toMatchObject({ signal: 'SIGKILL' });

    accepting = true;
    const last = start();
    await expect
      .poll(() => received.length, { timeout: 90_000, interval: 250 })
      .toBeGreaterThanOrEqual(TRACKS * 2);
    await expect
      .poll(
        async () =>
          (await db.selectFrom('alert_messages').select('state').where('state', '!=', 'delivered').execute())
            .length,
        {
          timeout: 30_000,
        },
      )
      .toBe(0);
    const ids = received.map((r) => r.split(' ')[1]!);
    expect(new Set(ids).size).toBe(ids.length); // once each
    expect(received).toHaveLength(TRACKS * 2);
    const incidents = new Set(ids.map((id) => id.replace(/-\d+$/, '')));
    expect(incidents.size).toBe(TRACKS);
    for (const inc of incidents)
      expect(received.filter((r) => r.includes(inc)).map((r) => r.split(' ')[0])).toEqual([
        'Alert',
        'Cancel',
      ]);
    await last.stop();
  }, 240_000);
});
