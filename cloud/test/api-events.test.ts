import { sql } from 'kysely';
import { beforeAll, describe, expect, it } from 'vitest';
import { EventReader } from '../src/api/event-store.js';
import {
  insertEvents,
  newestFirst,
  PROBLEM_JSON,
  useApiCloud,
  uuidV7,
  type SeedEvent,
} from './api-fixtures.js';

interface Page {
  items: Array<Record<string, unknown> & { event_id: string; tenant_id: string; occurred_at: string }>;
  next_cursor: string | null;
}

const START = Date.parse('2026-03-01T00:00:00Z');
const micro = (ms: number): string => new Date(ms).toISOString().replace('Z', '000Z');

// 48 events every 90 minutes over three UTC days (every 8th shares the exact time of the one before, so
// the event_id tie-break matters), plus two events 333 microseconds apart inside the same millisecond.
const acme: SeedEvent[] = [];
for (let i = 0; i < 48; i++) {
  const ms = START + (i % 8 === 1 ? i - 1 : i) * 90 * 60_000;
  acme.push({
    event_id: uuidV7(ms),
    tenant_id: 'acme',
    device_id: i % 2 === 0 ? 'gw-1' : 'gw-2',
    camera_id: `cam${(i % 3) + 1}`,
    label: i % 4 === 0 ? 'car' : 'person',
    at: micro(ms),
  });
}
for (const at of ['2026-03-02T12:34:56.123456Z', '2026-03-02T12:34:56.123789Z'])
  acme.push({
    event_id: uuidV7(Date.parse(at)),
    tenant_id: 'acme',
    device_id: 'gw-3',
    camera_id: 'cam9',
    label: 'bicycle',
    at,
  });
// Another tenant with the same device and camera ids.
const globex: SeedEvent[] = Array.from({ length: 5 }, (_, k) => ({
  event_id: uuidV7(START + k * 10 * 3_600_000),
  tenant_id: 'globex',
  device_id: 'gw-1',
  camera_id: 'cam1',
  label: 'person',
  at: micro(START + k * 10 * 3_600_000),
}));

const ids = (events: readonly { event_id: string }[]): string[] => events.map((e) => e.event_id);

describe('GET /v1/events', () => {
  const api = useApiCloud();
  let acmeToken: string;
  let globexToken: string;

  beforeAll(async () => {
    expect(new Set(acme.map((e) => e.at.slice(0, 10)))).toEqual(
      new Set(['2026-03-01', '2026-03-02', '2026-03-03']),
    );
    await insertEvents(api.cloud().db, [...acme, ...globex]);
    const snap = acme[3]!;
    await api
      .cloud()
      .db.updateTable('events')
      .set({ snapshot_media_id: 'media-1', snapshot_sha256: 'cd'.repeat(32), snapshot_bytes: 12345 })
      .where('event_id', '=', snap.event_id)
      .execute();
    acmeToken = await api.token('acme');
    globexToken = await api.token('globex', ['auditor']);
  });

  const list = async (query: string, token = acmeToken): Promise<Page> => {
    const res = await api.get(`/v1/events${query}`, token);
    expect(res.status, await res.clone().text()).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.headers.get('cache-control')).toBe('no-store');
    return (await res.json()) as Page;
  };

  it('lists the tenant’s events newest first, 50 by default', async () => {
    const page = await list('');
    expect(ids(page.items)).toEqual(ids(newestFirst(acme)));
    expect(page.next_cursor).toBeNull();
    expect(page.items.every((e) => e.tenant_id === 'acme')).toBe(true);
  });

  it.each([
    ['device=gw-1', (e: SeedEvent) => e.device_id === 'gw-1'],
    ['camera=cam2', (e: SeedEvent) => e.camera_id === 'cam2'],
    ['label=car', (e: SeedEvent) => e.label === 'car'],
    ['since=2026-03-02T00:00:00Z', (e: SeedEvent) => e.at >= '2026-03-02'],
    ['until=2026-03-02T00:00:00%2B00:00', (e: SeedEvent) => e.at < '2026-03-02'],
    [
      'since=2026-03-01T12:00:00Z&until=2026-03-02T09:00:00%2B01:00&device=gw-2&label=person',
      (e: SeedEvent) =>
        e.at >= '2026-03-01T12' && e.at < '2026-03-02T08' && e.device_id === 'gw-2' && e.label === 'person',
    ],
  ])('filters by %s', async (query, keep) => {
    const expected = newestFirst(acme.filter(keep));
    expect(expected.length).toBeGreaterThan(0);
    expect(expected.length).toBeLessThan(acme.length);
    const page = await list(`?${query}`);
    expect(ids(page.items)).toEqual(ids(expected));
  });

  it('walks every event exactly once with cursors (page size 7 over 50 events and 3 days)', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: Page = await list(`?limit=7${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.items.length).toBeLessThanOrEqual(7);
      seen.push(...ids(page.items));
      cursor = page.next_cursor;
      pages++;
    } while (cursor !== null && pages < 20);
    expect(pages).toBe(8);
    expect(seen).toEqual(ids(newestFirst(acme)));
    expect(new Set(seen).size).toBe(50);
  });

  it('keeps microsecond order across a page boundary inside one millisecond', async () => {
    const first = await list('?device=gw-3&limit=1');
    expect(first.items[0]?.occurred_at).toBe('2026-03-02T12:34:56.123Z');
    expect(first.items[0]?.event_id).toBe(acme[49]!.event_id);
    const second = await list(`?device=gw-3&limit=1&cursor=${first.next_cursor}`);
    expect(ids(second.items)).toEqual([acme[48]!.event_id]);
    expect(second.next_cursor).toBeNull();
  });

  it('refuses a limit above the maximum with a problem listing the error', async () => {
    const res = await api.get('/v1/events?limit=501', acmeToken);
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(PROBLEM_JSON);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({
      type: 'urn:vigil:problem:invalid-request',
      title: 'Invalid request',
      status: 400,
      instance: '/v1/events',
      errors: [{ path: 'limit', message: 'must be at most 500' }],
    });
    expect(typeof body.detail).toBe('string');
  });

  it.each([
    ['limit=0', 'limit'],
    ['limit=abc', 'limit'],
    ['limit=7&limit=8', 'limit'],
    ['since=yesterday', 'since'],
    ['since=2026-03-01T00:00:00', 'since'],
    ['since=2026-03-02T00:00:00Z&until=2026-03-01T00:00:00Z', 'until'],
    ['device=a.b', 'device'],
    ['colour=red', 'colour'],
    ['cursor=not-a-cursor', 'cursor'],
    [`cursor=${Buffer.from('{"occurred_at":"x","event_id":"y"}').toString('base64url')}`, 'cursor'],
    [`cursor=${Buffer.from('[1,2]').toString('base64url')}`, 'cursor'],
  ])('answers 400 for %s', async (query, path) => {
    const res = await api.get(`/v1/events?${query}`, acmeToken);
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(PROBLEM_JSON);
    const body = (await res.json()) as { errors: Array<{ path: string }> };
    expect(body.errors.map((e) => e.path)).toContain(path);
  });

  it('gets one event by id, in full', async () => {
    const e = acme[3]!;
    const res = await api.get(`/v1/events/${e.event_id.toUpperCase()}`, acmeToken);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toEqual({
      event_id: e.event_id,
      tenant_id: 'acme',
      site_id: 'hq',
      device_id: e.device_id,
      camera_id: e.camera_id,
      occurred_at: new Date(e.at.replace('000Z', 'Z')).toISOString(),
      received_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) as unknown,
      track_id: 't3',
      phase: 'end',
      label: e.label,
      score: 0.5,
      box: {
        x: expect.closeTo(0.1, 6) as unknown,
        y: expect.closeTo(0.2, 6) as unknown,
        w: expect.closeTo(0.3, 6) as unknown,
        h: expect.closeTo(0.4, 6) as unknown,
      },
      zones: [],
      trigger_zone: null,
      model: { name: 'yolox', sha256: 'ab'.repeat(32) },
      snapshot: { media_id: 'media-1', sha256: 'cd'.repeat(32), size_bytes: 12345 },
      priority: 2,
      attributes: { 'acme.seq': '3' },
    });
  });

  it('looks a UUIDv7 id up only in the partitions around its time', async () => {
    const db = api.cloud().db;
    for (const day of ['2026-01-15', '2026-02-27', '2026-03-05', '2026-06-01'])
      await sql`select vigil_ensure_event_partition(${day}::date)`.execute(db);
    const plan = async (id: string): Promise<string> =>
      (await new EventReader(db).getQuery('acme', id).explain<{ 'QUERY PLAN': string }>())
        .map((r) => r['QUERY PLAN'])
        .join('\n');
    // 2026-03-02T12:00Z +-25 h: March 1, 2 and 3.
    const v7 = await plan(uuidV7(Date.parse('2026-03-02T12:00:00Z')));
    expect([...new Set(v7.match(/events_\d{8}/g))].sort()).toEqual([
      'events_20260301',
      'events_20260302',
      'events_20260303',
    ]);
    // A UUID of another version carries no time: every partition is probed.
    const v4 = await plan('9b2f4d9e-3c1a-4e5b-8f6a-0a1b2c3d4e5f');
    expect(v4).toContain('events_20260115');
    expect(v4).toContain('events_20260601');
  });

  it('answers 400 for an id that is not a UUID and 404 for an unknown one', async () => {
    const bad = await api.get('/v1/events/42', acmeToken);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { errors: unknown[] }).errors).toEqual([
      { path: 'id', message: 'must be a UUID' },
    ]);
    const missing = await api.get(`/v1/events/${uuidV7(START)}`, acmeToken);
    expect(missing.status).toBe(404);
    expect(missing.headers.get('content-type')).toMatch(PROBLEM_JSON);
    // A non-v7 UUID is looked up without the time window.
    const v4 = await api.get('/v1/events/9b2f4d9e-3c1a-4e5b-8f6a-0a1b2c3d4e5f', acmeToken);
    expect(v4.status).toBe(404);
  });

  it('never shows another tenant’s events, nor that they exist', async () => {
    const page = await list('?limit=500', globexToken);
    expect(ids(page.items)).toEqual(ids(newestFirst(globex)));
    const filtered = await list('?device=gw-3', globexToken);
    expect(filtered.items).toEqual([]);

    const foreign = await api.get(`/v1/events/${acme[0]!.event_id}`, globexToken);
    const random = await api.get(`/v1/events/${uuidV7(Date.parse(acme[0]!.at))}`, globexToken);
    expect(foreign.status).toBe(404);
    expect(random.status).toBe(404);
    const strip = async (r: Response): Promise<unknown> => {
      const { instance: _i, ...rest } = (await r.json()) as Record<string, unknown>;
      return { rest, type: r.headers.get('content-type') };
    };
    expect(await strip(foreign)).toEqual(await strip(random));
    // The owner sees it.
    expect((await api.get(`/v1/events/${acme[0]!.event_id}`, acmeToken)).status).toBe(200);
  });

  it('answers 403 to a principal whose roles grant nothing', async () => {
    const token = await api.token('acme', ['installer']);
    const res = await api.get('/v1/events', token);
    expect(res.status).toBe(403);
    expect(res.headers.get('content-type')).toMatch(PROBLEM_JSON);
  });

  it('answers unknown routes with a 404 problem, other methods with 405', async () => {
    for (const [path, token] of [
      ['/v1/nope', acmeToken],
      ['/nope', undefined],
    ] as const) {
      const res = await api.get(path, token);
      expect(res.status).toBe(404);
      expect(res.headers.get('content-type')).toMatch(PROBLEM_JSON);
      expect(await res.json()).toMatchObject({
        status: 404,
        type: 'urn:vigil:problem:not-found',
        instance: path,
      });
    }
    const post = await api.get('/v1/events', acmeToken, { method: 'DELETE' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('bounds request bodies (413 problem) before any route sees them', async () => {
    const res = await api.get('/v1/events', acmeToken, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ pad: 'x'.repeat(300 * 1024) }),
    });
    expect(res.status).toBe(413);
    expect(res.headers.get('content-type')).toMatch(PROBLEM_JSON);
  });

  it('counts requests by route template', async () => {
    const text = await (await fetch(`${api.base()}/metrics`)).text();
    expect(text).toMatch(
      /vigil_cloud_api_requests_total\{method="GET",route="\/v1\/events",status="200"\} [1-9]/,
    );
    expect(text).toMatch(
      /vigil_cloud_api_requests_total\{method="GET",route="\/v1\/events\/:id",status="404"\} [1-9]/,
    );
  });
});
