// The webhook API against the real cloud with the default (strict) integrations config: https only, no
// private addresses. Deliveries themselves are in webhooks-delivery.test.ts.
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { useApiCloud } from './api-fixtures.js';

describe('webhooks API', () => {
  const api = useApiCloud();
  const post = async (path: string, token: string, body: unknown, headers: Record<string, string> = {}) =>
    api.get(path, token, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
  const problem = async (res: Response, status: number, type?: string) => {
    expect(res.status).toBe(status);
    const p = (await res.json()) as { type: string; errors?: Array<{ path: string; message: string }> };
    if (type) expect(p.type).toBe(`urn:vigil:problem:${type}`);
    return p;
  };

  it('creates a webhook: the secret is shown once, a repeat with the same Idempotency-Key is 409, lists never show it', async () => {
    const admin = await api.token('acme', ['admin']);
    const key = randomUUID();
    const body = {
      url: 'https://hooks.example.com/vigil',
      filter: { labels: ['person'] },
      description: 'SOC',
    };
    const res = await post('/v1/webhooks', admin, body, { 'Idempotency-Key': key });
    expect(res.status).toBe(201);
    const created = (await res.json()) as Record<string, unknown> & { id: string; secret: string };
    expect(created).toMatchObject({
      tenant_id: 'acme',
      url: body.url,
      filter: { labels: ['person'] },
      description: 'SOC',
      enabled: true,
      created_by: 'user@acme',
      disabled_at: null,
    });
    expect(created.secret).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const again = await post('/v1/webhooks', admin, body, { 'Idempotency-Key': key });
    const p = await problem(again, 409, 'idempotent-result-unavailable');
    expect(JSON.stringify(p)).not.toContain(created.secret);

    const list = await api.get('/v1/webhooks', admin);
    expect(list.status).toBe(200);
    const text = await list.text();
    expect(text).not.toContain(created.secret);
    expect(text).not.toContain('"secret"');
    const items = (JSON.parse(text) as { items: Array<{ id: string }> }).items;
    expect(items.map((i) => i.id)).toEqual([created.id]); // the 409 repeat created nothing

    // An auditor reads (webhooks and deliveries), without secrets, but may not create or disable.
    const auditor = await api.token('acme', ['auditor']);
    expect((await api.get('/v1/webhooks', auditor)).status).toBe(200);
    const deliveries = await api.get(`/v1/webhooks/${created.id}/deliveries?limit=10`, auditor);
    expect(deliveries.status).toBe(200);
    expect(await deliveries.json()).toEqual({ items: [] });
    await problem(await post('/v1/webhooks', auditor, body), 403);
    await problem(await post(`/v1/webhooks/${created.id}/disable`, auditor, {}), 403);

    // Disable: once audited, repeated harmlessly.
    const disabled = await post(`/v1/webhooks/${created.id}/disable`, admin, { reason: 'rotating' });
    expect(disabled.status).toBe(200);
    expect(await disabled.json()).toMatchObject({ enabled: false, disabled_reason: 'rotating' });
    const twice = await post(`/v1/webhooks/${created.id}/disable`, admin, { reason: 'other' });
    expect(await twice.json()).toMatchObject({ enabled: false, disabled_reason: 'rotating' });

    const audit = await api
      .cloud()
      .db.selectFrom('audit_log')
      .select(['action', 'outcome', 'resource', 'detail'])
      .where('tenant_id', '=', 'acme')
      .where('action', 'like', 'webhook.%')
      .orderBy('seq')
      .execute();
    // The auditor's two refused changes are on the log too (denied), between the create and the one disable.
    expect(audit.map((a) => [a.action, a.outcome])).toEqual([
      ['webhook.create', 'allowed'],
      ['webhook.write', 'denied'],
      ['webhook.write', 'denied'],
      ['webhook.disable', 'allowed'],
    ]);
    expect(audit[0]!.resource).toBe(`webhook:acme/${created.id}`);
    expect(JSON.stringify(audit)).not.toContain(created.secret);
  });

  it('refuses viewers, operators and site-scoped admins (403), and bad bodies (400)', async () => {
    for (const token of [
      await api.token('acme', ['viewer']),
      await api.token('acme', ['operator']),
      await api.token('acme', ['admin'], { sites: ['hq'] }),
    ]) {
      await problem(await api.get('/v1/webhooks', token), 403);
      await problem(await post('/v1/webhooks', token, { url: 'https://hooks.example.com/' }), 403);
    }
    const admin = await api.token('acme', ['admin']);
    const refused = async (url: string, message: RegExp) => {
      const p = await problem(await post('/v1/webhooks', admin, { url }), 400);
      expect(p.errors?.[0]).toMatchObject({ path: 'url' });
      expect(p.errors?.[0]?.message).toMatch(message);
    };
    await refused('http://hooks.example.com/', /https/);
    await refused('https://127.0.0.1/hook', /loopback/);
    await refused('https://[::ffff:169.254.169.254]/latest', /link-local/);
    await refused('https://10.1.2.3/', /private/);
    await refused('https://bob:pw@hooks.example.com/', /credentials/);
    await problem(
      await post('/v1/webhooks', admin, { url: 'https://hooks.example.com/', secret: 'mine' }),
      400,
    );
    await problem(
      await post('/v1/webhooks', admin, { url: 'https://hooks.example.com/', filter: { sites: ['a.b'] } }),
      400,
    );
    await problem(await api.get(`/v1/webhooks/${randomUUID()}/deliveries`, admin), 404);
    await problem(await api.get('/v1/webhooks/not-a-uuid/deliveries', admin), 400);
    await problem(await post(`/v1/webhooks/${randomUUID()}/disable`, admin, {}), 404);
    await problem(await api.get('/v1/webhooks/x/deliveries?limit=0', admin), 400);
  });
});
