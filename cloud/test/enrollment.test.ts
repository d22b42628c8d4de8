import { sql } from 'kysely';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { beforeAll, describe, expect, it } from 'vitest';
import { EnrollmentTokens } from '../src/index.js';
import { PROBLEM_JSON, useApiCloud } from './api-fixtures.js';

interface Created {
  id: string;
  token: string;
  tenant_id: string;
  site_id: string;
  expires_at: string;
  created_by: string;
  note: string | null;
}

interface Listed {
  items: Array<Record<string, unknown> & { id: string; used_at: string | null }>;
}

describe('enrollment tokens', () => {
  const api = useApiCloud();
  let admin: string;
  let installer: string;
  let metrics: Registry;
  let tokens: EnrollmentTokens;

  beforeAll(async () => {
    admin = await api.token('acme', ['admin']);
    installer = await api.token('acme', ['installer']);
    metrics = new Registry();
    tokens = new EnrollmentTokens(api.cloud().db, pino({ level: 'silent' }), metrics);
  });

  const post = (body: unknown, token = admin): Promise<Response> =>
    api.get('/v1/enrollment-tokens', token, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  const rejections = async (): Promise<Record<string, number>> => {
    const m = await metrics.getSingleMetric('vigil_cloud_enrollment_token_rejections_total')!.get();
    return Object.fromEntries(m.values.map((v) => [String(v.labels.reason), v.value]));
  };

  it('create -> list (no secret) -> consume once -> reused is refused and counted', async () => {
    const res = await post({ site_id: 'hq', ttl_seconds: 3600, note: 'lobby gateway' });
    expect(res.status, await res.clone().text()).toBe(201);
    const created = (await res.json()) as Created;
    expect(created.token).toMatch(/^vgl_et_[A-Za-z0-9_-]{43}$/);
    expect(created).toMatchObject({
      tenant_id: 'acme',
      site_id: 'hq',
      created_by: 'user@acme',
      note: 'lobby gateway',
    });
    const ttl = Date.parse(created.expires_at) - Date.now();
    expect(ttl).toBeGreaterThan(3500_000);
    expect(ttl).toBeLessThanOrEqual(3600_000);

    // The default TTL is 24 h; an installer may create too.
    const byInstaller = await post({ site_id: 'hq' }, installer);
    expect(byInstaller.status).toBe(201);
    const other = (await byInstaller.json()) as Created;
    expect(Date.parse(other.expires_at) - Date.now()).toBeGreaterThan(24 * 3600_000 - 60_000);

    const listRes = await api.get('/v1/enrollment-tokens', installer);
    expect(listRes.status).toBe(200);
    const text = await listRes.text();
    expect(text).not.toContain(created.token);
    expect(text).not.toContain('vgl_et_');
    const listed = JSON.parse(text) as Listed;
    expect(listed.items.map((t) => t.id).sort()).toEqual([created.id, other.id].sort());
    for (const item of listed.items) expect(item).not.toHaveProperty('token');

    // The database holds only the hash.
    const rows = await sql<{ row: string }>`select t::text as row from enrollment_tokens t`.execute(
      api.cloud().db,
    );
    expect(rows.rows.length).toBeGreaterThanOrEqual(2);
    for (const { row } of rows.rows) {
      expect(row).not.toContain(created.token);
      expect(row).not.toContain(created.token.slice('vgl_et_'.length));
      expect(row).not.toContain(other.token.slice('vgl_et_'.length));
    }

    expect(await tokens.consumeToken(created.token, 'gw-1')).toEqual({ tenantId: 'acme', siteId: 'hq' });
    await expect(tokens.consumeToken(created.token, 'gw-2')).rejects.toMatchObject({
      code: 'ENROLLMENT_TOKEN_INVALID',
    });
    expect(await rejections()).toMatchObject({ reused: 1 });

    // Used tokens are hidden unless asked for.
    const unused = (await (await api.get('/v1/enrollment-tokens', admin)).json()) as Listed;
    expect(unused.items.map((t) => t.id)).toEqual([other.id]);
    const all = (await (await api.get('/v1/enrollment-tokens?include_used=true', admin)).json()) as Listed;
    expect(all.items.find((t) => t.id === created.id)).toMatchObject({ used_by_device: 'gw-1' });
    expect(all.items.find((t) => t.id === created.id)?.used_at).not.toBeNull();
  });

  it('refuses expired and unknown tokens with the same error, counting each reason', async () => {
    const minted = await tokens.createToken({
      tenantId: 'acme',
      siteId: 'annex',
      ttlSeconds: 60,
      createdBy: 'test',
    });
    const later = new Date(minted.token.expiresAt.getTime() + 1);
    const expired = await tokens.consumeToken(minted.secret, 'gw-9', later).catch((e: unknown) => e);
    const unknown = await tokens.consumeToken(`vgl_et_${'A'.repeat(43)}`, 'gw-9').catch((e: unknown) => e);
    const malformed = await tokens.consumeToken('not-a-token', 'gw-9').catch((e: unknown) => e);
    for (const e of [expired, unknown, malformed])
      expect(e).toMatchObject({
        code: 'ENROLLMENT_TOKEN_INVALID',
        message: 'The enrollment token is invalid, expired or already used.',
      });
    expect(await rejections()).toMatchObject({ expired: 1, unknown: 1, malformed: 1 });
    // Still valid just before expiry.
    const justBefore = new Date(minted.token.expiresAt.getTime() - 1);
    expect(await tokens.consumeToken(minted.secret, 'gw-9', justBefore)).toEqual({
      tenantId: 'acme',
      siteId: 'annex',
    });
  });

  it('lets exactly one of many concurrent enrollments use a token', async () => {
    const { secret } = await tokens.createToken({ tenantId: 'acme', siteId: 'hq', createdBy: 'test' });
    const before = (await rejections()).reused ?? 0;
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => tokens.consumeToken(secret, `gw-race-${i}`)),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect((await rejections()).reused).toBe(before + 7);
  });

  it('only admins and installers of the tenant may create or list', async () => {
    const viewer = await api.token('acme', ['viewer', 'operator']);
    const res = await post({ site_id: 'hq' }, viewer);
    expect(res.status).toBe(403);
    expect(res.headers.get('content-type')).toMatch(PROBLEM_JSON);
    expect((await api.get('/v1/enrollment-tokens', viewer)).status).toBe(403);

    const globex = await api.token('globex', ['admin']);
    const list = await api.get('/v1/enrollment-tokens?include_used=true', globex);
    expect(list.status).toBe(200);
    expect(((await list.json()) as Listed).items).toEqual([]);
    expect((await api.get('/v1/enrollment-tokens')).status).toBe(401);
  });

  it('refuses bad bodies and queries with 400 problems', async () => {
    for (const body of [
      { site_id: 'hq', tenant_id: 'globex' },
      { site_id: 'hq', ttl_seconds: 59 },
      { site_id: 'hq', ttl_seconds: 7 * 24 * 3600 + 1 },
      { site_id: 'bad site' },
      {},
    ]) {
      const res = await post(body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.headers.get('content-type')).toMatch(PROBLEM_JSON);
    }
    const unknownKey = (await (await post({ site_id: 'hq', tenant_id: 'globex' })).json()) as {
      errors: Array<{ path: string }>;
    };
    expect(unknownKey.errors).toEqual([expect.objectContaining({ path: 'tenant_id' })]);
    expect((await api.get('/v1/enrollment-tokens?all=1', admin)).status).toBe(400);
    expect((await api.get('/v1/enrollment-tokens', admin, { method: 'DELETE' })).status).toBe(405);
  });
});
