import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { pino } from 'pino';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import {
  IdempotencyStore,
  MAX_IDEMPOTENCY_KEY_LENGTH,
  parseIdempotencyKey,
  principalKey,
  requestFingerprint,
} from '../src/api/idempotency.js';
import { createRoleAuthorizer, FleetRegistry, type Authorizer } from '../src/index.js';
import { PROBLEM_JSON, useApiCloud } from './api-fixtures.js';

describe('Idempotency-Key parsing', () => {
  it('accepts 1-255 printable ASCII characters, bare or as a quoted string', () => {
    expect(parseIdempotencyKey('8e03978e-40d5-43e8-bc93-6894a57f9324')).toBe(
      '8e03978e-40d5-43e8-bc93-6894a57f9324',
    );
    expect(parseIdempotencyKey('"order 42"')).toBe('order 42');
    expect(parseIdempotencyKey('"a\\"b\\\\c"')).toBe('a"b\\c');
    expect(parseIdempotencyKey('x'.repeat(MAX_IDEMPOTENCY_KEY_LENGTH))).toHaveLength(255);
    for (const bad of ['', '""', 'x'.repeat(256), 'caf\u00e9', 'a\tb', '"unterminated', '"a"b"'])
      expect(() => parseIdempotencyKey(bad), JSON.stringify(bad)).toThrow(/Idempotency-Key/);
  });

  it('fingerprints the canonical JSON body', () => {
    expect(requestFingerprint({ a: 1, b: [1, 2] })).toEqual(requestFingerprint({ b: [1, 2], a: 1 }));
    expect(requestFingerprint({ a: 1 })).not.toEqual(requestFingerprint({ a: 2 }));
    expect(requestFingerprint(undefined)).toEqual(requestFingerprint(null));
  });
});

/** How the admin token of these tests (user@acme, roles [admin]) is stored as a scope. */
const ADMIN_KEY = principalKey({ subject: 'user@acme', tenant: 'acme', roles: ['admin'] });

describe('Idempotency-Key on the API', () => {
  // The authorizer is the hook to hold a request in flight (concurrency) or to fail one (5xx).
  const base = createRoleAuthorizer();
  // `skip`: decisions let through before holding (the router asks first, then the handler).
  let hold: { entered: () => void; release: Promise<void>; skip: number } | null = null;
  let failNext = false;
  const authorizer: Authorizer = {
    async authorize(principal, action, resource) {
      if (action === 'enrollment-tokens:create') {
        if (failNext) {
          failNext = false;
          throw new Error('authorizer down');
        }
        const h = hold;
        if (h && h.skip > 0) h.skip--;
        else if (h) {
          hold = null;
          h.entered();
          await h.release;
        }
      }
      return base.authorize(principal, action, resource);
    },
  };
  let offsetMs = 0;
  const now = (): Date => new Date(Date.now() + offsetMs);
  const api = useApiCloud({}, { authorizer, now });
  let admin: string;

  beforeAll(async () => {
    admin = await api.token('acme', ['admin']);
  });

  const post = (path: string, body: unknown, key: string | undefined, token = admin): Promise<Response> =>
    api.get(path, token, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(key === undefined ? {} : { 'idempotency-key': key }),
      },
      body: JSON.stringify(body),
    });
  const createToken = (body: unknown, key: string | undefined, token = admin): Promise<Response> =>
    post('/v1/enrollment-tokens', body, key, token);

  const tokensWithNote = async (note: string): Promise<number> => {
    const { rows } = await sql<{ n: number }>`
      select count(*)::int as n from enrollment_tokens where note = ${note}`.execute(api.cloud().db);
    return rows[0]!.n;
  };

  const expectProblem = async (res: Response, status: number, type: string): Promise<{ detail: string }> => {
    expect(res.status, await res.clone().text()).toBe(status);
    expect(res.headers.get('content-type')).toMatch(PROBLEM_JSON);
    const p = (await res.json()) as { type: string; detail: string };
    expect(p.type).toBe(`urn:vigil:problem:${type}`);
    return p;
  };

  const rejections = async (): Promise<Record<string, number>> => {
    const text = await (await api.get('/metrics')).text();
    const out: Record<string, number> = {};
    for (const m of text.matchAll(/^vigil_cloud_api_rejected_total\{reason="([a-z_]+)"\} (\d+)$/gm))
      out[m[1]!] = Number(m[2]);
    return out;
  };

  it('a retried token POST mints one token, and never stores or replays the secret', async () => {
    const key = randomUUID();
    const body = { site_id: 'hq', note: 'retry-1' };
    const first = await createToken(body, key);
    expect(first.status).toBe(201);
    const created = (await first.json()) as { id: string; token: string };
    expect(created.token).toMatch(/^vgl_et_/);
    expect(first.headers.get('idempotent-replayed')).toBeNull();

    const before = await rejections();
    const again = await createToken({ note: 'retry-1', site_id: 'hq' }, key); // same body, other key order
    const p = await expectProblem(again, 409, 'idempotent-result-unavailable');
    expect(p.detail).toMatch(/already completed \(status 201\).*one-time secret/);
    const text = JSON.stringify(p);
    expect(text).not.toContain(created.token);
    expect(text).not.toContain('vgl_et_');
    expect(await tokensWithNote('retry-1')).toBe(1);
    expect((await rejections()).idempotent_result_unavailable).toBe(
      before.idempotent_result_unavailable! + 1,
    );

    // The stored record holds the status, never the secret.
    const { rows } = await sql<{ row: string }>`select t::text as row from idempotency_keys t`.execute(
      api.cloud().db,
    );
    expect(rows.length).toBeGreaterThan(0);
    for (const { row } of rows) expect(row).not.toContain(created.token.slice('vgl_et_'.length));
    const stored = await api
      .cloud()
      .db.selectFrom('idempotency_keys')
      .selectAll()
      .where('key', '=', key)
      .executeTakeFirstOrThrow();
    expect(stored).toMatchObject({
      tenant_id: 'acme',
      principal: ADMIN_KEY,
      method: 'POST',
      path: '/v1/enrollment-tokens',
      state: 'done',
      response_status: 201,
      response_body: null,
      withheld: 'secret',
    });
    expect(stored.expires_at.getTime() - stored.created_at.getTime()).toBe(86_400_000);
  });

  it('the same key with a different body is a 422, and nothing runs', async () => {
    const key = randomUUID();
    expect((await createToken({ site_id: 'hq', note: 'diff-1' }, key)).status).toBe(201);
    const before = await rejections();
    await expectProblem(
      await createToken({ site_id: 'hq', note: 'diff-2' }, key),
      422,
      'idempotency-key-reused',
    );
    expect(await tokensWithNote('diff-2')).toBe(0);
    expect((await rejections()).idempotency_key_reused).toBe(before.idempotency_key_reused! + 1);
  });

  it('two requests at once with one key: one runs (201), the other gets 409 in progress', async () => {
    const key = randomUUID();
    let entered!: () => void;
    const inFlight = new Promise<void>((resolve) => (entered = resolve));
    let release!: () => void;
    hold = { entered, release: new Promise<void>((resolve) => (release = resolve)), skip: 1 };
    const body = { site_id: 'hq', note: 'concurrent' };
    const first = createToken(body, key);
    await inFlight; // the first request holds the key and waits inside the handler
    const before = await rejections();
    const second = await createToken(body, key);
    await expectProblem(second, 409, 'idempotency-key-in-use');
    expect(second.headers.get('retry-after')).toBe('1');
    release();
    expect((await first).status).toBe(201);
    expect(await tokensWithNote('concurrent')).toBe(1);
    expect((await rejections()).idempotency_key_in_use).toBe(before.idempotency_key_in_use! + 1);
  });

  it('replays a stored response with Idempotent-Replayed: true (device revocation)', async () => {
    await new FleetRegistry(api.cloud().db).registerDevice({
      tenantId: 'acme',
      siteId: 'hq',
      deviceId: 'gw-idem',
    });
    const key = randomUUID();
    const first = await post('/v1/devices/gw-idem/revoke', { reason: 'stolen' }, key);
    expect(first.status).toBe(200);
    const original = await first.text();
    expect(JSON.parse(original)).toMatchObject({ result: 'revoked' });

    const replayed = await post('/v1/devices/gw-idem/revoke', { reason: 'stolen' }, key);
    expect(replayed.status).toBe(200);
    expect(replayed.headers.get('idempotent-replayed')).toBe('true');
    expect(replayed.headers.get('content-type')).toMatch(/^application\/json/);
    expect(replayed.headers.get('cache-control')).toBe('no-store');
    expect(await replayed.text()).toBe(original);

    // Without the key the handler runs again (and says so); with it and another reason: 422.
    const fresh = await post('/v1/devices/gw-idem/revoke', { reason: 'stolen' }, undefined);
    expect(await fresh.json()).toMatchObject({ result: 'already_revoked' });
    await expectProblem(
      await post('/v1/devices/gw-idem/revoke', { reason: 'lost' }, key),
      422,
      'idempotency-key-reused',
    );
  });

  it('stores 4xx results and replays them', async () => {
    const key = randomUUID();
    const first = await createToken({ site_id: 'hq', ttl_seconds: 1 }, key);
    await expectProblem(first, 400, 'invalid-request');
    const again = await createToken({ site_id: 'hq', ttl_seconds: 1 }, key);
    await expectProblem(again, 400, 'invalid-request');
    expect(again.headers.get('idempotent-replayed')).toBe('true');
  });

  it('releases the key after a 5xx or a 403, so that a retry runs', async () => {
    const key = randomUUID();
    const body = { site_id: 'hq', note: 'after-5xx' };
    failNext = true;
    await expectProblem(await createToken(body, key), 500, 'internal');
    const retry = await createToken(body, key);
    expect(retry.status).toBe(201);
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
    expect(await tokensWithNote('after-5xx')).toBe(1);

    // Same subject (user@acme), first without the role, then with it.
    const key2 = randomUUID();
    const viewer = await api.token('acme', ['viewer']);
    await expectProblem(
      await createToken({ site_id: 'hq', note: 'after-403' }, key2, viewer),
      403,
      'forbidden',
    );
    expect((await createToken({ site_id: 'hq', note: 'after-403' }, key2)).status).toBe(201);
  });

  it('scopes keys to the tenant, the caller, the method and the path', async () => {
    const key = randomUUID();
    expect((await createToken({ site_id: 'hq', note: 'scope' }, key)).status).toBe(201);
    const globex = await api.token('globex', ['admin']);
    expect((await createToken({ site_id: 'hq', note: 'scope' }, key, globex)).status).toBe(201);
    // Another path with the same key is another request (a 404 here, not a 422).
    await expectProblem(await post('/v1/devices/gw-none/revoke', { reason: 'x' }, key), 404, 'not-found');
  });

  it('refuses a malformed key with 400', async () => {
    const before = await rejections();
    for (const bad of ['x'.repeat(256), '"open'])
      await expectProblem(await createToken({ site_id: 'hq', note: 'bad-key' }, bad), 400, 'invalid-request');
    expect(await tokensWithNote('bad-key')).toBe(0);
    expect((await rejections()).idempotency_key_invalid).toBe(before.idempotency_key_invalid! + 2);
    // The quoted form is the same key as the bare one.
    const key = randomUUID();
    expect((await createToken({ site_id: 'hq', note: 'quoted' }, key)).status).toBe(201);
    await expectProblem(
      await createToken({ site_id: 'hq', note: 'quoted' }, `"${key}"`),
      409,
      'idempotent-result-unavailable',
    );
  });

  it('takes over a claim abandoned by a crashed request (same body only)', async () => {
    const key = randomUUID();
    const body = { site_id: 'hq', note: 'abandoned' };
    const t = now();
    await api
      .cloud()
      .db.insertInto('idempotency_keys')
      .values({
        tenant_id: 'acme',
        principal: ADMIN_KEY,
        method: 'POST',
        path: '/v1/enrollment-tokens',
        key,
        request_sha256: requestFingerprint(body),
        state: 'in_progress',
        claim_id: randomUUID(),
        created_at: new Date(t.getTime() - 120_000),
        locked_until: new Date(t.getTime() - 60_000),
        expires_at: new Date(t.getTime() + 3600_000),
      })
      .execute();
    await expectProblem(await createToken({ ...body, note: 'other' }, key), 422, 'idempotency-key-reused');
    expect((await createToken(body, key)).status).toBe(201);
  });

  it('expires keys after the TTL; the cleanup deletes expired rows in bounded batches', async () => {
    const key = randomUUID();
    const body = { site_id: 'hq', note: 'expiry' };
    expect((await createToken(body, key)).status).toBe(201);
    offsetMs = 86_400_000 - 5_000;
    await expectProblem(await createToken(body, key), 409, 'idempotent-result-unavailable');
    offsetMs = 86_400_000 + 1_000;
    expect((await createToken(body, key)).status).toBe(201);
    expect(await tokensWithNote('expiry')).toBe(2);

    // That claim ran the lazy cleanup (the clock moved past its interval): the rows of the earlier tests,
    // which had expired by then, are gone.
    const db = api.cloud().db;
    const expiredAt = async (at: Date): Promise<number> => {
      const { rows } = await sql<{ n: number }>`
        select count(*)::int as n from idempotency_keys where expires_at <= ${at}`.execute(db);
      return rows[0]!.n;
    };
    await vi.waitFor(async () => expect(await expiredAt(now())).toBe(0));

    // A pass deletes at most its batch, oldest first.
    const t = now();
    await db
      .insertInto('idempotency_keys')
      .values(
        [1, 2, 3, 4, 5].map((i) => ({
          tenant_id: 'acme',
          principal: ADMIN_KEY,
          method: 'POST',
          path: '/v1/enrollment-tokens',
          key: `old-${i}`,
          request_sha256: requestFingerprint({ i }),
          state: 'done' as const,
          claim_id: randomUUID(),
          created_at: new Date(t.getTime() - 90_000_000),
          locked_until: new Date(t.getTime() - 90_000_000),
          expires_at: new Date(t.getTime() - i * 1000),
          response_status: 201,
          response_headers: '{}',
          response_body: '{}',
        })),
      )
      .execute();
    const store = new IdempotencyStore(
      db,
      { ttlSeconds: 86_400, inProgressTimeoutSeconds: 60 },
      pino({ level: 'silent' }),
      now,
    );
    expect(await store.deleteExpired(t, 2)).toBe(2);
    const left = await db
      .selectFrom('idempotency_keys')
      .select('key')
      .where('key', 'like', 'old-%')
      .execute();
    expect(left.map((r) => r.key).sort()).toEqual(['old-1', 'old-2', 'old-3']);
    expect(await store.deleteExpired(t, 1000)).toBe(3);
    expect(await expiredAt(t)).toBe(0);
    offsetMs = 0;
  });
});
