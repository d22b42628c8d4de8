// The API security suite: every case is one bad input sent to the real cloud (PostgreSQL, NATS, Cedar
// policies, limits) and must be refused. It ends by printing how many bad inputs were tried and refused.
// Cross-tenant coverage is derived from the OpenAPI route registry: every route with a path parameter must
// have a probe here, or the coverage test fails and names it.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiOperations } from '../src/api/openapi.js';
import { WebhookStore } from '../src/integrations/store.js';
import { MediaRepository } from '../src/media/repository.js';
import { LegalHolds } from '../src/privacy/legal-holds.js';
import { ErasureStore } from '../src/privacy/erasure-store.js';
import { AUDIENCE, insertEvents, ISSUER, uuidV7, useApiCloud } from './api-fixtures.js';

const tally = { tried: 0, refused: 0, failed: [] as string[] };
async function refused(
  name: string,
  res: Response | Promise<Response>,
  statuses: number[],
): Promise<Response> {
  tally.tried++;
  const r = await res;
  if (statuses.includes(r.status)) tally.refused++;
  else tally.failed.push(`${name}: ${r.status}`);
  expect(statuses, `${name} answered ${r.status}`).toContain(r.status);
  if (r.status !== 404 || r.headers.get('content-type')?.includes('json'))
    expect(r.headers.get('content-type') ?? '').toMatch(/application\/problem\+json/);
  return r;
}

const A = 'acme';
const B = 'globex';
// The evidence export signing key (privacy.export.signingKeyFile), made for this run.
const exportKeyFile = join(mkdtempSync(join(tmpdir(), 'vigil-security-')), 'export-key.pem');
writeFileSync(
  exportKeyFile,
  generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
);

describe('API security suite', () => {
  const api = useApiCloud({ privacy: { export: { signingKeyFile: exportKeyFile } } });
  const now = (): number => Math.floor(Date.now() / 1000);
  const bEvent = uuidV7(Date.now() - 60_000);
  const bRollout = randomUUID();
  const bMedia = uuidV7(Date.now() - 60_000);
  let bWebhook = '';
  let bHold = '';
  let bErasure = '';
  let admin: string;
  let viewer: string;

  beforeAll(async () => {
    const reg = api.cloud().registry;
    await reg.registerDevice({ tenantId: A, siteId: 'hq', deviceId: 'gw-a' });
    await reg.registerDevice({ tenantId: B, siteId: 'plant', deviceId: 'gw-b' });
    const at = new Date(Date.now() - 60_000).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
    await insertEvents(api.cloud().db, [
      { event_id: bEvent, tenant_id: B, device_id: 'gw-b', camera_id: 'cam1', label: 'person', at },
    ]);
    // B's snapshot, as media ingest indexes one (the bytes are never reached: the row is not A's).
    await new MediaRepository(api.cloud().db).insert({
      tenantId: B,
      mediaId: bMedia,
      siteId: 'plant',
      deviceId: 'gw-b',
      cameraId: 'cam1',
      eventId: bEvent,
      contentType: 'image/jpeg',
      sha256: 'ab'.repeat(32),
      sizeBytes: 1,
      redacted: true,
      capturedAt: new Date(),
      storedAt: new Date(),
      storageKey: `${B}/x/${bMedia}.jpg`,
    });
    // B's rollout, as the rollout store writes one (running, so that pause/abort would apply to it).
    await api
      .cloud()
      .db.insertInto('rollouts')
      .values({
        id: bRollout,
        tenant_id: B,
        scope: 'tenant',
        scope_id: B,
        body: JSON.stringify({ cameras: [] }),
        spec: JSON.stringify({ canary: 1, waves: [100] }),
        state: 'running',
        created_by: 'admin@globex',
        created_at: new Date(),
        updated_at: new Date(),
      } as never)
      .execute();
    // B's legal hold on its device.
    bHold = await new LegalHolds(api.cloud().db, api.cloud().audit).place(
      B,
      { kind: 'device', deviceId: 'gw-b' },
      'globex litigation',
      { actor: 'admin@globex', actorKind: 'user' },
    );
    // B's webhook, with one recorded delivery attempt.
    const hooks = new WebhookStore(api.cloud().db);
    bWebhook = (
      await hooks.create({
        tenantId: B,
        url: 'https://hooks.globex.example/vigil',
        filter: {},
        description: undefined,
        createdBy: 'admin@globex',
      })
    ).id;
    await hooks.record({
      webhookId: bWebhook,
      tenantId: B,
      eventId: bEvent,
      attempt: 1,
      state: 'delivered',
      httpStatus: 200,
      error: null,
      durationMs: 5,
    });
    // B's erasure request (of an event id nobody has: it erases nothing).
    bErasure = (
      await new ErasureStore(api.cloud().db, api.cloud().audit, () => new Date()).create(
        B,
        { kind: 'event', event_ids: [randomUUID()] },
        'x',
        'admin@globex',
      )
    ).id;
    admin = await api.token(A, ['admin']);
    viewer = await api.token(A, ['viewer']);
  });
  afterAll(() => {
    console.log(
      `[security] bad inputs: ${tally.tried} tried, ${tally.refused} refused${tally.failed.length ? `; NOT refused: ${tally.failed.join(', ')}` : ''}`,
    );
  });

  const call = (path: string, token: string, init: RequestInit = {}): Promise<Response> =>
    api.get(path, token, {
      ...init,
      headers: { 'content-type': 'application/json', ...(init.headers ?? {}) },
    });

  describe('tokens', () => {
    const base = (claims: Record<string, unknown> = { tenant: A, roles: ['admin'] }) =>
      new SignJWT(claims).setIssuer(ISSUER).setAudience(AUDIENCE).setSubject('mallory').setIssuedAt();
    const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
    const attacker = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const attackerRsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const cases: Array<[string, () => Promise<string>]> = [
      [
        'alg none',
        () =>
          Promise.resolve(
            `${b64({ alg: 'none' })}.${b64({ tenant: A, roles: ['admin'], iss: ISSUER, aud: AUDIENCE, sub: 'm', exp: now() + 60 })}.`,
          ),
      ],
      [
        'HS256 keyed with the public JWK (key confusion)',
        () =>
          base()
            .setProtectedHeader({ alg: 'HS256', kid: api.key().kid })
            .setExpirationTime(now() + 60)
            .sign(Buffer.from(JSON.stringify(api.key().publicJwk))),
      ],
      [
        'RS256 with an attacker RSA key under our kid',
        () =>
          base()
            .setProtectedHeader({ alg: 'RS256', kid: api.key().kid })
            .setExpirationTime(now() + 60)
            .sign(attackerRsa.privateKey),
      ],
      [
        'ES256 with an attacker key embedded as a jwk header',
        async () =>
          base()
            .setProtectedHeader({ alg: 'ES256', jwk: await exportJWK(attacker.publicKey) })
            .setExpirationTime(now() + 60)
            .sign(attacker.privateKey),
      ],
      [
        'ES256 pointing jku at an attacker JWKS',
        () =>
          base()
            .setProtectedHeader({ alg: 'ES256', kid: 'x', jku: 'http://127.0.0.1:1/jwks.json' })
            .setExpirationTime(now() + 60)
            .sign(attacker.privateKey),
      ],
      [
        'kid injection (path traversal)',
        () =>
          base()
            .setProtectedHeader({ alg: 'ES256', kid: '../../../../dev/null' })
            .setExpirationTime(now() + 60)
            .sign(attacker.privateKey),
      ],
      [
        'kid injection (SQL-ish)',
        () =>
          base()
            .setProtectedHeader({ alg: 'ES256', kid: "x' OR '1'='1" })
            .setExpirationTime(now() + 60)
            .sign(attacker.privateKey),
      ],
      [
        'missing exp',
        () => base().setProtectedHeader({ alg: 'ES256', kid: api.key().kid }).sign(api.key().privateJwk),
      ],
      [
        'expired',
        () =>
          base()
            .setProtectedHeader({ alg: 'ES256', kid: api.key().kid })
            .setIssuedAt(now() - 7200)
            .setExpirationTime(now() - 3600)
            .sign(api.key().privateJwk),
      ],
      [
        'not yet valid (nbf in an hour)',
        () =>
          base()
            .setProtectedHeader({ alg: 'ES256', kid: api.key().kid })
            .setNotBefore(now() + 3600)
            .setExpirationTime(now() + 7200)
            .sign(api.key().privateJwk),
      ],
      [
        'wrong issuer',
        () =>
          base()
            .setIssuer('https://evil.example')
            .setProtectedHeader({ alg: 'ES256', kid: api.key().kid })
            .setExpirationTime(now() + 60)
            .sign(api.key().privateJwk),
      ],
      [
        'wrong audience',
        () =>
          base()
            .setAudience('another-api')
            .setProtectedHeader({ alg: 'ES256', kid: api.key().kid })
            .setExpirationTime(now() + 60)
            .sign(api.key().privateJwk),
      ],
    ];
    it.each(cases)('refuses a token with %s (401)', async (name, make) => {
      await refused(`token: ${name}`, call('/v1/devices', await make()), [401]);
    });
  });

  describe('tenancy: another tenant’s ids on every route that takes one', () => {
    // What tenant A's admin sends for each id-taking route: B's real ids. The answer must not differ from
    // that for an id that does not exist (404), and must never carry B's data.
    const probes: Record<string, { method: string; path: () => string; body?: unknown }[]> = {
      'get /events/:id': [{ method: 'GET', path: () => `/v1/events/${bEvent}` }],
      'get /events/:id/review': [{ method: 'GET', path: () => `/v1/events/${bEvent}/review` }],
      'post /events/:id/review': [{ method: 'POST', path: () => `/v1/events/${bEvent}/review`, body: {} }],
      'delete /events/:id/review': [{ method: 'DELETE', path: () => `/v1/events/${bEvent}/review` }],
      'get /devices/:id': [{ method: 'GET', path: () => '/v1/devices/gw-b' }],
      'post /devices/:id/revoke': [
        { method: 'POST', path: () => '/v1/devices/gw-b/revoke', body: { reason: 'x' } },
      ],
      'get /devices/:id/config': [{ method: 'GET', path: () => '/v1/devices/gw-b/config' }],
      'post /devices/:id/config/issue': [
        { method: 'POST', path: () => '/v1/devices/gw-b/config/issue', body: {} },
      ],
      'get /media/:id': [{ method: 'GET', path: () => `/v1/media/${bMedia}` }],
      'post /media/:id/erase': [
        { method: 'POST', path: () => `/v1/media/${bMedia}/erase`, body: { reason: 'x' } },
      ],
      'get /rollouts/:id': [{ method: 'GET', path: () => `/v1/rollouts/${bRollout}` }],
      'get /rollouts/:id/devices': [{ method: 'GET', path: () => `/v1/rollouts/${bRollout}/devices` }],
      'post /rollouts/:id/pause': [
        { method: 'POST', path: () => `/v1/rollouts/${bRollout}/pause`, body: {} },
      ],
      'post /rollouts/:id/resume': [
        { method: 'POST', path: () => `/v1/rollouts/${bRollout}/resume`, body: {} },
      ],
      'post /rollouts/:id/abort': [
        { method: 'POST', path: () => `/v1/rollouts/${bRollout}/abort`, body: {} },
      ],
      'post /webhooks/:id/disable': [
        { method: 'POST', path: () => `/v1/webhooks/${bWebhook}/disable`, body: { reason: 'x' } },
      ],
      'get /webhooks/:id/deliveries': [{ method: 'GET', path: () => `/v1/webhooks/${bWebhook}/deliveries` }],
      'get /holds/:id': [{ method: 'GET', path: () => `/v1/holds/${bHold}` }],
      'post /holds/:id/release': [
        { method: 'POST', path: () => `/v1/holds/${bHold}/release`, body: { reason: 'x' } },
      ],
      'post /holds/:id/approve': [{ method: 'POST', path: () => `/v1/holds/${bHold}/approve`, body: {} }],
      'get /erasures/:id': [{ method: 'GET', path: () => `/v1/erasures/${bErasure}` }],
      'get /configs/:scope/:scopeId': [
        { method: 'GET', path: () => '/v1/configs/device/gw-b' },
        { method: 'GET', path: () => '/v1/configs/site/plant' },
      ],
    };
    // Routes whose parameter names no tenant-owned object (content-addressed, shared blobs).
    const notTenantOwned = new Set([
      'put /models/:sha256',
      'put /configs/:scope/:scopeId',
      // One release repository for every tenant (the agent is not tenant data; publishing is one tenant's).
      'get /releases/repository/:dir/:file',
      'put /releases/bundles/:sha256',
      'put /releases/metadata/:role',
    ]);
    // Tenant-owned, probed with the other tenant's real ids by the API probe (security-api-probe.test.ts seeds
    // targets, rules, incidents and messages in both tenants and sends each tenant's ids as the other).
    const probedByApiProbe = new Set([
      'post /alerts/targets/:id/disable',
      'post /alerts/targets/:id/enable',
      'patch /alerts/rules/:id',
      'post /alerts/incidents/:id/cancel',
      'post /alerts/messages/:id/replay',
      'put /sites/:id/location',
    ]);

    it('has a probe for every route with a path parameter', () => {
      const idRoutes = apiOperations(500)
        .filter((o) => o.mount === '/v1' && o.path.includes(':'))
        .map((o) => `${o.method} ${o.path}`);
      const missing = idRoutes.filter(
        (r) => !(r in probes) && !notTenantOwned.has(r) && !probedByApiProbe.has(r),
      );
      expect(missing, 'add a cross-tenant probe for these routes').toEqual([]);
    });

    it.each(Object.entries(probes))(
      '%s: B’s ids look exactly like missing ones to A',
      async (route, list) => {
        for (const p of list) {
          const res = await refused(
            `cross-tenant ${route} ${p.path()}`,
            call(p.path(), admin, { method: p.method, ...(p.body ? { body: JSON.stringify(p.body) } : {}) }),
            [404],
          );
          // Same answer as for an id that exists nowhere (the echoed request path aside): existence not revealed.
          const nowhere = p
            .path()
            .replace('gw-b', 'gw-nowhere')
            .replace(bEvent, uuidV7(Date.now()))
            .replace('plant', 'nowhere')
            .replace(bRollout, randomUUID())
            .replace(bMedia, uuidV7(Date.now()))
            .replace(bWebhook, randomUUID())
            .replace(bHold, randomUUID())
            .replace(bErasure, randomUUID());
          const missing = await call(nowhere, admin, {
            method: p.method,
            ...(p.body ? { body: JSON.stringify(p.body) } : {}),
          });
          const strip = (v: Record<string, unknown>): Record<string, unknown> => {
            const { instance: _i, ...rest } = v;
            return rest;
          };
          expect(missing.status).toBe(404);
          expect(strip((await res.json()) as Record<string, unknown>)).toEqual(
            strip((await missing.json()) as Record<string, unknown>),
          );
        }
        // Nothing changed on B's side.
        const dev = await api
          .cloud()
          .db.selectFrom('devices')
          .select(['revoked_at'])
          .where('tenant_id', '=', B)
          .where('id', '=', 'gw-b')
          .executeTakeFirstOrThrow();
        expect(dev.revoked_at).toBeNull();
        const rollout = await api
          .cloud()
          .db.selectFrom('rollouts')
          .select('state')
          .where('id', '=', bRollout)
          .executeTakeFirstOrThrow();
        expect(rollout.state).toBe('running');
        const hold = await api
          .cloud()
          .db.selectFrom('legal_holds')
          .select('state')
          .where('id', '=', bHold)
          .executeTakeFirstOrThrow();
        expect(hold.state).toBe('active');
        const media = await api
          .cloud()
          .db.selectFrom('media')
          .select(['deleted_at'])
          .where('tenant_id', '=', B)
          .where('media_id', '=', bMedia)
          .executeTakeFirstOrThrow();
        expect(media.deleted_at).toBeNull();
        const hook = await api
          .cloud()
          .db.selectFrom('webhooks')
          .select(['enabled'])
          .where('id', '=', bWebhook)
          .executeTakeFirstOrThrow();
        expect(hook.enabled).toBe(true);
      },
    );

    it('an evidence export naming B’s ids is a 404 like a missing id', async () => {
      const at = Date.now();
      const bodies = [
        { scope: { kind: 'event', event_ids: [bEvent] }, reason: 'x' },
        { scope: { kind: 'track', device_id: 'gw-b', track_id: 't0' }, reason: 'x' },
        {
          scope: {
            kind: 'camera',
            device_id: 'gw-b',
            camera_id: 'cam1',
            from: new Date(at - 3_600_000).toISOString(),
            to: new Date(at).toISOString(),
          },
          reason: 'x',
        },
      ];
      for (const body of bodies)
        await refused(
          `cross-tenant export ${body.scope.kind}`,
          call('/v1/exports', admin, { method: 'POST', body: JSON.stringify(body) }),
          [404],
        );
    });

    it('an erasure naming B’s ids erases nothing of B’s', async () => {
      tally.tried++;
      const res = await call('/v1/erasures', admin, {
        method: 'POST',
        body: JSON.stringify({ scope: { kind: 'event', event_ids: [bEvent] }, reason: 'x' }),
      });
      expect(res.status).toBe(202);
      const { id } = (await res.json()) as { id: string };
      const deadline = Date.now() + 60_000;
      let view: { state: string; counts: { erased: number; held: number } } = {
        state: '',
        counts: { erased: -1, held: -1 },
      };
      while (view.state !== 'done' && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        view = (await (await call(`/v1/erasures/${id}`, admin)).json()) as typeof view;
      }
      expect(view).toMatchObject({ state: 'done', counts: { erased: 0, held: 0 } });
      const ev = await api
        .cloud()
        .db.selectFrom('events')
        .select(['erased_at'])
        .where('event_id', '=', bEvent)
        .executeTakeFirstOrThrow();
      expect(ev.erased_at).toBeNull();
      const media = await api
        .cloud()
        .db.selectFrom('media')
        .select(['deleted_at'])
        .where('media_id', '=', bMedia)
        .executeTakeFirstOrThrow();
      expect(media.deleted_at).toBeNull();
      tally.refused++;
    });

    it('lists never include another tenant’s rows', async () => {
      tally.tried++;
      const devices = (await (await call('/v1/devices', admin)).json()) as {
        items: Array<{ tenant_id: string }>;
      };
      const events = (await (await call(`/v1/events?device=gw-b`, admin)).json()) as { items: unknown[] };
      expect(devices.items.map((d) => d.tenant_id)).toEqual([A]);
      expect(events.items).toEqual([]);
      const hooks = (await (await call('/v1/webhooks', admin)).json()) as { items: Array<{ id: string }> };
      expect(hooks.items.map((h) => h.id)).not.toContain(bWebhook);
      tally.refused++;
    });
  });

  describe('mass assignment of protected fields', () => {
    const cases: Array<[string, string, unknown]> = [
      ['token for another tenant', '/v1/enrollment-tokens', { site_id: 'hq', tenant_id: B }],
      ['token with a chosen creator', '/v1/enrollment-tokens', { site_id: 'hq', created_by: 'ceo@acme' }],
      ['token already used', '/v1/enrollment-tokens', { site_id: 'hq', used_at: new Date().toISOString() }],
      ['token with a chosen id', '/v1/enrollment-tokens', { site_id: 'hq', id: randomUUID() }],
      ['revocation by someone else', '/v1/devices/gw-a/revoke', { reason: 'x', revoked_by: 'ceo@acme' }],
      [
        'webhook with a chosen secret',
        '/v1/webhooks',
        { url: 'https://hooks.example.com/', secret: 'known' },
      ],
      ['webhook for another tenant', '/v1/webhooks', { url: 'https://hooks.example.com/', tenant_id: B }],
      [
        'erasure for another tenant',
        '/v1/erasures',
        { scope: { kind: 'site', site_id: 'hq' }, reason: 'x', tenant_id: B },
      ],
      [
        'erasure already done',
        '/v1/erasures',
        { scope: { kind: 'site', site_id: 'hq' }, reason: 'x', state: 'done' },
      ],
    ];
    it.each(cases)('refuses %s (400, nothing written)', async (name, path, body) => {
      await refused(
        `mass assignment: ${name}`,
        call(path, admin, { method: 'POST', body: JSON.stringify(body) }),
        [400],
      );
    });
    it('wrote nothing for them', async () => {
      const tokens = await api.cloud().db.selectFrom('enrollment_tokens').select('id').execute();
      expect(tokens).toEqual([]);
      const dev = await api
        .cloud()
        .db.selectFrom('devices')
        .select('revoked_at')
        .where('id', '=', 'gw-a')
        .executeTakeFirstOrThrow();
      expect(dev.revoked_at).toBeNull();
      const hooks = await api.cloud().db.selectFrom('webhooks').select('tenant_id').execute();
      expect(hooks.map((h) => h.tenant_id)).toEqual([B]);
    });
  });

  describe('roles', () => {
    const adminRoutes: Array<[string, string, string, unknown]> = [
      ['revoke a device', 'POST', '/v1/devices/gw-a/revoke', { reason: 'x' }],
      ['mint an enrollment token', 'POST', '/v1/enrollment-tokens', { site_id: 'hq' }],
      ['write a config', 'PUT', '/v1/configs/site/hq', { cameras: [] }],
      ['issue a config', 'POST', '/v1/devices/gw-a/config/issue', {}],
      ['create a webhook', 'POST', '/v1/webhooks', { url: 'https://hooks.example.com/' }],
      ['request an erasure', 'POST', '/v1/erasures', { scope: { kind: 'site', site_id: 'hq' }, reason: 'x' }],
      [
        'export evidence',
        'POST',
        '/v1/exports',
        { scope: { kind: 'event', event_ids: [randomUUID()] }, reason: 'x' },
      ],
    ];
    it.each(adminRoutes)('a viewer may not %s (403)', async (name, method, path, body) => {
      await refused(`viewer: ${name}`, call(path, viewer, { method, body: JSON.stringify(body) }), [403]);
    });
  });

  describe('request limits', () => {
    it('refuses an oversized body (413)', async () => {
      const body = JSON.stringify({ site_id: 'hq', note: 'x'.repeat(300 * 1024) });
      await refused('oversized body', call('/v1/enrollment-tokens', admin, { method: 'POST', body }), [413]);
    });
    it('refuses deeply nested JSON (400)', async () => {
      const body = `${'{"a":'.repeat(200)}1${'}'.repeat(200)}`;
      await refused('deep JSON', call('/v1/enrollment-tokens', admin, { method: 'POST', body }), [400]);
    });
    it('refuses a huge page size (400)', async () => {
      await refused('huge page size', call('/v1/events?limit=1000000', admin), [400]);
      await refused('huge page size (devices)', call('/v1/devices?limit=100000', admin), [400]);
    });
    it('refuses a huge URL (414)', async () => {
      await refused('huge URL', call(`/v1/events?label=${'x'.repeat(9000)}`, admin), [414, 431]);
    });
    it('refuses malformed JSON (400)', async () => {
      await refused(
        'malformed JSON',
        call('/v1/enrollment-tokens', admin, { method: 'POST', body: '{"site_id":' }),
        [400],
      );
    });
  });

  it('refused every bad input it tried', () => {
    expect(tally.failed).toEqual([]);
    expect(tally.refused).toBe(tally.tried);
    expect(tally.tried).toBeGreaterThan(30);
  });
});
