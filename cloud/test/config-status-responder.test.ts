// The config status responder against real nats-server and PostgreSQL (issue 17): statuses that arrive together
// are recorded and answered by one statement, each with its own answer; a status that waited past its device's
// request timeout is dropped unanswered and counted `expired` (the cloud clock is injected), instead of
// spending the database on a reply nobody reads.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Kysely } from 'kysely';
import pg from 'pg';
import { pino } from 'pino';
import { Registry, type Counter } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConfigState,
  ConfigStatus,
  DeviceHealth,
  deviceInboxPrefix,
  SignedConfig,
  subjectFor,
} from '@vigil/proto';
import { useDatabase, useNats } from '@vigil/testkit';
import { ConfigStatusResponder } from '../src/config-ota/delivery.js';
import { ConfigIssuer } from '../src/config-ota/issuer.js';
import { ConfigSigner, ensureDevConfigSigningKey } from '../src/config-ota/signing.js';
import { createDb, FleetRegistry, migrateToLatest } from '../src/index.js';
import type { Database } from '../src/storage/tables.js';

const dbUrl = useDatabase();
const nats = useNats();
const tmp = mkdtempSync(join(tmpdir(), 'vigil-status-responder-'));
const log = pino({ level: 'silent' });
const DEVICES = ['d1', 'd2', 'd3', 'd4'];

let db: Kysely<Database>;
let issuer: ConfigIssuer;
let service: NatsConnection;
const devices = new Map<string, NatsConnection>();
let clock = Date.parse('2026-12-08T01:00:00Z');

beforeAll(async () => {
  db = createDb(dbUrl(), 4);
  await migrateToLatest(db as Kysely<unknown>);
  const registry = new FleetRegistry(db);
  for (const id of DEVICES) await registry.registerDevice({ tenantId: 'acme', siteId: 'hq', deviceId: id });
  const keys = await ensureDevConfigSigningKey(join(tmp, 'keys'));
  const signer = await ConfigSigner.load({ privateJwkFile: keys.privateJwkFile });
  issuer = new ConfigIssuer({ db, log, metrics: new Registry(), signer });
  await issuer.issue({ tenantId: 'acme', deviceIds: ['d1', 'd3', 'd4'], body: {}, actor: 'system' });
  service = await connect({ servers: [nats().url] });
  for (const id of DEVICES)
    devices.set(id, await connect({ servers: [nats().url], inboxPrefix: deviceInboxPrefix('acme', id) }));
});
afterAll(async () => {
  for (const nc of devices.values()) await nc.close();
  await service?.close();
  await db?.destroy();
  rmSync(tmp, { recursive: true, force: true });
});

const status = (deviceId: string, version: bigint, applied: bigint, reportedAt: Date): Uint8Array =>
  ConfigStatus.encode(
    ConfigStatus.fromPartial({
      tenantId: 'acme',
      deviceId,
      version,
      appliedVersion: applied,
      state: applied > 0n ? ConfigState.CONFIG_STATE_APPLIED : ConfigState.CONFIG_STATE_PENDING,
      health: DeviceHealth.DEVICE_HEALTH_OK,
      reportedAt,
    }),
  ).finish();

/** The device's status request; resolves to the answer's version (0n: empty, nothing newer). */
async function poll(deviceId: string, data: Uint8Array, timeout = 5_000): Promise<bigint> {
  const reply = await devices
    .get(deviceId)!
    .request(subjectFor('acme', deviceId, 'status'), data, { timeout });
  return reply.data.length === 0 ? 0n : SignedConfig.decode(reply.data).version;
}

async function counts(metrics: Registry): Promise<Record<string, number>> {
  const c = metrics.getSingleMetric('vigil_cloud_config_status_total') as Counter<'result'>;
  return Object.fromEntries((await c.get()).values.map((v) => [String(v.labels.result), v.value]));
}

describe('ConfigStatusResponder', () => {
  it('answers statuses that share a batch each on their own, recording the newest per device', async () => {
    const metrics = new Registry();
    // One batch at a time: the statuses sent together wait and go out in shared batches.
    const responder = new ConfigStatusResponder(service, issuer, log, metrics, { maxInFlight: 1 });
    responder.start();
    await service.flush();
    try {
      const t = (s: number): Date => new Date(clock + s * 1000);
      const answers = await Promise.all([
        poll('d1', status('d1', 0n, 0n, t(1))),
        poll('d1', status('d1', 1n, 1n, t(3))),
        poll('d1', status('d1', 0n, 0n, t(2))),
        poll('d2', status('d2', 0n, 0n, t(1))),
        poll('d3', status('d3', 0n, 0n, t(1))),
        // Names another device: refused, nothing recorded.
        poll('d4', status('d1', 9n, 9n, t(9))),
      ]);
      expect(answers).toEqual([1n, 0n, 1n, 0n, 1n, 0n]);
      const states = await db
        .selectFrom('device_config_state')
        .select(['device_id', 'reported_version', 'applied_version', 'state', 'reported_at'])
        .where('tenant_id', '=', 'acme')
        .orderBy('device_id')
        .execute();
      expect(states.map((s) => [s.device_id, s.applied_version, s.state, s.reported_at])).toEqual([
        ['d1', '1', 'applied', t(3)],
        ['d2', '0', 'pending', t(1)],
        ['d3', '0', 'pending', t(1)],
        ['d4', null, 'unknown', null],
      ]);
      expect(await counts(metrics)).toMatchObject({ config: 3, current: 2, mismatch: 1, expired: 0 });
    } finally {
      await responder.stop();
    }
  });

  it('drops a status that waited past the device timeout, unanswered, counted expired', async () => {
    const metrics = new Registry();
    const responder = new ConfigStatusResponder(service, issuer, log, metrics, {
      maxInFlight: 1,
      maxAgeMs: 4_000,
      now: () => clock,
    });
    responder.start();
    await service.flush();
    // d3's state row is locked: its status's batch blocks in the database, holding the one batch slot.
    const locker = new pg.Client({ connectionString: dbUrl() });
    await locker.connect();
    try {
      await locker.query('begin');
      await locker.query(
        "select 1 from device_config_state where tenant_id = 'acme' and device_id = 'd3' for update",
      );
      const blocked = poll('d3', status('d3', 0n, 0n, new Date(clock + 10_000)), 20_000);
      const waitFor = async (ok: () => boolean | Promise<boolean>, what: string): Promise<void> => {
        const deadline = Date.now() + 15_000; // a wait for a condition: room for a loaded machine
        while (!(await ok())) {
          if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      await waitFor(async () => {
        const r = await locker.query<{ n: number }>(
          "select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()",
        );
        return r.rows[0]!.n > 0;
      }, "the first batch to wait on d3's lock");
      // d4 asks meanwhile: it waits behind the blocked batch, then its device's timeout passes.
      const late = poll('d4', status('d4', 0n, 0n, new Date(clock)), 3_000);
      const lateOutcome = late.then(
        (v) => `answered ${v}`,
        (e: unknown) => `no answer (${(e as Error).message})`,
      );
      await waitFor(() => responder.queued === 1, "d4's status to wait");
      expect((await metrics.getSingleMetricAsString('vigil_cloud_config_status_waiting')).trim()).toMatch(
        / 1$/,
      );
      clock += 4_001;
      await locker.query('commit');
      expect(await blocked).toBe(1n);
      expect(await lateOutcome).toMatch(/^no answer/);
      expect(await counts(metrics)).toMatchObject({ config: 1, expired: 1 });
      expect(responder.queued).toBe(0);
      expect((await metrics.getSingleMetricAsString('vigil_cloud_config_status_waiting')).trim()).toMatch(
        / 0$/,
      );
      // A fresh status from d4 is answered again.
      expect(await poll('d4', status('d4', 0n, 0n, new Date(clock)))).toBe(1n);
    } finally {
      await locker.end();
      await responder.stop();
    }
  });
});
