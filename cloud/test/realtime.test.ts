import { DetectionEvent, subjectFor, TrackPhase } from '@vigil/proto';
import { jetstream } from '@nats-io/jetstream';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { NewEvent } from '../src/events/store.js';
import { CommittedFeed } from '../src/realtime/feed.js';
import { matches } from '../src/realtime/hub.js';
import { useApiCloud, uuidV7 } from './api-fixtures.js';

interface Message {
  type: string;
  event?: { event_id: string; tenant_id: string; camera_id: string; label: string; site_id: string };
}

/** A websocket client that collects messages; `closed` resolves with the close code. */
function client(url: string, opts: WebSocket.ClientOptions & { protocols?: string[] } = {}) {
  const messages: Message[] = [];
  const ws = new WebSocket(url, opts.protocols ?? [], opts);
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.once('error', reject);
  });
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  ws.on('message', (data: Buffer) => messages.push(JSON.parse(data.toString()) as Message));
  return { ws, messages, opened, closed, events: () => messages.filter((m) => m.type === 'event') };
}

function row(tenant: string, camera: string, label = 'person', site = 'hq'): NewEvent {
  const at = Date.now();
  return {
    event_id: uuidV7(at),
    occurred_at: new Date(at),
    tenant_id: tenant,
    site_id: site,
    device_id: 'gw-1',
    camera_id: camera,
    track_id: 't1',
    phase: 'start',
    label,
    score: 0.9,
    box_x: 0.1,
    box_y: 0.2,
    box_w: 0.3,
    box_h: 0.4,
    zones: [],
    trigger_zone: null,
    model_name: 'yolox',
    model_sha256: null,
    snapshot_media_id: null,
    snapshot_sha256: null,
    snapshot_bytes: null,
    priority: 2,
    attributes: JSON.stringify({ a: 'b' }),
    payload: Buffer.alloc(1),
  };
}

describe('event stream: GET /v1/stream (websocket)', () => {
  const api = useApiCloud({
    realtime: { maxBufferedBytes: 16 * 1024, maxConnectionsPerTenant: 3 },
    // Tokens may live 60 days here, for the long-lived stream below.
    auth: { maxTokenLifetimeSeconds: 60 * 86_400 },
  });
  let feed: CommittedFeed;
  const wsUrl = (q = ''): string => `${api.base().replace('http', 'ws')}/v1/stream${q}`;
  const bearer = (t: string) => ({ headers: { authorization: `Bearer ${t}` } });

  beforeAll(async () => {
    feed = new CommittedFeed(await api.connectNats(), pino({ level: 'silent' }), new Registry());
  });
  afterAll(() => undefined);

  it('streams committed events of the caller’s tenant that match its filters', async () => {
    const token = await api.token('acme', ['viewer']);
    const all = client(wsUrl(), bearer(token));
    const lobby = client(wsUrl('?camera=lobby&label=person'), bearer(token));
    const other = client(wsUrl(), bearer(await api.token('globex', ['viewer'])));
    await Promise.all([all.opened, lobby.opened, other.opened]);
    await expect.poll(() => all.messages.length).toBe(1);
    expect(all.messages[0]).toMatchObject({ type: 'ready', tenant: 'acme' });

    const rows = [
      row('acme', 'lobby'),
      row('acme', 'yard'),
      row('acme', 'lobby', 'car'),
      row('globex', 'lobby'),
    ];
    feed.publish(rows);
    await expect.poll(() => all.events().length).toBe(3);
    expect(all.events().map((m) => m.event!.event_id)).toEqual(rows.slice(0, 3).map((r) => r.event_id));
    await expect.poll(() => lobby.events().length).toBe(1);
    expect(lobby.events()[0]!.event).toMatchObject({
      event_id: rows[0]!.event_id,
      camera_id: 'lobby',
      label: 'person',
    });
    await expect.poll(() => other.events().length).toBe(1);
    expect(other.events()[0]!.event!.tenant_id).toBe('globex');
    for (const c of [all, lobby, other]) c.ws.close();
  });

  it('streams events that ingest commits (device -> NATS -> PostgreSQL -> websocket)', async () => {
    await api.cloud().registry.registerDevice({ tenantId: 'acme', siteId: 'hq', deviceId: 'gw-rt' });
    const c = client(wsUrl('?device=gw-rt'), bearer(await api.token('acme', ['operator'])));
    await c.opened;
    const nc = await api.connectNats();
    const id = uuidV7(Date.now());
    await jetstream(nc).publish(
      subjectFor('acme', 'gw-rt', 'evt', 'door'),
      DetectionEvent.encode(
        DetectionEvent.fromPartial({
          eventId: id,
          tenantId: 'acme',
          siteId: 'hq',
          deviceId: 'gw-rt',
          cameraId: 'door',
          occurredAt: new Date(),
          trackId: 't9',
          phase: TrackPhase.TRACK_PHASE_START,
          label: 'person',
          score: 0.8,
          box: { x: 0.1, y: 0.1, w: 0.2, h: 0.2 },
        }),
      ).finish(),
      { msgID: id },
    );
    await expect.poll(() => c.events().length, { timeout: 15_000 }).toBe(1);
    expect(c.events()[0]!.event).toMatchObject({ event_id: id, camera_id: 'door', site_id: 'hq' });
    // it is committed: the same event through the REST API
    const rest = await api.get(`/v1/events/${id}`, await api.token('acme'));
    expect(rest.status).toBe(200);
    c.ws.close();
    await nc.close();
  });

  it('refuses before upgrading: no token, bad token, no events:read, site-scoped without its site, bad filter, other paths', async () => {
    const refusal = async (url: string, opts: WebSocket.ClientOptions = {}) =>
      client(url, opts).opened.then(
        () => 'opened',
        (e: Error) => e.message,
      );
    expect(await refusal(wsUrl())).toBe('HTTP 401');
    expect(await refusal(wsUrl(), bearer('not.a.jwt'))).toBe('HTTP 401');
    expect(await refusal(wsUrl(), bearer(await api.token('acme', ['installer'])))).toBe('HTTP 403');
    const scoped = await api.token('acme', ['operator'], { sites: ['hq'] });
    expect(await refusal(wsUrl(), bearer(scoped))).toBe('HTTP 403');
    expect(await refusal(wsUrl('?site=plant'), bearer(scoped))).toBe('HTTP 403');
    expect(await refusal(wsUrl('?site=hq'), bearer(scoped))).toBe('opened');
    expect(await refusal(wsUrl('?colour=red'), bearer(await api.token('acme')))).toBe('HTTP 400');
    expect(await refusal(wsUrl('?camera=a.b'), bearer(await api.token('acme')))).toBe('HTTP 400');
    expect(
      await refusal(`${api.base().replace('http', 'ws')}/v1/other`, bearer(await api.token('acme'))),
    ).toBe('HTTP 404');
  });

  it('accepts the token as a subprotocol (browsers) and answers vigil.v1', async () => {
    const token = await api.token('acme');
    const c = client(wsUrl(), { protocols: ['vigil.v1', `bearer.${token}`] });
    await c.opened;
    expect(c.ws.protocol).toBe('vigil.v1');
    c.ws.close();
  });

  it('limits open streams per tenant (429)', async () => {
    const token = await api.token('limited', ['viewer']);
    const open = [
      client(wsUrl(), bearer(token)),
      client(wsUrl(), bearer(token)),
      client(wsUrl(), bearer(token)),
    ];
    await Promise.all(open.map((c) => c.opened));
    await expect(client(wsUrl(), bearer(token)).opened).rejects.toThrow('HTTP 429');
    for (const c of open) c.ws.close();
  });

  it('closes a slow consumer (4008) instead of buffering without bound', async () => {
    const c = client(wsUrl(), bearer(await api.token('slow', ['viewer'])));
    await c.opened;
    // Stop reading: the server's send buffer fills once the socket buffers are full.
    (c.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const slowClosed = async (): Promise<boolean> =>
      /^vigil_cloud_realtime_closed_total\{reason="slow_consumer"\} [1-9]/m.test(
        await (await fetch(`${api.base()}/metrics`)).text(),
      );
    // ~200 KiB per feed message until the server gives up on the client (kernel buffers absorb a few MiB).
    for (let i = 0; i < 200 && !(await slowClosed()); i++) {
      feed.publish(
        Array.from({ length: 25 }, () => {
          const r = row('slow', 'lobby');
          r.attributes = JSON.stringify({ pad: 'x'.repeat(8000) });
          return r;
        }),
      );
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(await slowClosed()).toBe(true);
    (c.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    expect(await c.closed).toBe(4008);
  });

  it('closes the stream when the token expires (4001)', async () => {
    const token = await api.token('acme', ['viewer'], { ttlSeconds: 2 });
    const { exp } = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { exp: number };
    const c = client(wsUrl(), bearer(token));
    await c.opened;
    expect(await c.closed).toBe(4001);
    // Closed by the expiry timer: not before exp (seconds, so up to 1 s early), and not "never" (the bound only
    // leaves room for a loaded machine; a missing timer would leave the stream open for good).
    const late = Date.now() - exp * 1000;
    expect(late).toBeGreaterThanOrEqual(-1_000);
    expect(late).toBeLessThan(10_000);
  });

  it('keeps a stream open whose token expires in 30 days (no timer overflow: 2^31-1 ms is 24.8 days)', async () => {
    // Issue 12, finding 8: setTimeout with more than 2^31-1 ms fires at once, which closed the stream with 4001.
    const c = client(wsUrl(), bearer(await api.token('acme', ['viewer'], { ttlSeconds: 30 * 86_400 })));
    let code: number | undefined;
    void c.closed.then((x) => (code = x));
    await c.opened;
    await expect.poll(() => c.messages.length).toBe(1);
    // An event published after it opened arrives: the stream is still open, and no close code came.
    const r = row('acme', 'long-lived');
    feed.publish([r]);
    await expect.poll(() => c.events().length).toBe(1);
    expect(c.events()[0]!.event!.event_id).toBe(r.event_id);
    expect(code).toBeUndefined();
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
    c.ws.close();
  });

  it('matches: every filter narrows', () => {
    const e = { site_id: 's', device_id: 'd', camera_id: 'c', label: 'l' } as never;
    expect(matches({}, e)).toBe(true);
    expect(matches({ site: 's', device: 'd', camera: 'c', label: 'l' }, e)).toBe(true);
    expect(matches({ camera: 'x' }, e)).toBe(false);
    expect(matches({ label: 'x' }, e)).toBe(false);
  });
});
