// Alert ordering across ingest processes: two real cloud processes consume the same durable `ingest` consumer in
// small batches, so the START, ZONE_ENTER and END of one track are committed by different processes, in
// whatever order their transactions finish. The in-process batch wait (ORDER_WAIT_MAX_MS) cannot order them;
// the END's grace (alerts.endGraceMs, migration 0032) and the end sweeper do, and delivery waits for message n-1
// of the same incident and target. Every track's incident reaches the mTLS agency in order, each message
// referencing the one before, once each, and ends with its Cancel (before 0032 an END committed ahead of its
// START left the incident open for ever, and one committed ahead of the ZONE_ENTER lost the Update).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DetectionEvent, TrackPhase } from '@vigil/proto';
import { freePort, natsConfig, printLogsOnFailure, useDatabase, useNats, usePki } from '@vigil/testkit';
import { AlertStore } from '../src/alerts/store.js';
import { createDb, FleetRegistry } from '../src/index.js';
import type { Database } from '../src/storage/tables.js';
import {
  CAP_XSD,
  capReader,
  expectCapChain,
  INTRUSION,
  startAgency,
  type Agency,
  type CapSeen,
} from './support/agency.js';
import { spawnCloud, type CloudProcess } from './support/cloud-process.js';
import { evtSubject, makeEvent, type TestDevice } from './support/ingest-stack.js';

const gw: TestDevice = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-two-ingest' };
const TRACKS = 30;

describe('agency alerts: two ingest processes on one durable keep each incident in order', () => {
  const pki = usePki({ devices: [gw], services: ['cloud'] });
  const nats = useNats({
    config: (ctx) =>
      natsConfig({
        tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
      })(ctx),
  });
  const dbUrl = useDatabase();
  const dir = mkdtempSync(join(tmpdir(), 'vigil-two-ingest-'));
  const procs: Array<{ p: CloudProcess; port: number }> = [];
  printLogsOnFailure('cloud processes', () => procs.map((x) => x.p.output().slice(-20_000)).join('\n----\n'));
  const read = capReader();
  const received: Array<CapSeen & { body: string }> = [];
  let agency: Agency;
  let db: Kysely<Database>;
  let device: NatsConnection;

  beforeAll(async () => {
    agency = await startAgency((req) => {
      const cap = read(req.body);
      received.push({ ...cap, body: req.body });
      return { status: cap.valid === null ? 200 : 400 };
    });
    const c = pki().services.cloud!;
    const start = async (name: string, roles: string[]) => {
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
          // Batches of one or two events: consecutive events of a track go to different processes.
          ingest: { batchSize: 2, maxAckPending: 200 },
          api: { enabled: false },
          tracing: { enabled: false },
          integrations: {
            allowPrivateNetworks: true,
            timeoutMs: 3000,
            backoff: { initialMs: 100, maxMs: 500 },
          },
          alerts: { capSchemaFile: CAP_XSD, maxAttempts: 200 },
        },
        { name, roles },
      );
      procs.push({ p, port });
      await p.waitForLog('ingest consuming EVENTS', 120_000);
    };
    await Promise.all([start('ingest-a', ['ingest', 'integrations']), start('ingest-b', ['ingest'])]);
    db = createDb(dbUrl(), 2, () => undefined);
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
    const paths = pki().devices[`${gw.tenantId}/${gw.deviceId}`]!;
    device = await connect({
      servers: [`tls://localhost:${nats().port}`],
      tls: { caFile: pki().caCert, certFile: paths.cert, keyFile: paths.key },
    });
  }, 240_000);
  afterAll(async () => {
    for (const { p } of procs) await p.stop();
    await device?.close();
    await db?.destroy();
    await agency?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const inserted = async (port: number): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const m = /^vigil_cloud_ingest_events_inserted_total(?:\{[^}]*\})? (\d+)/m.exec(text);
    return m ? Number(m[1]) : 0;
  };

  it('every track: Alert, (Update,) Cancel in order, each referencing the one before, once each, none left open', async () => {
    // The rules cache of each process (RULES_CACHE_MS) has not seen the rule yet: wait it out.
    await new Promise((r) => setTimeout(r, 5500));
    const js = jetstream(device);
    const t0 = Date.now() - 60_000;
    // Each track: seen at the door (Alert: no dwell), walks into the hall (Update), leaves (Cancel).
    const pending: Array<Promise<unknown>> = [];
    for (let i = 0; i < TRACKS; i++)
      for (const [phase, dt, zones] of [
        [TrackPhase.TRACK_PHASE_START, 0, ['door']],
        [TrackPhase.TRACK_PHASE_ZONE_ENTER, 1000, ['door', 'hall']],
        [TrackPhase.TRACK_PHASE_END, 2000, []],
      ] as const) {
        const ev = makeEvent(gw, {
          trackId: `t-${i}`,
          phase,
          zones: [...zones],
          occurredAt: new Date(t0 + i * 10 + dt),
        });
        pending.push(js.publish(evtSubject(gw), DetectionEvent.encode(ev).finish(), { msgID: ev.eventId }));
      }
    await Promise.all(pending);
    // Every incident closes: its Cancel is the last message (the END was committed, by either process).
    await expect
      .poll(() => received.filter((r) => r.msgType === 'Cancel').length, { timeout: 120_000, interval: 500 })
      .toBe(TRACKS);
    await new Promise((r) => setTimeout(r, 2000)); // nothing more, nothing twice
    const byIncident = new Map<string, typeof received>();
    for (const r of received) {
      const inc = r.identifier.replace(/-\d+$/, '');
      byIncident.set(inc, [...(byIncident.get(inc) ?? []), r]);
    }
    expect(byIncident.size).toBe(TRACKS);
    // Alert, Update, Cancel; or Alert, Cancel when the ZONE_ENTER was decided before the START (its Alert
    // already says door and hall; the older START is no news). An Alert of the door alone with no Update after
    // it is a lost Update (an END decided before the ZONE_ENTER); nothing twice, none left open.
    const shapes = new Map<string, number>();
    for (const chain of byIncident.values()) {
      const types = chain.map((r) => r.msgType).join(',');
      const alertSaysHall = chain[0]!.body.includes('in zone(s) door, hall');
      const shape = `${types}${alertSaysHall ? ' (Alert in the hall)' : ''}`;
      shapes.set(shape, (shapes.get(shape) ?? 0) + 1);
      expectCapChain(chain, alertSaysHall ? ['Alert', 'Cancel'] : ['Alert', 'Update', 'Cancel']);
    }
    console.log(`[two ingest] incidents by messages: ${JSON.stringify(Object.fromEntries(shapes))}`);
    expect(new Set(received.map((r) => r.identifier)).size).toBe(received.length); // once each
    const [a, b] = [await inserted(procs[0]!.port), await inserted(procs[1]!.port)];
    console.log(`[two ingest] events committed: a ${a}, b ${b}`);
    expect(a + b).toBe(TRACKS * 3);
    expect(a).toBeGreaterThan(0);
    expect(b).toBeGreaterThan(0);
  }, 240_000);
});
