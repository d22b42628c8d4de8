// Scale-out with two API and two ingest processes (issue #17, "the realtime stream, rate limits and idempotency
// behave as with one"): a real 3-node NATS cluster (mutual TLS, JetStream R3), PostgreSQL and Redis, and four real
// cloud processes (separate PIDs: cloud/src/main.ts) — api-a and api-b run the `api` and `realtime` roles,
// ingest-a and ingest-b the `ingest` role. A device publishes events as an agent does (its own certificate, one
// Nats-Msg-Id per event, on whichever node it reaches):
//   - a websocket client on either API process sees every event once, whichever ingest process committed it;
//   - events are stored exactly once, and both ingest processes took part;
//   - a client's rate limit spent on api-a is spent on api-b (one GCRA state in Redis);
//   - an Idempotency-Key used on api-a replays on api-b (the key and response are in PostgreSQL);
//   - concurrent rollout creates split over both processes start one rollout (migration 0034's constraint).
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { DetectionEvent } from '@vigil/proto';
import { freePort, printLogsOnFailure, useDatabase, useNatsCluster, usePki, useRedis } from '@vigil/testkit';
import {
  createDb,
  ensureDevConfigSigningKey,
  ensureDevSigningKey,
  FleetRegistry,
  mintDevToken,
  type DevSigningKey,
} from '../src/index.js';
import type { Database } from '../src/storage/tables.js';
import { PROBLEM_JSON } from './api-fixtures.js';
import { spawnCloud, type CloudProcess } from './support/cloud-process.js';
import { evtSubject, makeEvent, type TestDevice } from './support/ingest-stack.js';

const gw: TestDevice = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-scale' };
const ISSUER = 'vigil-cluster-test';
const AUDIENCE = 'vigil-api-cluster-test';
/** A client's limit: a burst of 5, then one request per 100 s (nothing refills while the test runs). */
const CLIENT = { ratePerSecond: 0.01, burst: 5 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface WsMessage {
  type: string;
  event?: { event_id: string };
}

describe('NATS cluster: two API and two ingest processes behave as one', () => {
  const pki = usePki({ devices: [gw], services: ['cloud'] });
  const cluster = useNatsCluster(pki);
  const dbUrl = useDatabase();
  const redis = useRedis();
  const dir = mkdtempSync(join(tmpdir(), 'vigil-cluster-api-'));
  const procs = new Map<string, { p: CloudProcess; port: number }>();
  printLogsOnFailure('cloud processes', () =>
    [...procs].map(([n, x]) => `---- ${n}\n${x.p.output().slice(-15_000)}`).join('\n'),
  );
  let key: DevSigningKey;
  let db: Kysely<Database>;
  let device: NatsConnection;
  let js: JetStreamClient;

  const base = (name: string): string => `http://127.0.0.1:${procs.get(name)!.port}`;
  const token = (tenant: string, roles: string[], sub = `user@${tenant}`): Promise<string> =>
    mintDevToken({ key, issuer: ISSUER, audience: AUDIENCE, tenant, roles, sub, ttlSeconds: 600 });

  const config = (port: number): Record<string, unknown> => {
    const c = pki().services.cloud!;
    return {
      http: { host: '127.0.0.1', port },
      database: { url: dbUrl() },
      // Every node's URL: a process reconnects to a surviving node by itself.
      nats: { servers: cluster().urls, tls: { caFile: pki().caCert, certFile: c.cert, keyFile: c.key } },
      streams: { replicas: 3 },
      ingest: { batchSize: 20, maxAckPending: 200 },
      auth: { issuer: ISSUER, audience: AUDIENCE, jwksFile: key.jwksFile },
      configSigning: { privateJwkFile: join(dir, 'config-signing.jwk.json') },
      // The tenant limit is out of the way; the client limit is what the test spends. Redis answers slowly on a
      // loaded machine, and a limiter that timed out would fail open.
      rateLimit: {
        redisUrl: redis().url,
        tenant: { ratePerSecond: 1000, burst: 10_000 },
        client: CLIENT,
        commandTimeoutMs: 2_000,
      },
      tracing: { enabled: false },
    };
  };

  beforeAll(async () => {
    key = ensureDevSigningKey(pki().dir);
    await ensureDevConfigSigningKey(dir);
    const start = async (name: string, roles: string[], ready: string) => {
      const port = await freePort();
      const p = spawnCloud(dir, config(port), { name, roles });
      procs.set(name, { p, port });
      await p.waitForLog(ready, 120_000);
    };
    // One process migrates first; the others then find the schema up to date.
    await start('ingest-a', ['ingest'], 'ingest consuming EVENTS');
    await Promise.all([
      start('ingest-b', ['ingest'], 'ingest consuming EVENTS'),
      start('api-a', ['api', 'realtime'], 'cloud HTTP listening'),
      start('api-b', ['api', 'realtime'], 'cloud HTTP listening'),
    ]);
    const pids = new Set([...procs.values()].map((x) => x.p.child.pid));
    expect(pids.size).toBe(4);

    db = createDb(dbUrl(), 2);
    const reg = new FleetRegistry(db);
    await reg.registerDevice(gw);
    const paths = pki().devices[`${gw.tenantId}/${gw.deviceId}`]!;
    device = await connect({
      servers: cluster().urls,
      tls: { caFile: pki().caCert, certFile: paths.cert, keyFile: paths.key },
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    });
    js = jetstream(device);
  }, 300_000);
  afterAll(async () => {
    await Promise.all([...procs.values()].map(({ p }) => p.stop()));
    await device?.close();
    await db?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  const inserted = async (name: string): Promise<number> => {
    const text = await (await fetch(`${base(name)}/metrics`)).text();
    const m = /^vigil_cloud_ingest_events_inserted_total(?:\{[^}]*\})? (\d+)/m.exec(text);
    return m ? Number(m[1]) : 0;
  };

  /** A websocket client on /v1/stream collecting event ids; resolves once the server said ready. */
  const streamClient = async (name: string, bearer: string) => {
    const ids: string[] = [];
    const ws = new WebSocket(`${base(name).replace('http', 'ws')}/v1/stream?device=${gw.deviceId}`, {
      headers: { authorization: `Bearer ${bearer}` },
    });
    await new Promise<void>((resolve, reject) => {
      ws.on('message', (data: Buffer) => {
        const m = JSON.parse(data.toString()) as WsMessage;
        if (m.type === 'ready') resolve();
        if (m.type === 'event') ids.push(m.event!.event_id);
      });
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      ws.once('error', reject);
    });
    return { ws, ids };
  };

  it('a websocket on either API process sees every event once, whichever ingest process stored it', async () => {
    const viewer = await token('acme', ['viewer']);
    const onA = await streamClient('api-a', viewer);
    const onB = await streamClient('api-b', viewer);
    const published: string[] = [];
    for (let i = 0; i < 300; i++) {
      const ev = makeEvent(gw);
      const data = DetectionEvent.encode(ev).finish();
      for (let attempt = 0; ; attempt++) {
        try {
          await js.publish(evtSubject(gw), data, { msgID: ev.eventId, timeout: 2000 });
          break;
        } catch (err) {
          if (attempt >= 40) throw err;
          await sleep(250);
        }
      }
      published.push(ev.eventId);
      // Small pauses, so that both ingest processes take turns on the stream.
      if (i % 20 === 19) await sleep(100);
    }
    const stored = async () =>
      (
        await sql<{ rows: number; ids: number }>`
          select count(*)::int as rows, count(distinct event_id)::int as ids from events
          where tenant_id = ${gw.tenantId} and device_id = ${gw.deviceId}`.execute(db)
      ).rows[0];
    await expect.poll(stored, { timeout: 90_000 }).toEqual({ rows: 300, ids: 300 });
    const [a, b] = [await inserted('ingest-a'), await inserted('ingest-b')];
    console.log(`ingest-a stored ${a}, ingest-b stored ${b}`);
    expect(a + b).toBe(300);
    expect(a).toBeGreaterThan(0);
    expect(b).toBeGreaterThan(0);

    await expect.poll(() => onA.ids.length, { timeout: 30_000 }).toBe(300);
    await expect.poll(() => onB.ids.length, { timeout: 30_000 }).toBe(300);
    // Nothing more arrives late (a duplicate would come after the 300th).
    await sleep(1000);
    for (const c of [onA, onB]) {
      expect(c.ids).toHaveLength(300);
      expect(new Set(c.ids)).toEqual(new Set(published));
      c.ws.close();
    }
  }, 240_000);

  it('a client rate limit spent on api-a is spent on api-b', async () => {
    const bearer = await token('acme', ['viewer'], 'rate@acme');
    const get = (name: string) =>
      fetch(`${base(name)}/v1/events?limit=1`, { headers: { authorization: `Bearer ${bearer}` } });
    for (let i = 0; i < CLIENT.burst; i++) {
      const r = await get('api-a');
      expect(r.status).toBe(200);
      await r.arrayBuffer();
    }
    const refused = await get('api-b');
    expect(refused.status).toBe(429);
    expect(refused.headers.get('content-type')).toMatch(PROBLEM_JSON);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(((await refused.json()) as { type: string }).type).toBe('urn:vigil:problem:rate-limited');
    // And back on api-a: still spent. Another client is not affected.
    expect((await get('api-a')).status).toBe(429);
    const other = await token('acme', ['viewer'], 'other@acme');
    const r = await fetch(`${base('api-b')}/v1/events?limit=1`, {
      headers: { authorization: `Bearer ${other}` },
    });
    expect(r.status).toBe(200);
  });

  it('an Idempotency-Key used on api-a replays on api-b', async () => {
    await new FleetRegistry(db).registerDevice({ tenantId: 'acme', siteId: 'hq', deviceId: 'gw-idem' });
    const admin = await token('acme', ['admin'], 'idem@acme');
    const idem = randomUUID();
    const revoke = (name: string, reason: string, k: string | null = idem) =>
      fetch(`${base(name)}/v1/devices/gw-idem/revoke`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${admin}`,
          'content-type': 'application/json',
          ...(k ? { 'idempotency-key': k } : {}),
        },
        body: JSON.stringify({ reason }),
      });
    const first = await revoke('api-a', 'stolen');
    expect(first.status).toBe(200);
    const original = await first.text();
    expect(JSON.parse(original)).toMatchObject({ result: 'revoked' });
    const replayed = await revoke('api-b', 'stolen');
    expect(replayed.status).toBe(200);
    expect(replayed.headers.get('idempotent-replayed')).toBe('true');
    expect(await replayed.text()).toBe(original);
    // The same key with another body is refused on either process; without the key the handler runs again.
    const reused = await revoke('api-b', 'lost');
    expect(reused.status).toBe(422);
    expect(((await reused.json()) as { type: string }).type).toBe('urn:vigil:problem:idempotency-key-reused');
    expect(await (await revoke('api-a', 'stolen', null)).json()).toMatchObject({
      result: 'already_revoked',
    });
  });

  it('concurrent rollout creates on both API processes start one rollout', async () => {
    // One admin per request: one client's burst would not cover 8 requests.
    const create = async (name: string, i: number) =>
      fetch(`${base(name)}/v1/rollouts`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${await token('acme', ['admin'], `rollout-${i}@acme`)}`,
          'content-type': 'application/json',
        },
        body: JSON.stringify({
          target: { scope: 'tenant' },
          body: { attributes: { rev: `r${i}` } },
          spec: {
            canary: 1,
            waves: [100],
            gate_window_seconds: 60,
            soak_seconds: 0,
            gates: { applied_ratio: 0.9 },
            abort: { failure_ratio: 0.2, min_reported: 5 },
          },
        }),
      });
    // gw-scale is enrolled for the rollout's target set; gw-idem was revoked above.
    await sql`update devices set enrolled_at = now() where tenant_id = 'acme' and id = ${gw.deviceId}`.execute(
      db,
    );
    const statuses = await Promise.all(
      Array.from({ length: 8 }, async (_, i) => (await create(i % 2 === 0 ? 'api-a' : 'api-b', i)).status),
    );
    expect(statuses.filter((s) => s === 201)).toHaveLength(1);
    expect(statuses.filter((s) => s === 409)).toHaveLength(7);
    const active = await sql<{ n: number }>`
      select count(*)::int as n from rollouts where tenant_id = 'acme' and state not in ('completed', 'rolled_back')`.execute(
      db,
    );
    expect(active.rows[0]!.n).toBe(1);
  });
});
