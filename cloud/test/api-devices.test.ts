import { beforeAll, describe, expect, it } from 'vitest';
import { Heartbeat, DeviceHealth } from '@vigil/proto';
import { PROBLEM_JSON, useApiCloud } from './api-fixtures.js';

interface Device {
  id: string;
  tenant_id: string;
  site_id: string | null;
  status: 'online' | 'offline' | 'never';
  last_seen_at: string | null;
  agent_version: string | null;
  config_version: string | null;
  heartbeats: number;
  created_at: string;
}
interface Page {
  items: Device[];
  next_cursor: string | null;
}

// The injected cloud clock (fleet.offlineAfterSeconds is the default, 30). Tokens are checked against the
// real clock, which this one starts at.
let clock = Date.now();
const OFFLINE_AFTER_MS = 30_000;

// [tenant, device, site, last seen (ms before the clock) or null]
const SEED: ReadonlyArray<readonly [string, string, string, number | null]> = [
  ['acme', 'gw-on', 'hq', 0],
  ['acme', 'gw-off', 'hq', 5 * 60_000],
  ['acme', 'gw-new', 'hq', null],
  ['acme', 'gw-lab-1', 'lab', 10_000],
  ['acme', 'gw-lab-2', 'lab', null],
  ['acme', 'gw-lab-3', 'lab', 5 * 60_000],
  ['acme', 'gw-hb', 'hq', null],
  ['acme', 'gw-nats', 'hq', null],
  // Another tenant, one id shared with acme.
  ['globex', 'gw-on', 'hq', 0],
  ['globex', 'gx-off', 'hq', 5 * 60_000],
  ['globex', 'gx-new', 'hq', null],
];
const expectedStatus = (ago: number | null): Device['status'] =>
  ago === null ? 'never' : ago < OFFLINE_AFTER_MS ? 'online' : 'offline';
const acme = SEED.filter(([t]) => t === 'acme')
  .map(([, id, site, ago]) => ({ id, site, status: expectedStatus(ago) }))
  .sort((a, b) => (a.id < b.id ? -1 : 1));
const ids = (items: readonly { id: string }[]): string[] => items.map((d) => d.id);

describe('GET /v1/devices', () => {
  const api = useApiCloud({}, { now: () => new Date(clock) });
  let acmeToken: string;
  let globexToken: string;

  beforeAll(async () => {
    const registry = api.cloud().registry;
    for (const [tenantId, deviceId, siteId, ago] of SEED) {
      await registry.registerDevice({ tenantId, siteId, deviceId });
      if (ago !== null)
        expect(await registry.recordHeartbeat(tenantId, deviceId, new Date(clock - ago), '1.4.0', 7n)).toBe(
          true,
        );
    }
    acmeToken = await api.token('acme');
    globexToken = await api.token('globex', ['operator']);
  });

  const list = async (query: string, token = acmeToken): Promise<Page> => {
    const res = await api.get(`/v1/devices${query}`, token);
    expect(res.status, await res.clone().text()).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.headers.get('cache-control')).toBe('no-store');
    return (await res.json()) as Page;
  };
  const getDevice = async (id: string, token = acmeToken): Promise<Device> => {
    const res = await api.get(`/v1/devices/${id}`, token);
    expect(res.status, await res.clone().text()).toBe(200);
    return (await res.json()) as Device;
  };

  it('lists the tenant’s devices by id with their derived status', async () => {
    const page = await list('');
    expect(page.items.map((d) => ({ id: d.id, site: d.site_id, status: d.status }))).toEqual(acme);
    expect(page.next_cursor).toBeNull();
    expect(page.items.every((d) => d.tenant_id === 'acme')).toBe(true);
  });

  it.each([
    ['status=online', (d: (typeof acme)[number]) => d.status === 'online'],
    ['status=offline', (d: (typeof acme)[number]) => d.status === 'offline'],
    ['status=never', (d: (typeof acme)[number]) => d.status === 'never'],
    ['site=lab', (d: (typeof acme)[number]) => d.site === 'lab'],
    ['site=lab&status=offline', (d: (typeof acme)[number]) => d.site === 'lab' && d.status === 'offline'],
  ])('filters by %s', async (query, keep) => {
    const expected = acme.filter(keep);
    expect(expected.length).toBeGreaterThan(0);
    expect(expected.length).toBeLessThan(acme.length);
    const page = await list(`?${query}`);
    expect(ids(page.items)).toEqual(ids(expected));
  });

  it('gets one device by id, in full', async () => {
    const online = await getDevice('gw-on');
    expect(online).toEqual({
      id: 'gw-on',
      tenant_id: 'acme',
      site_id: 'hq',
      status: 'online',
      last_seen_at: new Date(clock).toISOString(),
      agent_version: '1.4.0',
      config_version: '7',
      heartbeats: 1,
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) as unknown,
      // Registered directly, not enrolled: no identity yet.
      enrolled_at: null,
      hardware_id: null,
      revoked_at: null,
      revoked_by: null,
      revoke_reason: null,
      // No updater status reported (Heartbeat.update).
      update: null,
    });
    expect(await getDevice('gw-new')).toMatchObject({
      status: 'never',
      last_seen_at: null,
      agent_version: null,
      config_version: null,
      heartbeats: 0,
    });
    expect((await getDevice('gw-off')).status).toBe('offline');
  });

  it('walks every device exactly once with cursors', async () => {
    const walk = async (query: string): Promise<{ seen: string[]; pages: number }> => {
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const page: Page = await list(`?limit=2${query}${cursor ? `&cursor=${cursor}` : ''}`);
        expect(page.items.length).toBeLessThanOrEqual(2);
        seen.push(...ids(page.items));
        cursor = page.next_cursor;
        pages++;
      } while (cursor !== null && pages < 10);
      return { seen, pages };
    };
    expect(await walk('')).toEqual({ seen: ids(acme), pages: 4 });
    const never = acme.filter((d) => d.status === 'never');
    expect(await walk('&status=never')).toEqual({ seen: ids(never), pages: 2 });
  });

  it.each([
    ['limit=0', 'limit'],
    ['limit=501', 'limit'],
    ['limit=abc', 'limit'],
    ['status=asleep', 'status'],
    ['status=online&status=never', 'status'],
    ['site=a.b', 'site'],
    ['colour=red', 'colour'],
    ['cursor=not-a-cursor', 'cursor'],
    [`cursor=${Buffer.from('{"id":"a.b"}').toString('base64url')}`, 'cursor'],
  ])('answers 400 for %s', async (query, path) => {
    const res = await api.get(`/v1/devices?${query}`, acmeToken);
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(PROBLEM_JSON);
    const body = (await res.json()) as { errors: Array<{ path: string }> };
    expect(body.errors.map((e) => e.path)).toContain(path);
  });

  it('answers 400 for a malformed id and 404 for an unknown one', async () => {
    const bad = await api.get('/v1/devices/a.b', acmeToken);
    expect(bad.status).toBe(400);
    const missing = await api.get('/v1/devices/gw-nope', acmeToken);
    expect(missing.status).toBe(404);
    expect(missing.headers.get('content-type')).toMatch(PROBLEM_JSON);
  });

  it('never shows another tenant’s devices, nor that they exist', async () => {
    const page = await list('', globexToken);
    expect(page.items.map((d) => [d.id, d.tenant_id, d.status])).toEqual([
      ['gw-on', 'globex', 'online'],
      ['gx-new', 'globex', 'never'],
      ['gx-off', 'globex', 'offline'],
    ]);
    expect((await list('?site=lab', globexToken)).items).toEqual([]);
    // The shared id is globex's own device.
    expect((await getDevice('gw-on', globexToken)).tenant_id).toBe('globex');

    const foreign = await api.get('/v1/devices/gw-off', globexToken);
    const random = await api.get('/v1/devices/gw-nope', globexToken);
    expect(foreign.status).toBe(404);
    expect(random.status).toBe(404);
    const strip = async (r: Response): Promise<unknown> => {
      const { instance: _i, ...rest } = (await r.json()) as Record<string, unknown>;
      return { rest, type: r.headers.get('content-type') };
    };
    expect(await strip(foreign)).toEqual(await strip(random));
    expect((await getDevice('gw-off')).tenant_id).toBe('acme');
  });

  it('lets installers read devices and refuses roles that grant nothing (403)', async () => {
    expect((await list('', await api.token('acme', ['installer']))).items.length).toBe(acme.length);
    const res = await api.get('/v1/devices', await api.token('acme', ['nobody']));
    expect(res.status).toBe(403);
    expect(res.headers.get('content-type')).toMatch(PROBLEM_JSON);
    const del = await api.get('/v1/devices/gw-on', acmeToken, { method: 'DELETE' });
    expect(del.status).toBe(405);
    expect(del.headers.get('allow')).toBe('GET, HEAD');
  });

  it('exports device counts by status over all tenants, recounted at most every 10 s', async () => {
    const gauge = async (): Promise<Record<string, number>> => {
      const text = await (await fetch(`${api.base()}/metrics`)).text();
      const out: Record<string, number> = {};
      for (const m of text.matchAll(/^vigil_cloud_devices\{status="(\w+)"\} (\d+)$/gm))
        out[m[1]!] = Number(m[2]);
      return out;
    };
    const counts = (): Record<string, number> => {
      const out: Record<string, number> = { online: 0, offline: 0, never: 0, revoked: 0 };
      for (const [, , , ago] of SEED) out[expectedStatus(ago)]! += 1;
      return out;
    };
    expect(await gauge()).toEqual(counts());
    expect(counts()).toEqual({ online: 3, offline: 3, never: 5, revoked: 0 });
    // A change inside the 10 s window is not counted yet; after it, it is.
    await api
      .cloud()
      .db.deleteFrom('devices')
      .where('tenant_id', '=', 'globex')
      .where('id', '=', 'gx-new')
      .execute();
    expect(await gauge()).toEqual(counts());
    const saved = clock;
    clock += 10_000;
    // Every seen device is 10 s older: gw-lab-1 (seen 10 s before) is 20 s old, still online.
    expect(await gauge()).toEqual({ online: 3, offline: 3, never: 4, revoked: 0 });
    clock = saved;
  });

  it('a heartbeat flips a device from never to online; offlineAfterSeconds later it is offline', async () => {
    expect((await getDevice('gw-hb')).status).toBe('never');
    const seenAt = clock;
    expect(await api.cloud().registry.recordHeartbeat('acme', 'gw-hb', new Date(seenAt), '2.0.0', 42n)).toBe(
      true,
    );
    expect(await getDevice('gw-hb')).toMatchObject({
      status: 'online',
      last_seen_at: new Date(seenAt).toISOString(),
      agent_version: '2.0.0',
      config_version: '42',
      heartbeats: 1,
    });
    expect(ids((await list('?status=online')).items)).toContain('gw-hb');

    clock = seenAt + OFFLINE_AFTER_MS - 1;
    expect((await getDevice('gw-hb')).status).toBe('online');
    clock = seenAt + OFFLINE_AFTER_MS;
    expect((await getDevice('gw-hb')).status).toBe('offline');
    expect(ids((await list('?status=offline')).items)).toContain('gw-hb');
    expect(ids((await list('?status=online')).items)).not.toContain('gw-hb');
  });

  it('a heartbeat published over NATS on the device’s subject is recorded with the cloud clock', async () => {
    expect((await getDevice('gw-nats')).status).toBe('never');
    clock = Date.now();
    const nc = await api.connectNats();
    try {
      const hb = Heartbeat.fromPartial({
        tenantId: 'acme',
        siteId: 'hq',
        deviceId: 'gw-nats',
        // The device's own clock is ignored: last_seen_at is the cloud's receive time.
        sentAt: new Date(clock - 3_600_000),
        agentVersion: '2.1.0',
        configVersion: 9n,
        health: DeviceHealth.DEVICE_HEALTH_OK,
      });
      nc.publish('vigil.v1.acme.gw-nats.hb', Heartbeat.encode(hb).finish());
      await nc.flush();
      await expect
        .poll(async () => (await getDevice('gw-nats')).status, { timeout: 15_000, interval: 50 })
        .toBe('online');
    } finally {
      await nc.close();
    }
    expect(await getDevice('gw-nats')).toMatchObject({
      last_seen_at: new Date(clock).toISOString(),
      agent_version: '2.1.0',
      config_version: '9',
      heartbeats: 1,
    });
    clock += OFFLINE_AFTER_MS;
    expect((await getDevice('gw-nats')).status).toBe('offline');
  });
});
