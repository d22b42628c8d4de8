// Webhook delivery end to end: a device publishes DetectionEvents, ingest commits them with their jobs (the
// outbox), the relay enqueues the jobs on JOBS, the worker POSTs them signed to a receiver in this test (an outside party on 127.0.0.1, hence
// allowInsecureHttp + allowPrivateNetworks; the SSRF guard itself is unit-tested in webhooks-unit.test.ts).
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { DetectionEvent, subjectFor, TrackPhase } from '@vigil/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { contentDigest, verifyWebhookSignature } from '../src/integrations/signing.js';
import { useApiCloud, uuidV7 } from './api-fixtures.js';

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
  eventId: string;
}

const CIRCUIT_FAILURES = 3;
const MAX_ATTEMPTS = 4;

describe('webhook delivery (device -> ingest -> JOBS -> signed POST)', () => {
  const api = useApiCloud({
    integrations: {
      allowInsecureHttp: true,
      allowPrivateNetworks: true,
      timeoutMs: 2000,
      maxAttempts: MAX_ATTEMPTS,
      backoff: { initialMs: 100, maxMs: 300 },
      circuit: { failures: CIRCUIT_FAILURES, openSeconds: 1 },
    },
  });
  const received: Received[] = [];
  const flakyCalls = new Map<string, number>();
  let server: Server;
  let receiver: string;
  let nc: NatsConnection;
  let admin: string;
  const hooks: Record<string, { id: string; secret: string }> = {};

  /** What the receiver answers, by path. */
  const answer = (path: string, eventId: string): number => {
    if (path === '/flaky') {
      const n = (flakyCalls.get(eventId) ?? 0) + 1;
      flakyCalls.set(eventId, n);
      return n <= 2 ? 500 : 200;
    }
    if (path === '/down') return 500;
    if (path === '/gone') return 410;
    if (path === '/bad') return 400;
    return 200;
  };

  beforeAll(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        let eventId = '';
        try {
          eventId = (JSON.parse(body) as { event: { event_id: string } }).event.event_id;
        } catch {
          // recorded with no id; the assertions then fail
        }
        const path = req.url ?? '';
        received.push({ path, headers: req.headers, body, at: Date.now(), eventId });
        res.statusCode = answer(path, eventId);
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    receiver = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    nc = await api.connectNats();
    const reg = api.cloud().registry;
    await reg.registerDevice({ tenantId: 'acme', siteId: 'hq', deviceId: 'gw-wh' });
    await reg.registerDevice({ tenantId: 'globex', siteId: 'plant', deviceId: 'gw-gx' });
    admin = await api.token('acme', ['admin']);
    const create = async (tenant: string, name: string, filter: Record<string, string[]>): Promise<void> => {
      const res = await api.get(
        '/v1/webhooks',
        tenant === 'acme' ? admin : await api.token(tenant, ['admin']),
        {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ url: `${receiver}/${name}`, filter }),
        },
      );
      expect(res.status).toBe(201);
      hooks[name] = (await res.json()) as { id: string; secret: string };
    };
    await create('acme', 'ok', { labels: ['person'], cameras: ['door'] });
    await create('acme', 'flaky', { cameras: ['flaky'] });
    await create('acme', 'down', { cameras: ['down'] });
    await create('acme', 'gone', { cameras: ['gone'] });
    await create('acme', 'bad', { cameras: ['bad'] });
    await create('acme', 'disable', { cameras: ['dis'] });
    await create('globex', 'globex', {});
  });
  afterAll(async () => {
    await nc?.close();
    await new Promise<void>((resolve) => server?.close(() => resolve()));
  });

  /** Publishes one event as device gw-wh of acme (or gw-gx of globex); resolves with its id. */
  async function publish(camera: string, label = 'person', tenant = 'acme'): Promise<string> {
    const device = tenant === 'acme' ? 'gw-wh' : 'gw-gx';
    const id = uuidV7(Date.now());
    await jetstream(nc).publish(
      subjectFor(tenant, device, 'evt', camera),
      DetectionEvent.encode(
        DetectionEvent.fromPartial({
          eventId: id,
          tenantId: tenant,
          siteId: tenant === 'acme' ? 'hq' : 'plant',
          deviceId: device,
          cameraId: camera,
          occurredAt: new Date(),
          trackId: 't1',
          phase: TrackPhase.TRACK_PHASE_START,
          label,
          score: 0.9,
          box: { x: 0.1, y: 0.1, w: 0.2, h: 0.2 },
        }),
      ).finish(),
      { msgID: id },
    );
    return id;
  }
  const to = (path: string, eventId?: string): Received[] =>
    received.filter((r) => r.path === path && (eventId === undefined || r.eventId === eventId));
  const deliveries = async (hook: string) => {
    const res = await api.get(`/v1/webhooks/${hooks[hook]!.id}/deliveries`, admin);
    expect(res.status).toBe(200);
    return ((await res.json()) as { items: Array<Record<string, unknown>> }).items;
  };
  const metric = async (name: string): Promise<number> => {
    const text = await (await fetch(`${api.base()}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(name));
    return line === undefined ? 0 : Number(line.split(' ').pop());
  };

  it('delivers a committed event once, signed (RFC 9421) with a correct Content-Digest; filters and tenants respected', async () => {
    const sent = Date.now();
    const person = await publish('door', 'person');
    const car = await publish('door', 'car');
    await expect.poll(() => to('/ok', person).length, { timeout: 15_000 }).toBe(1);
    const got = to('/ok', person)[0]!;
    console.log(`[webhooks] publish -> receiver latency: ${got.at - sent} ms`);
    const seen = new Set<string>();
    const verdict = verifyWebhookSignature(
      { method: 'POST', targetUri: `${receiver}/ok`, headers: got.headers, body: got.body },
      hooks.ok!.secret,
      { maxAgeSeconds: 300, seenNonce: (n) => seen.has(n) || (seen.add(n), false) },
    );
    expect(verdict).toMatchObject({ ok: true, keyid: hooks.ok!.id });
    expect(got.headers['content-digest']).toBe(contentDigest(got.body));
    expect(got.headers['content-type']).toBe('application/json');
    expect(JSON.parse(got.body)).toMatchObject({
      type: 'vigil.event.committed',
      event: { event_id: person, tenant_id: 'acme', camera_id: 'door', label: 'person', site_id: 'hq' },
    });
    // Replaying the captured request is refused by the receiver's check.
    expect(
      verifyWebhookSignature(
        { method: 'POST', targetUri: `${receiver}/ok`, headers: got.headers, body: got.body },
        hooks.ok!.secret,
        { maxAgeSeconds: 300, seenNonce: (n) => seen.has(n) || (seen.add(n), false) },
      ),
    ).toEqual({ ok: false, reason: 'replayed nonce' });
    // Give duplicates and the filtered event time to show up (they must not).
    await new Promise((r) => setTimeout(r, 1500));
    expect(to('/ok', person)).toHaveLength(1);
    expect(to('/ok', car)).toHaveLength(0);
    expect(to('/globex')).toHaveLength(0);
    expect(await deliveries('ok')).toEqual([
      expect.objectContaining({
        event_id: person,
        attempt: 1,
        state: 'delivered',
        http_status: 200,
        error: null,
      }),
    ]);
    // globex's own event reaches globex's webhook only.
    const gx = await publish('line', 'person', 'globex');
    await expect.poll(() => to('/globex', gx).length, { timeout: 15_000 }).toBe(1);
    expect(to('/ok', gx)).toHaveLength(0);
  });

  it('retries 5xx with backoff: 500, 500, 200 is delivered on the third attempt, every attempt recorded', async () => {
    const id = await publish('flaky');
    await expect.poll(() => to('/flaky', id).length, { timeout: 15_000 }).toBe(3);
    await expect.poll(async () => (await deliveries('flaky')).length).toBe(3);
    const rows = await deliveries('flaky');
    expect(rows.map((r) => [r.attempt, r.state, r.http_status])).toEqual([
      [3, 'delivered', 200],
      [2, 'retrying', 500],
      [1, 'retrying', 500],
    ]);
    const times = to('/flaky', id).map((r) => r.at);
    // Equal jitter: at least half the step (100 ms, then 200 ms) between attempts.
    expect(times[1]! - times[0]!).toBeGreaterThanOrEqual(45);
    expect(times[2]! - times[1]!).toBeGreaterThanOrEqual(95);
    // Each attempt is signed anew (a fresh nonce).
    expect(new Set(to('/flaky', id).map((r) => r.headers['signature-input'])).size).toBe(3);
  });

  it('opens the circuit after K failures (later jobs short-circuited) and marks the delivery dead after maxAttempts', async () => {
    const shortBefore = await metric('vigil_cloud_webhook_short_circuited_total');
    const first = await publish('down');
    await expect.poll(() => to('/down', first).length, { timeout: 15_000 }).toBe(CIRCUIT_FAILURES);
    expect(await metric('vigil_cloud_webhook_open_circuits')).toBe(1);
    const second = await publish('down');
    await expect
      .poll(() => metric('vigil_cloud_webhook_short_circuited_total'), { timeout: 10_000 })
      .toBeGreaterThan(shortBefore);
    await expect
      .poll(async () => (await deliveries('down')).filter((r) => r.state === 'dead').length, {
        timeout: 30_000,
      })
      .toBe(2);
    const rows = await deliveries('down');
    for (const id of [first, second]) {
      const mine = rows.filter((r) => r.event_id === id);
      expect(mine.map((r) => r.attempt).sort()).toEqual([1, 2, 3, 4]);
      expect(mine.find((r) => r.attempt === MAX_ATTEMPTS)).toMatchObject({ state: 'dead', http_status: 500 });
      // The receiver was called exactly once per recorded attempt: never while the circuit was open.
      expect(to('/down', id)).toHaveLength(MAX_ATTEMPTS);
    }
    expect(await metric('vigil_cloud_webhook_deliveries_total{result="dead"}')).toBeGreaterThanOrEqual(2);
  });

  it('4xx other than 408/429 is permanent: 410 and 400 are dead at once', async () => {
    const gone = await publish('gone');
    const bad = await publish('bad');
    await expect.poll(async () => (await deliveries('gone')).length, { timeout: 15_000 }).toBe(1);
    await expect.poll(async () => (await deliveries('bad')).length, { timeout: 15_000 }).toBe(1);
    expect((await deliveries('gone'))[0]).toMatchObject({
      event_id: gone,
      attempt: 1,
      state: 'dead',
      http_status: 410,
      error: 'HTTP 410',
    });
    expect((await deliveries('bad'))[0]).toMatchObject({
      event_id: bad,
      attempt: 1,
      state: 'dead',
      http_status: 400,
    });
    await new Promise((r) => setTimeout(r, 1000));
    expect(to('/gone')).toHaveLength(1);
    expect(to('/bad')).toHaveLength(1);
  });

  it('a disabled webhook gets nothing more', async () => {
    const before = await publish('dis');
    await expect.poll(() => to('/disable', before).length, { timeout: 15_000 }).toBe(1);
    const res = await api.get(`/v1/webhooks/${hooks.disable!.id}/disable`, admin, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'receiver retired' }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ enabled: false, disabled_reason: 'receiver retired' });
    const after = await publish('dis');
    // The event is committed (readable through the API) but not delivered.
    await expect
      .poll(async () => (await api.get(`/v1/events/${after}`, admin)).status, { timeout: 15_000 })
      .toBe(200);
    await new Promise((r) => setTimeout(r, 1500));
    expect(to('/disable', after)).toHaveLength(0);
  });
});
