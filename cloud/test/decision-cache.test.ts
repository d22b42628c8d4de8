import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import type { Action, DataClass, Resource } from '../src/auth/authorize.js';
import { createCedarAuthorizer } from '../src/auth/cedar.js';
import type { Principal } from '../src/auth/principal.js';

/*
 * The Cedar decision cache keys a decision by what the policies can see (auth/decision-key.ts): a by-id read
 * must hit whatever the id, and two requests that differ in anything a policy reads must never share a
 * decision. The oracle is the same authorizer without a cache.
 */

const silent = pino({ level: 'silent' });
const POLICIES = resolve(import.meta.dirname, '../policies');
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** The real policies plus one more file. */
function withExtraPolicy(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-cache-policies-'));
  dirs.push(dir);
  cpSync(POLICIES, dir, { recursive: true });
  writeFileSync(join(dir, 'extra.cedar'), text);
  return dir;
}

const user = (
  roles: string[],
  extra: { tenant?: string; sites?: string[]; subject?: string } = {},
): Principal => ({
  subject: extra.subject ?? `u-${roles.join('+')}`,
  tenant: extra.tenant ?? 'acme',
  roles,
  ...(extra.sites ? { sites: extra.sites } : {}),
});

const event = (id: string, loaded?: { site: string; camera?: string; dataClass?: DataClass }): Resource =>
  loaded === undefined
    ? { type: 'event', tenant: 'acme', id }
    : { type: 'event', tenant: 'acme', id, camera: 'cam-1', dataClass: 'metadata', ...loaded };

describe('Cedar decision cache key', () => {
  it('the real policies name no resource entity and read tenant, roles, sites, site and dataClass', () => {
    const authz = createCedarAuthorizer({ log: silent });
    // Only actions are named (action scopes): never a resource type, so ids stay out of the key.
    expect([...authz.plan.literalTypes]).toEqual(['Vigil::Action']);
    expect([...authz.plan.attributes].sort()).toEqual(['dataClass', 'roles', 'site', 'sites', 'tenant']);
  });

  it('GET /v1/events/{id} over many ids: two engine calls in all, every other decision a hit', async () => {
    const metrics = new Registry();
    const authz = createCedarAuthorizer({ log: silent, metrics });
    const p = user(['operator']);
    for (let i = 0; i < 50; i++) {
      const id = `e-${i}`;
      expect((await authz.authorize(p, 'events:read', event(id))).allowed).toBe(true);
      expect((await authz.authorize(p, 'events:read', event(id, { site: 'hq' }))).allowed).toBe(true);
    }
    expect(authz.cacheStats()).toEqual({ hits: 98, misses: 2, size: 2 });
    const text = await metrics.getSingleMetricAsString('vigil_cloud_authz_cache_total');
    expect(text).toContain('result="hit"} 98');
    expect(text).toContain('result="miss"} 2');
  });

  // [principal, action, allowed resource (cached first), resource that differs in what matters]
  const pairs: Array<[string, Principal, Action, Resource, Resource]> = [
    [
      'site',
      user(['operator'], { sites: ['hq'] }),
      'events:read',
      event('a', { site: 'hq' }),
      event('b', { site: 'lab' }),
    ],
    [
      'site not loaded yet vs loaded',
      user(['operator'], { sites: ['hq'] }),
      'events:read',
      event('a'),
      event('b', { site: 'lab' }),
    ],
    [
      'data class',
      user(['operator']),
      'events:read',
      event('a', { site: 'hq' }),
      event('b', { site: 'hq', dataClass: 'personal' }),
    ],
    [
      'data class of media',
      user(['operator']),
      'media:read',
      { type: 'media', tenant: 'acme', id: 'm1', site: 'hq', camera: 'c', dataClass: 'media' },
      { type: 'media', tenant: 'acme', id: 'm2', site: 'hq', camera: 'c', dataClass: 'personal' },
    ],
    ['tenant', user(['viewer']), 'events:read', event('a'), { type: 'event', tenant: 'globex', id: 'b' }],
    [
      'device at no site',
      user(['operator'], { sites: ['hq'] }),
      'devices:read',
      { type: 'device', tenant: 'acme', id: 'gw1', site: 'hq' },
      { type: 'device', tenant: 'acme', id: 'gw2', site: null },
    ],
    [
      'collection vs its site',
      user(['installer'], { sites: ['hq'] }),
      'devices:read',
      { type: 'devices', tenant: 'acme', site: 'hq' },
      { type: 'devices', tenant: 'acme' },
    ],
  ];

  it.each(pairs)(
    'never shares a decision across resources that differ in %s',
    async (_, p, action, first, second) => {
      const cached = createCedarAuthorizer({ log: silent });
      const uncached = createCedarAuthorizer({ log: silent, cacheSize: 0 });
      expect((await cached.authorize(p, action, first)).allowed).toBe(true);
      const d = await cached.authorize(p, action, second);
      expect(d.allowed).toBe(false);
      expect(d).toEqual(await uncached.authorize(p, action, second));
      expect(cached.cacheStats().hits).toBe(0);
    },
  );

  it('keys the whole principal: same subject, other roles, sites or tenant', async () => {
    const authz = createCedarAuthorizer({ log: silent });
    const e = event('x', { site: 'hq' });
    expect((await authz.authorize(user(['viewer'], { subject: 's' }), 'events:read', e)).allowed).toBe(true);
    expect((await authz.authorize(user(['installer'], { subject: 's' }), 'events:read', e)).allowed).toBe(
      false,
    );
    expect(
      (await authz.authorize(user(['viewer'], { subject: 's', sites: ['lab'] }), 'events:read', e)).allowed,
    ).toBe(false);
    expect(
      (await authz.authorize(user(['viewer'], { subject: 's', tenant: 'globex' }), 'events:read', e)).allowed,
    ).toBe(false);
    expect(authz.cacheStats().hits).toBe(0);
  });

  it('a policy that names an entity puts ids of that type back into the key', async () => {
    const dir = withExtraPolicy(
      '@id("blocked-event")\nforbid (principal, action, resource == Vigil::Event::"acme/blocked");\n',
    );
    const authz = createCedarAuthorizer({ log: silent, policiesDir: dir });
    expect([...authz.plan.literalTypes].sort()).toEqual(['Vigil::Action', 'Vigil::Event']);
    const p = user(['operator']);
    expect((await authz.authorize(p, 'events:read', event('fine', { site: 'hq' }))).allowed).toBe(true);
    const d = await authz.authorize(p, 'events:read', event('blocked', { site: 'hq' }));
    expect(d).toEqual({ allowed: false, reason: 'forbid: blocked-event' });
  });

  it('a policy that reads an attribute puts it into the key (camera)', async () => {
    const dir = withExtraPolicy(
      '@id("no-lobby")\nforbid (principal, action, resource)\nwhen { resource has camera && resource.camera == "lobby" };\n',
    );
    const authz = createCedarAuthorizer({ log: silent, policiesDir: dir });
    const p = user(['operator']);
    expect(
      (await authz.authorize(p, 'events:read', event('a', { site: 'hq', camera: 'door' }))).allowed,
    ).toBe(true);
    const d = await authz.authorize(p, 'events:read', event('b', { site: 'hq', camera: 'lobby' }));
    expect(d).toEqual({ allowed: false, reason: 'forbid: no-lobby' });
  });

  it('answers 3,000 random requests exactly as the uncached engine', async () => {
    const cached = createCedarAuthorizer({ log: silent, cacheSize: 200 });
    const uncached = createCedarAuthorizer({ log: silent, cacheSize: 0 });
    let seed = 42;
    const pick = <T>(xs: readonly T[]): T => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return xs[seed % xs.length]!;
    };
    const roleSets = [
      ['admin'],
      ['operator'],
      ['viewer'],
      ['auditor'],
      ['installer'],
      ['viewer', 'installer'],
      [],
    ];
    const sites = [undefined, ['hq'], ['lab', 'hq'], []];
    const siteOf = [undefined, 'hq', 'lab'];
    const classes: Array<DataClass | undefined> = [undefined, 'metadata', 'media', 'personal'];
    for (let i = 0; i < 3000; i++) {
      const s = pick(sites);
      const p = user(pick(roleSets), {
        tenant: pick(['acme', 'globex']),
        subject: pick(['a', 'b']),
        ...(s ? { sites: s } : {}),
      });
      const tenant = pick(['acme', 'globex']);
      const id = `id-${pick([1, 2, 3, 4, 5, 6, 7])}`;
      const site = pick(siteOf);
      const kind = pick(['event', 'media', 'device', 'events'] as const);
      const r: Resource =
        kind === 'event' || kind === 'media'
          ? {
              type: kind,
              tenant,
              id,
              site,
              camera: site === undefined ? undefined : pick(['c1', 'c2']),
              dataClass: site === undefined ? undefined : pick(classes),
            }
          : kind === 'device'
            ? { type: 'device', tenant, id, site: pick([undefined, null, 'hq', 'lab']) }
            : { type: 'events', tenant, site };
      const action: Action =
        kind === 'media'
          ? pick(['media:read', 'media:erase'])
          : kind === 'device'
            ? pick(['devices:read', 'devices:revoke'])
            : 'events:read';
      expect(await cached.authorize(p, action, r), JSON.stringify([p, action, r])).toEqual(
        await uncached.authorize(p, action, r),
      );
    }
    expect(cached.cacheStats().hits).toBeGreaterThan(1000);
  });
});
