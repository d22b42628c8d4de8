// Issue 12, finding 4: authenticate, authorize, then idempotency replay. A stored response is bound to the whole
// principal (tenant, subject, roles, sites), and no route of the registry replays before the caller is
// authorized: a new POST/PATCH route inherits the order from the router (api/router.ts), not from its handler.
import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { apiOperations, isIdempotent } from '../src/api/openapi.js';
import { createRoleAuthorizer, FleetRegistry, type Authorizer } from '../src/index.js';
import { useApiCloud } from './api-fixtures.js';

describe('idempotency replay comes after authorization (issue 12, finding 4)', () => {
  // The role table, plus a switch that makes the decision point deny everyone (a policy change).
  const base = createRoleAuthorizer();
  let denyAll = false;
  const authorizer: Authorizer = {
    authorize: (principal, action, resource) =>
      denyAll
        ? Promise.resolve({ allowed: false, reason: 'test: policy withdrawn' })
        : base.authorize(principal, action, resource),
  };
  const api = useApiCloud({}, { authorizer });
  let admin: string;

  beforeAll(async () => {
    admin = await api.token('acme', ['admin']);
    await new FleetRegistry(api.cloud().db).registerDevice({
      tenantId: 'acme',
      siteId: 'hq',
      deviceId: 'gw-idem-authz',
    });
  });

  const post = (
    path: string,
    body: unknown,
    key: string,
    token: string,
    method = 'POST',
  ): Promise<Response> =>
    api.get(path, token, {
      method,
      headers: { 'content-type': 'application/json', 'idempotency-key': key },
      body: JSON.stringify(body),
    });

  it("a viewer token with an admin's subject gets 403, never the admin's stored revocation", async () => {
    const key = randomUUID();
    const body = { reason: 'stolen' };
    const first = await post('/v1/devices/gw-idem-authz/revoke', body, key, admin);
    expect(first.status).toBe(200);
    // Same tenant, same `sub` (user@acme), other roles.
    const viewer = await api.token('acme', ['viewer']);
    const res = await post('/v1/devices/gw-idem-authz/revoke', body, key, viewer);
    expect(res.headers.get('idempotent-replayed')).toBeNull();
    expect(res.status).toBe(403);
    expect(await res.text()).not.toMatch(/"revoked"/);
    // The admin still gets the stored response.
    const again = await post('/v1/devices/gw-idem-authz/revoke', body, key, admin);
    expect(again.status).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
  });

  it('binds the stored response to the roles and sites too, not only the subject', async () => {
    const key = randomUUID();
    const body = { reason: 'lost' };
    expect((await post('/v1/devices/gw-idem-authz/revoke', body, key, admin)).status).toBe(200);
    // An admin token of the same subject with another role set is another principal: its request runs
    // (and finds the device already revoked) instead of replaying.
    const both = await api.token('acme', ['admin', 'operator']);
    const res = await post('/v1/devices/gw-idem-authz/revoke', body, key, both);
    expect(res.status).toBe(200);
    expect(res.headers.get('idempotent-replayed')).toBeNull();
    expect(await res.json()).toMatchObject({ result: 'already_revoked' });
  });

  // Every POST/PATCH of the registry: a response stored for an admin is not replayed once the decision point
  // denies the same admin. Path parameters get a value their schema accepts (else idempotency is skipped),
  // naming nothing that exists: the stored first answer is a 400 or a 404.
  const samples = ['gw-none', randomUUID(), 'ab'.repeat(32), 'tenant'];
  const ops = apiOperations(500).filter((op) => op.mount === '/v1' && isIdempotent(op));
  it.each(ops.map((op) => [`${op.method.toUpperCase()} ${op.path}`, op] as const))(
    '%s authorizes before it replays',
    async (_name, op) => {
      const names = [...op.path.matchAll(/:(\w+)/g)].map((m) => m[1]!);
      const params: Record<string, string> = {};
      for (const n of names)
        params[n] =
          samples.find((v) => op.params?.safeParse({ ...params, [n]: v }).success !== false) ?? samples[0]!;
      const path = `/v1${op.path.replace(/:(\w+)/g, (_m, n: string) => params[n]!)}`;
      const key = randomUUID();
      denyAll = false;
      try {
        const m = op.method.toUpperCase();
        const first = await post(path, {}, key, admin, m);
        // Anything but 401/403/408/409/429/5xx is stored (a 400 for the empty body, a 404...).
        expect(first.status, await first.text()).not.toBe(403);
        const stored = await post(path, {}, key, admin, m);
        if (stored.headers.get('idempotent-replayed') !== 'true' && stored.status !== 409)
          throw new Error(`${path}: the first response was not stored (${stored.status})`);
        denyAll = true;
        const res = await post(path, {}, key, admin, m);
        expect(res.headers.get('idempotent-replayed')).toBeNull();
        expect(res.status).toBe(403);
      } finally {
        denyAll = false;
      }
    },
  );
});
