import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { beforeAll, describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { createHttpApp } from '../src/api/http.js';
import { apiOperations } from '../src/api/openapi.js';
import { createApiRouter, OPERATION_GUARD } from '../src/api/router.js';
import {
  createdEnrollmentTokenSchema,
  devicePageSchema,
  deviceViewSchema,
  enrollmentTokenListSchema,
  eventPageSchema,
  eventViewSchema,
  problemSchema,
  revokeResultSchema,
} from '../src/api/views.js';
import { createAuthorizerFromConfig } from '../src/auth/engine.js';
import type { TokenVerifier } from '../src/auth/jwt.js';
import { createRoleAuthorizer, FleetRegistry, type Action, type Resource } from '../src/index.js';
import { insertEvents, PROBLEM_JSON, useApiCloud, uuidV7 } from './api-fixtures.js';

const run = promisify(execFile);
const CLOUD_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
const METHODS = ['get', 'post', 'put', 'patch', 'delete'] as const;

type Json = Record<string, unknown>;
interface OpenApiDoc {
  openapi: string;
  paths: Record<string, Record<string, Json>>;
  components: Json & { securitySchemes: Json };
  security: unknown[];
}

interface Layer {
  route?: { path: string; methods: Record<string, boolean>; stack: Array<{ handle: object }> };
}

/** `METHOD /path` of every route layer: OpenAPI-style paths; layers made only of registry guards skipped. */
function routesOf(stack: readonly Layer[], prefix: string): string[] {
  const out = new Set<string>();
  for (const layer of stack) {
    const route = layer.route;
    if (!route) continue;
    if (route.stack.every((l) => OPERATION_GUARD in l.handle)) continue;
    for (const m of Object.keys(route.methods).filter((k) => k !== '_all'))
      out.add(`${m.toUpperCase()} ${prefix}${route.path.replace(/:([A-Za-z0-9_]+)/g, '{$1}')}`);
  }
  return [...out].sort();
}

function operationsOf(doc: OpenApiDoc, inV1: boolean): string[] {
  const out: string[] = [];
  for (const [path, item] of Object.entries(doc.paths))
    if (path.startsWith('/v1/') === inV1)
      for (const m of Object.keys(item).filter((k) => (METHODS as readonly string[]).includes(k)))
        out.push(`${m.toUpperCase()} ${path}`);
  return out.sort();
}

describe('OpenAPI document', () => {
  const api = useApiCloud();
  let doc: OpenApiDoc;
  let admin: string;

  beforeAll(async () => {
    admin = await api.token('acme', ['admin']);
    const res = await api.get('/v1/openapi.json');
    expect(res.status).toBe(200);
    doc = (await res.json()) as OpenApiDoc;
  });

  it('is served without authentication, as OpenAPI 3.1 with a bearer JWT scheme', async () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.components.securitySchemes).toEqual({
      bearerAuth: expect.objectContaining({ type: 'http', scheme: 'bearer', bearerFormat: 'JWT' }) as unknown,
    });
    expect(doc.security).toEqual([{ bearerAuth: [] }]);
    const res = await api.get('/v1/openapi.json');
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect((await api.get('/v1/openapi.json', undefined, { method: 'DELETE' })).status).toBe(405);
  });

  it('has a self-contained HTML rendering at /v1/docs', async () => {
    const res = await api.get('/v1/docs');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(res.headers.get('content-security-policy')).toContain("default-src 'none'");
    const html = await res.text();
    expect(html).not.toMatch(/<script|<link|https?:\/\/(?!json-schema)/i);
    for (const item of Object.values(doc.paths))
      for (const op of Object.values(item)) expect(html).toContain(`id="${String(op.operationId)}"`);
    expect(html).toContain('<code>/v1/devices/{id}/revoke</code>');
  });

  it('describes exactly the routes the server has', () => {
    const router = createApiRouter({
      db: api.cloud().db,
      verifier: { verify: () => Promise.reject(new Error('unused')) } satisfies TokenVerifier,
      authorizer: createRoleAuthorizer(),
      log: pino({ level: 'silent' }),
      metrics: new Registry(),
      maxPageSize: 500,
      offlineAfterSeconds: 30,
      now: () => new Date(),
    });
    const routed = routesOf((router as unknown as { stack: Layer[] }).stack, '/v1');
    expect(routed).toEqual(operationsOf(doc, true));
    expect(routed).toContain('POST /v1/enrollment-tokens');

    const app = createHttpApp(new Registry(), []);
    const appRoutes = routesOf((app as unknown as { router: { stack: Layer[] } }).router.stack, '');
    expect(appRoutes).toEqual(operationsOf(doc, false));
  });

  it('gives every /v1 operation its problem responses, and authenticated ones their 401', () => {
    for (const [path, item] of Object.entries(doc.paths))
      for (const [method, op] of Object.entries(item)) {
        const statuses = Object.keys(op.responses as Json);
        const where = `${method} ${path}`;
        if (path.startsWith('/v1/'))
          expect(
            statuses.some((s) => s.startsWith('4')),
            where,
          ).toBe(true);
        const isPublic = Array.isArray(op.security) && op.security.length === 0;
        expect(statuses.includes('401'), where).toBe(!isPublic);
        if (method === 'post') expect(JSON.stringify(op.parameters), where).toContain('IdempotencyKey');
      }
  });

  it('passes redocly lint (recommended rules, cloud/redocly.yaml)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vigil-openapi-'));
    try {
      const file = join(dir, 'openapi.json');
      writeFileSync(file, JSON.stringify(doc, null, 2));
      const { stdout } = await run(
        join(CLOUD_DIR, 'node_modules/.bin/redocly'),
        ['lint', '--config', join(CLOUD_DIR, 'redocly.yaml'), '--format=json', file],
        {
          cwd: dir,
          env: {
            ...process.env,
            REDOCLY_TELEMETRY: 'off',
            REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true',
            CI: 'true',
          },
          timeout: 60_000,
        },
      ); // rejects on a non-zero exit
      const report = JSON.parse(stdout) as {
        totals: { errors: number; warnings: number };
        problems: unknown[];
      };
      expect(report.problems).toEqual([]);
      expect(report.totals).toMatchObject({ errors: 0, warnings: 0 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);

  it('derives parameter schemas that agree with validation', async () => {
    const params = doc.paths['/v1/events']!.get!.parameters as Array<{ name: string; schema: Json }>;
    const site = params.find((p) => p.name === 'site')!;
    const pattern = new RegExp(site.schema.pattern as string);
    expect(pattern.test('not a site!')).toBe(false);
    expect(pattern.test('hq-1')).toBe(true);

    const bad = await api.get('/v1/events?site=not%20a%20site!', admin);
    expect(bad.status).toBe(400);
    expect(bad.headers.get('content-type')).toMatch(PROBLEM_JSON);
    expect(((await bad.json()) as { errors: unknown[] }).errors).toEqual([
      { path: 'site', message: expect.any(String) as unknown },
    ]);
    expect((await api.get('/v1/events?site=hq-1', admin)).status).toBe(200);

    // Query parameters the document does not list are refused.
    expect(params.map((p) => p.name)).not.toContain('sites');
    expect((await api.get('/v1/events?sites=hq', admin)).status).toBe(400);

    // The body schema: ttl_seconds below its minimum is a 400 naming the field.
    const body = doc.paths['/v1/enrollment-tokens']!.post!.requestBody as {
      content: { 'application/json': { schema: { properties: Record<string, Json>; required: string[] } } };
    };
    const schema = body.content['application/json'].schema;
    expect(schema.required).toEqual(['site_id']);
    const min = schema.properties.ttl_seconds!.minimum as number;
    const res = await api.get('/v1/enrollment-tokens', admin, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ site_id: 'hq', ttl_seconds: min - 1 }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { errors: Array<{ path: string }> }).errors[0]?.path).toBe('ttl_seconds');
  });

  it('has response schemas that match what the handlers send', async () => {
    const db = api.cloud().db;
    await new FleetRegistry(db).registerDevice({ tenantId: 'acme', siteId: 'hq', deviceId: 'gw-doc' });
    const now = Date.now();
    await insertEvents(db, [
      {
        event_id: uuidV7(now),
        tenant_id: 'acme',
        device_id: 'gw-doc',
        camera_id: 'cam-1',
        label: 'person',
        at: `${new Date(now).toISOString().slice(0, 19)}.123456Z`,
      },
    ]);
    const strict = (schema: z.ZodObject, value: unknown): void => {
      schema.parse(value);
      for (const k of Object.keys(value as object)) expect(schema.shape, k).toHaveProperty(k);
    };

    const events = (await (await api.get('/v1/events', admin)).json()) as { items: unknown[] };
    strict(eventPageSchema, events);
    expect(events.items.length).toBeGreaterThan(0);
    for (const e of events.items) strict(eventViewSchema, e);
    const one = await api.get(`/v1/events/${(events.items[0] as { event_id: string }).event_id}`, admin);
    strict(eventViewSchema, await one.json());

    const devices = (await (await api.get('/v1/devices', admin)).json()) as { items: unknown[] };
    strict(devicePageSchema, devices);
    for (const d of devices.items) strict(deviceViewSchema, d);
    strict(deviceViewSchema, await (await api.get('/v1/devices/gw-doc', admin)).json());

    const created = await api.get('/v1/enrollment-tokens', admin, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ site_id: 'hq' }),
    });
    expect(created.status).toBe(201);
    strict(createdEnrollmentTokenSchema, await created.json());
    strict(enrollmentTokenListSchema, await (await api.get('/v1/enrollment-tokens', admin)).json());

    const revoked = await api.get('/v1/devices/gw-doc/revoke', admin, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'doc test' }),
    });
    expect(revoked.status).toBe(200);
    strict(revokeResultSchema, await revoked.json());

    const problem = await api.get('/v1/devices/nope', admin);
    expect(problem.status).toBe(404);
    strict(problemSchema, await problem.json());
  });

  it('names the roles that the default Cedar policies grant each action to', async () => {
    const authorizer = createAuthorizerFromConfig(
      { engine: 'cedar', opaTimeoutMs: 250 },
      pino({ level: 'silent' }),
      new Registry(),
    );
    const resourceFor = (action: Action): Resource => {
      switch (action) {
        case 'events:read':
          return { type: 'events', tenant: 'acme' };
        case 'devices:read':
          return { type: 'devices', tenant: 'acme' };
        case 'devices:revoke':
          return { type: 'device', tenant: 'acme', id: 'gw-1' };
        case 'enrollment-tokens:create':
        case 'enrollment-tokens:read':
          return { type: 'enrollment-tokens', tenant: 'acme' };
        case 'rollouts:read':
        case 'rollouts:write':
          return { type: 'rollouts', tenant: 'acme' };
        case 'webhooks:read':
        case 'webhooks:write':
          return { type: 'webhooks', tenant: 'acme' };
        case 'alerts:read':
        case 'alerts:write':
        case 'alerts:cancel':
          return { type: 'alerts', tenant: 'acme' };
        case 'releases:read':
        case 'releases:publish':
          return { type: 'releases', tenant: 'acme' };
        case 'retention:read':
        case 'retention:write':
          return { type: 'retention', tenant: 'acme' };
        case 'holds:read':
        case 'holds:write':
          return { type: 'holds', tenant: 'acme' };
        case 'erasures:read':
        case 'erasures:write':
        case 'exports:create':
          return { type: 'privacy', tenant: 'acme' };
        case 'configs:read':
        case 'configs:write':
          return { type: 'configs', tenant: 'acme' };
        case 'media:read':
        case 'media:erase':
          return { type: 'media', tenant: 'acme', id: 'm1' };
        case 'audit:read':
          return { type: 'audit-log', tenant: 'acme' };
        case 'events:review':
          return { type: 'event', tenant: 'acme', id: 'e1' };
        default:
          throw new Error(`no resource for ${String(action)}`);
      }
    };
    for (const op of apiOperations(500)) {
      const auth = op.authorization;
      if (auth === null || auth === 'authenticated') continue;
      const granted: string[] = [];
      for (const role of ['admin', 'auditor', 'installer', 'operator', 'viewer']) {
        const d = await authorizer.authorize(
          { subject: 'u', tenant: 'acme', roles: [role] },
          auth.action,
          resourceFor(auth.action),
        );
        if (d.allowed) granted.push(role);
      }
      expect(granted, op.operationId).toEqual([...auth.roles]);
    }
  });
});
