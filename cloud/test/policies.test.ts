import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { schemaToJson, validate } from '@cedar-policy/cedar-wasm/nodejs';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { createApiMounts } from '../src/api/mount.js';
import { ACTION_RESOURCE_TYPES, ACTIONS, type Resource } from '../src/auth/authorize.js';
import {
  CEDAR_SCHEMA_FILE,
  createCedarAuthorizer,
  DEFAULT_POLICIES_DIR,
  loadCedarPolicies,
} from '../src/auth/cedar.js';
import { ensureDevSigningKey, parseCloudConfig } from '../src/index.js';
import { ConfigError } from '../src/lib/errors.js';
import {
  ALL_CASES,
  CROSS_TENANT_CASES,
  DATA_CLASS_CASES,
  GRANTS,
  INVALID_REQUEST_CASES,
  OTHER_CASES,
  ROLE_CASES,
  ROLES,
  SITE_CASES,
  type AuthzCase,
} from './support/authz-cases.js';

const silent = pino({ level: 'silent' });
const POLICIES = resolve(import.meta.dirname, '../policies');

describe('Cedar policy set', () => {
  it('is found next to the package, whatever the working directory', () => {
    expect(DEFAULT_POLICIES_DIR).toBe(POLICIES);
  });

  it('validates against the schema in strict mode', () => {
    const schema = readFileSync(join(POLICIES, CEDAR_SCHEMA_FILE), 'utf8');
    const staticPolicies = readdirSync(POLICIES)
      .filter((f) => f.endsWith('.cedar'))
      .map((f) => readFileSync(join(POLICIES, f), 'utf8'))
      .join('\n');
    const answer = validate({ schema, policies: { staticPolicies }, validationSettings: { mode: 'strict' } });
    expect(answer).toMatchObject({ type: 'success', validationErrors: [], validationWarnings: [] });
  });

  it('names every policy by its @id, and the schema has every action the API uses', () => {
    const loaded = loadCedarPolicies(POLICIES);
    expect(Object.keys(loaded.policies).sort()).toEqual([
      'admin',
      'auditor-read',
      'installer',
      'operator-alerts-cancel',
      'operator-events-review',
      'operator-media',
      'operator-read',
      'site-scope',
      'tenant-isolation',
      'viewer-read',
    ]);
    expect(loaded.sources['tenant-isolation']?.file).toMatch(/guards\.cedar$/);
    expect(loaded.sources['tenant-isolation']?.line).toBe(4);
    expect(loaded.warnings).toEqual([]);
    expect(Object.keys(GRANTS).sort()).toEqual([...ACTIONS].sort());
  });

  it('the schema appliesTo is ACTION_RESOURCE_TYPES (what the entities map each resource type to)', () => {
    const json = schemaToJson(readFileSync(join(POLICIES, CEDAR_SCHEMA_FILE), 'utf8'));
    if (json.type !== 'success') throw new Error(JSON.stringify(json.errors));
    const actions = json.json.Vigil?.actions ?? {};
    const cedarTypes: Record<Resource['type'], string[]> = {
      events: ['Tenant', 'Site'],
      devices: ['Tenant', 'Site'],
      'enrollment-tokens': ['Tenant', 'Site'],
      event: ['Event'],
      device: ['Device'],
      media: ['Media'],
      'audit-log': ['AuditLog'],
      configs: ['Tenant', 'Site'],
      rollouts: ['Tenant', 'Site'],
      webhooks: ['Tenant'],
      alerts: ['Tenant'],
      releases: ['Tenant'],
      retention: ['Tenant'],
      holds: ['Tenant'],
      privacy: ['Tenant'],
    };
    for (const action of ACTIONS) {
      const expected = new Set(ACTION_RESOURCE_TYPES[action].flatMap((t) => cedarTypes[t]));
      expect(new Set(actions[action]?.appliesTo?.resourceTypes), action).toEqual(expected);
      expect(actions[action]?.appliesTo?.principalTypes, action).toEqual(['User']);
    }
    expect(
      Object.keys(actions)
        .filter((a) => a.includes(':'))
        .sort(),
    ).toEqual([...ACTIONS].sort());
  });
});

describe('Cedar decisions: the decision table', () => {
  const metrics = new Registry();
  const authz = createCedarAuthorizer({ log: silent, metrics });

  const check = async (c: AuthzCase): Promise<void> => {
    const d = await authz.authorize(c.principal, c.action, c.resource);
    expect(d.allowed, `${c.name}: ${d.reason}`).toBe(c.allowed);
    if (c.reason) expect(d.reason, c.name).toMatch(c.reason);
  };

  it('covers every role × every action', () => {
    for (const role of ROLES)
      for (const action of ACTIONS) {
        expect(ROLE_CASES.some((c) => c.principal.roles[0] === role && c.action === action)).toBe(true);
        expect(CROSS_TENANT_CASES.some((c) => c.principal.roles[0] === role && c.action === action)).toBe(
          true,
        );
      }
  });

  it.each(ROLE_CASES.map((c) => [c.name, c] as const))('role: %s', (_, c) => check(c));
  it.each(CROSS_TENANT_CASES.map((c) => [c.name, c] as const))('cross-tenant: %s', (_, c) => check(c));
  it.each(DATA_CLASS_CASES.map((c) => [c.name, c] as const))('data class: %s', (_, c) => check(c));
  it.each(SITE_CASES.map((c) => [c.name, c] as const))('site scope: %s', (_, c) => check(c));
  it.each(OTHER_CASES.map((c) => [c.name, c] as const))('default deny: %s', (_, c) => check(c));

  it.each(INVALID_REQUEST_CASES.map((c) => [c.name, c] as const))(
    'invalid request, denied and counted: %s',
    async (_, c) => {
      const before = (await metrics.getSingleMetricAsString('vigil_cloud_authz_errors_total')).match(
        /engine="cedar"\} (\d+)/,
      );
      await check(c);
      const d = await authz.authorize(c.principal, c.action, c.resource);
      expect(d.reason).toBe(`invalid request: ${c.action} does not apply to ${c.resource.type}`);
      const after = (await metrics.getSingleMetricAsString('vigil_cloud_authz_errors_total')).match(
        /engine="cedar"\} (\d+)/,
      );
      expect(Number(after?.[1])).toBe(Number(before?.[1] ?? 0) + 2);
    },
  );

  it('answers from its decision cache exactly as without it (evictions included)', async () => {
    const uncached = createCedarAuthorizer({ log: silent, cacheSize: 0 });
    const tiny = createCedarAuthorizer({ log: silent, cacheSize: 5 });
    for (let pass = 0; pass < 2; pass++)
      for (const c of [...ALL_CASES, ...ALL_CASES.slice(0, 20)])
        expect(await tiny.authorize(c.principal, c.action, c.resource), c.name).toEqual(
          await uncached.authorize(c.principal, c.action, c.resource),
        );
  });

  it('keeps an uncached decision well under a few milliseconds', async () => {
    const uncached = createCedarAuthorizer({ log: silent, cacheSize: 0 });
    const c = ALL_CASES[0]!;
    for (let i = 0; i < 200; i++) await uncached.authorize(c.principal, c.action, c.resource);
    // CPU time of this process, not wall time: other processes' load on the machine does not count against
    // it (a starved worker may wait seconds for a core). 2 ms of CPU per decision is ~10x what one takes;
    // cloud/bench/authz.bench.ts measures the latency properly.
    const cpu = process.cpuUsage();
    for (let i = 0; i < 1000; i++) await uncached.authorize(c.principal, c.action, c.resource);
    const used = process.cpuUsage(cpu);
    expect((used.user + used.system) / 1e6).toBeLessThan(2);
  });
});

describe('Cedar policy loading refuses bad policies (start fails with a ConfigError naming file and line)', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  /** A copy of the real policies with `file` replaced by `text` (or removed when text is null). */
  const variant = (file: string, text: string | null): string => {
    const dir = mkdtempSync(join(tmpdir(), 'vigil-policies-'));
    dirs.push(dir);
    cpSync(POLICIES, dir, { recursive: true });
    if (text === null) rmSync(join(dir, file));
    else writeFileSync(join(dir, file), text);
    return dir;
  };
  const refusal = (dir: string): string => {
    try {
      createCedarAuthorizer({ policiesDir: dir, log: silent });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as Error).message;
    }
    throw new Error('the policies were accepted');
  };

  it('a syntax error', () => {
    const dir = variant(
      'viewer.cedar',
      '// one\n\n@id("x")\npermit (principal, action, resource)\nwhen { 1 + };\n',
    );
    expect(refusal(dir)).toMatch(/viewer\.cedar:5: .*unexpected token/);
  });

  it('an attribute the schema does not have (strict validation)', () => {
    const dir = variant(
      'operator.cedar',
      '@id("ok")\npermit (principal, action, resource) when { principal.roles.contains("x") };\n\n' +
        '@id("bad")\npermit (principal, action, resource)\nwhen { principal.department == "ops" };\n',
    );
    expect(refusal(dir)).toMatch(
      /operator\.cedar:6: @id\("bad"\): .*attribute `department` on entity type `Vigil::User` not found/,
    );
  });

  it('an unsafe access to an optional attribute', () => {
    const dir = variant(
      'viewer.cedar',
      '@id("viewer-read")\npermit (principal, action == Vigil::Action::"events:read", resource is Vigil::Event)\n' +
        'when { resource.site == "hq" };\n',
    );
    expect(refusal(dir)).toMatch(/viewer\.cedar:\d+: @id\("viewer-read"\): .*optional attribute `site`/);
  });

  it('an unknown action', () => {
    const dir = variant(
      'viewer.cedar',
      '@id("v")\npermit (principal, action == Vigil::Action::"events:delete", resource);\n',
    );
    expect(refusal(dir)).toMatch(/viewer\.cedar:\d+: .*events:delete/);
  });

  it('a policy without @id, and an @id used twice', () => {
    expect(
      refusal(variant('viewer.cedar', 'permit (principal, action, resource) when { false };\n')),
    ).toMatch(/viewer\.cedar:1: the policy has no @id/);
    expect(
      refusal(
        variant('viewer.cedar', '\n@id("admin")\npermit (principal, action, resource) when { false };\n'),
      ),
    ).toMatch(/viewer\.cedar:2: @id\("admin"\) is already used at .*admin\.cedar:2/);
  });

  it('a broken or missing schema, an empty or missing directory', () => {
    expect(refusal(variant(CEDAR_SCHEMA_FILE, 'namespace Vigil {\n  entity User {\n};\n'))).toMatch(
      /invalid Cedar schema:\n.*vigil\.cedarschema:\d+/,
    );
    expect(refusal(variant(CEDAR_SCHEMA_FILE, null))).toMatch(/cannot read the Cedar schema/);
    const empty = mkdtempSync(join(tmpdir(), 'vigil-policies-'));
    dirs.push(empty);
    writeFileSync(join(empty, CEDAR_SCHEMA_FILE), readFileSync(join(POLICIES, CEDAR_SCHEMA_FILE)));
    expect(refusal(empty)).toMatch(/no \*\.cedar policy files/);
    expect(refusal(join(empty, 'nope'))).toMatch(/cannot read the Cedar schema/);
  });
});

describe('authz config', () => {
  const base = {
    database: { url: 'postgres://x/y' },
    nats: { servers: ['tls://localhost:1'], tls: { caFile: 'a', certFile: 'b', keyFile: 'c' } },
    api: { enabled: false },
  };
  const dir = mkdtempSync(join(tmpdir(), 'vigil-authz-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('defaults to Cedar; OPA needs a URL (https or loopback)', () => {
    expect(parseCloudConfig(base).authz).toEqual({ engine: 'cedar', opaTimeoutMs: 250 });
    expect(() => parseCloudConfig({ ...base, authz: { engine: 'opa' } })).toThrow(
      /authz\.opaUrl: required when authz\.engine is opa/,
    );
    expect(() =>
      parseCloudConfig({ ...base, authz: { engine: 'opa', opaUrl: 'http://opa.example:8181' } }),
    ).toThrow(/authz\.opaUrl: must be https/);
    expect(
      parseCloudConfig({ ...base, authz: { engine: 'opa', opaUrl: 'http://127.0.0.1:8181' } }).authz,
    ).toMatchObject({ engine: 'opa', opaUrl: 'http://127.0.0.1:8181' });
    expect(() => parseCloudConfig({ ...base, authz: { engine: 'xacml' } })).toThrow(/authz\.engine/);
  });

  it('the API mount loads the configured policies at start: a bad policy directory fails it', () => {
    const key = ensureDevSigningKey(dir);
    const config = parseCloudConfig({
      ...base,
      api: { enabled: true },
      auth: { jwksFile: key.jwksFile },
      authz: { policiesDir: join(dir, 'missing') },
    });
    const deps = { db: {} as never, log: silent, metrics: new Registry() };
    expect(() => createApiMounts(config, deps)).toThrow(ConfigError);
    const ok = parseCloudConfig({ ...base, api: { enabled: true }, auth: { jwksFile: key.jwksFile } });
    expect(createApiMounts(ok, { ...deps, metrics: new Registry() })).toHaveLength(1);
  });
});
