// The API with Cedar as its decision point (the default): site-scoped users (a `sites` claim) on every route
// that has a site, against the real cloud (PostgreSQL, NATS). The policies themselves: policies.test.ts.
import { sql } from 'kysely';
import { beforeAll, describe, expect, it } from 'vitest';
import { insertEvents, PROBLEM_JSON, useApiCloud, uuidV7, type SeedEvent } from './api-fixtures.js';

interface Listed<T> {
  items: T[];
}

describe('API authorization with Cedar: site scoping', () => {
  const api = useApiCloud();
  const base = Date.UTC(2026, 0, 15, 10);
  const at = (i: number): string => new Date(base + i * 1000).toISOString().replace('Z', '000Z');
  const seed: SeedEvent[] = [0, 1, 2, 3].map((i) => ({
    event_id: uuidV7(base + i * 1000),
    tenant_id: 'acme',
    device_id: i < 2 ? 'gw-hq' : 'gw-lab',
    camera_id: 'cam1',
    label: 'person',
    at: at(i),
  }));
  const hqEvents = seed.filter((e) => e.device_id === 'gw-hq').map((e) => e.event_id);
  const labEvents = seed.filter((e) => e.device_id === 'gw-lab').map((e) => e.event_id);
  let hqViewer: string;
  let hqAdmin: string;

  beforeAll(async () => {
    const { db, registry } = api.cloud();
    await registry.registerDevice({ tenantId: 'acme', siteId: 'hq', deviceId: 'gw-hq' });
    await registry.registerDevice({ tenantId: 'acme', siteId: 'lab', deviceId: 'gw-lab' });
    await registry.registerDevice({ tenantId: 'acme', siteId: 'lab', deviceId: 'gw-lab-2' });
    await insertEvents(db, seed);
    await sql`update events set site_id = 'lab' where device_id = 'gw-lab'`.execute(db);
    hqViewer = await api.token('acme', ['viewer'], { sites: ['hq'] });
    hqAdmin = await api.token('acme', ['admin'], { sites: ['hq'] });
  });

  const json = async <T>(path: string, token: string): Promise<T> => {
    const res = await api.get(path, token);
    expect(res.status, await res.clone().text()).toBe(200);
    return (await res.json()) as T;
  };

  it('lists events only with ?site= naming one of the user’s sites', async () => {
    const all = await api.get('/v1/events', hqViewer);
    expect(all.status).toBe(403);
    expect(all.headers.get('content-type')).toMatch(PROBLEM_JSON);
    expect((await api.get('/v1/events?site=lab', hqViewer)).status).toBe(403);
    const hq = await json<Listed<{ event_id: string; site_id: string }>>('/v1/events?site=hq', hqViewer);
    expect(hq.items.map((e) => e.event_id).sort()).toEqual([...hqEvents].sort());
    // The site filter works for everyone; an unscoped user may still list the whole tenant.
    const viewer = await api.token('acme', ['viewer']);
    const lab = await json<Listed<{ event_id: string }>>('/v1/events?site=lab', viewer);
    expect(lab.items.map((e) => e.event_id).sort()).toEqual([...labEvents].sort());
    expect((await json<Listed<unknown>>('/v1/events', viewer)).items).toHaveLength(4);
  });

  it('answers another site’s event exactly like a missing one (404)', async () => {
    expect((await api.get(`/v1/events/${hqEvents[0]!}`, hqViewer)).status).toBe(200);
    const other = await api.get(`/v1/events/${labEvents[0]!}`, hqViewer);
    const missing = await api.get(`/v1/events/${uuidV7(base)}`, hqViewer);
    expect(other.status).toBe(404);
    expect(missing.status).toBe(404);
    const strip = async (r: Response): Promise<unknown> => {
      const { instance: _, ...rest } = (await r.json()) as Record<string, unknown>;
      return rest;
    };
    expect(await strip(other)).toEqual(await strip(missing));
  });

  it('lists and reads devices of the user’s sites only', async () => {
    expect((await api.get('/v1/devices', hqViewer)).status).toBe(403);
    expect((await api.get('/v1/devices?site=lab', hqViewer)).status).toBe(403);
    const hq = await json<Listed<{ id: string }>>('/v1/devices?site=hq', hqViewer);
    expect(hq.items.map((d) => d.id)).toEqual(['gw-hq']);
    expect((await api.get('/v1/devices/gw-hq', hqViewer)).status).toBe(200);
    expect((await api.get('/v1/devices/gw-lab', hqViewer)).status).toBe(404);
    expect((await api.get('/v1/devices/gw-nowhere', hqViewer)).status).toBe(404);
    // Two sites: both.
    const both = await api.token('acme', ['operator'], { sites: ['hq', 'lab'] });
    expect((await api.get('/v1/devices/gw-lab', both)).status).toBe(200);
  });

  it('lets a site-scoped admin revoke devices of its sites only; the refusal is audited', async () => {
    const revoke = (id: string, token: string): Promise<Response> =>
      api.get(`/v1/devices/${id}/revoke`, token, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ reason: 'test' }),
      });
    expect((await revoke('gw-lab-2', hqAdmin)).status).toBe(404);
    const { db } = api.cloud();
    const lab = await db
      .selectFrom('devices')
      .select('revoked_at')
      .where('id', '=', 'gw-lab-2')
      .executeTakeFirst();
    expect(lab?.revoked_at).toBeNull();
    const denied = await db
      .selectFrom('audit_log')
      .select(['action', 'resource', 'outcome', 'detail'])
      .where('outcome', '=', 'denied')
      .where('resource', 'like', '%gw-lab-2%')
      .execute();
    expect(denied).toHaveLength(1);
    expect(denied[0]).toMatchObject({ action: 'device.revoke', outcome: 'denied' });
    expect(denied[0]?.detail).toMatchObject({ reason: 'forbid: site-scope' });
    // A missing device is the same 404.
    expect((await revoke('gw-nowhere', hqAdmin)).status).toBe(404);
    // Its own site: revoked.
    const ok = await revoke('gw-hq', hqAdmin);
    expect(ok.status, await ok.clone().text()).toBe(200);
    expect(await ok.json()).toMatchObject({ device_id: 'gw-hq', result: 'revoked' });
    // A scoped operator has no revoke at all: 403 before anything is looked up.
    const operator = await api.token('acme', ['operator'], { sites: ['lab'] });
    expect((await revoke('gw-lab', operator)).status).toBe(403);
  });

  it('lets a site-scoped installer mint tokens for its sites, not list the tenant’s', async () => {
    const installer = await api.token('acme', ['installer'], { sites: ['hq'] });
    const post = (body: unknown): Promise<Response> =>
      api.get('/v1/enrollment-tokens', installer, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const created = await post({ site_id: 'hq' });
    expect(created.status, await created.clone().text()).toBe(201);
    expect((await post({ site_id: 'lab' })).status).toBe(403);
    expect((await post({ site_id: 'not a site' })).status).toBe(403);
    expect((await api.get('/v1/enrollment-tokens', installer)).status).toBe(403);
  });

  it('refuses a sites claim that is not a list of site ids (401)', async () => {
    const bad = await api.token('acme', ['viewer'], { sites: ['no spaces'] });
    expect((await api.get('/v1/events?site=hq', bad)).status).toBe(401);
  });

  it('decided everything with Cedar, without a single engine error', async () => {
    const text = await (await fetch(`${api.base()}/metrics`)).text();
    expect(text).not.toMatch(/vigil_cloud_authz_errors_total\{engine="cedar"\} [1-9]/);
  });
});
