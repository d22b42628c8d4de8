import { readFileSync } from 'node:fs';
import type { Response } from 'express';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { parseOrThrow } from '../src/api/events-query.js';
import { toProblem } from '../src/api/problem.js';
import { createRolloutBody } from '../src/api/rollouts.js';
import type { Authorizer } from '../src/auth/authorize.js';
import { createCedarAuthorizer } from '../src/auth/cedar.js';
import type { Principal } from '../src/auth/principal.js';
import { parseCloudConfig } from '../src/config/load.js';
import { allowedPages, requestAuthorizer } from '../src/console/access.js';
import { formFieldOf } from '../src/console/pages/rollouts.js';
import { refusalOf } from '../src/console/refusal.js';
import { escapeHtml, html } from '../src/console/html.js';
import { readCookie } from '../src/console/security.js';
import { sameToken } from '../src/console/session.js';

describe('console html: escaping by construction', () => {
  it('escapes every interpolation, nested lists too, and passes only html-made markup through', () => {
    const evil = `<script>alert("x")</script>&'\``;
    const out = html`<p title="${evil}">${evil}${[evil, html`<b>${evil}</b>`]}${null}${false}${3}</p>`.text;
    expect(out).not.toContain('<script>');
    expect(out).toBe(
      `<p title="${escapeHtml(evil)}">${escapeHtml(evil)}${escapeHtml(evil)}<b>${escapeHtml(evil)}</b>3</p>`,
    );
    expect(escapeHtml(evil)).toBe('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;&#96;');
    // A look-alike object is text, not markup: only html`` makes SafeHtml.
    const fake = { text: '<i>x</i>' } as unknown as string;
    expect(html`${fake}`.text).toBe('[object Object]');
  });
});

describe('console tokens and cookies', () => {
  it('compares tokens in constant time and reads cookies', () => {
    expect(sameToken('abc', 'abc')).toBe(true);
    expect(sameToken('abc', 'abd')).toBe(false);
    expect(sameToken('abc', 'abcd')).toBe(false);
    expect(readCookie('a=1; __Host-vigil_console=xyz; b=2', '__Host-vigil_console')).toBe('xyz');
    expect(readCookie('a=1', '__Host-vigil_console')).toBeUndefined();
    expect(readCookie(undefined, 'a')).toBeUndefined();
  });
});

describe('console config', () => {
  const base = {
    database: { url: 'postgres://x' },
    nats: { servers: ['tls://localhost:4222'], tls: { caFile: 'a', certFile: 'b', keyFile: 'c' } },
    auth: { jwksFile: '/dev/null' },
  };
  const oidc = {
    issuer: 'https://idp.example.com',
    clientId: 'vigil',
    redirectUrl: 'https://vigil.example.com/console/auth/callback',
  };

  it('is off by default; enabled needs oidc; unknown keys, plain http off loopback and a foreign callback path are refused', () => {
    expect(parseCloudConfig(base).console).toMatchObject({ enabled: false, cookieSecure: true });
    expect(parseCloudConfig({ ...base, console: { enabled: true, oidc } }).console.oidc?.scopes).toEqual([
      'openid',
      'vigil',
    ]);
    expect(() => parseCloudConfig({ ...base, console: { enabled: true } })).toThrow(/console\.oidc/);
    expect(() => parseCloudConfig({ ...base, console: { enabled: true, oidc, colour: 'red' } })).toThrow(
      /colour/,
    );
    expect(() =>
      parseCloudConfig({
        ...base,
        console: { enabled: true, oidc: { ...oidc, issuer: 'http://idp.example.com' } },
      }),
    ).toThrow(/issuer/);
    expect(() =>
      parseCloudConfig({
        ...base,
        console: { enabled: true, oidc: { ...oidc, redirectUrl: 'https://vigil.example.com/elsewhere' } },
      }),
    ).toThrow(/redirectUrl/);
    expect(() =>
      parseCloudConfig({ ...base, api: { enabled: false }, console: { enabled: true, oidc } }),
    ).toThrow(/console\.enabled/);
  });
});

describe('console development login (./dev up only)', () => {
  const base = {
    database: { url: 'postgres://x@localhost/x' },
    nats: { servers: ['tls://localhost:1'], tls: { caFile: 'x', certFile: 'x', keyFile: 'x' } },
    auth: { jwksFile: 'x' },
  };
  const devConsole = {
    enabled: true,
    cookieSecure: false,
    devLogin: { enabled: true, tenant: 'dev', origin: 'http://127.0.0.1:8080' },
  };

  it('is accepted on a loopback listener with a non-Secure cookie, as ./dev up writes it', () => {
    const c = parseCloudConfig({ ...base, http: { host: '127.0.0.1', port: 8080 }, console: devConsole });
    expect(c.console.devLogin).toEqual({ enabled: true, tenant: 'dev', origin: 'http://127.0.0.1:8080' });
    // Off unless asked for.
    expect(parseCloudConfig(base).console.devLogin.enabled).toBe(false);
  });

  it('is refused on a non-loopback listener, with a Secure cookie, or without an origin', () => {
    expect(() => parseCloudConfig({ ...base, http: { host: '0.0.0.0' }, console: devConsole })).toThrow(
      /development login is for \.\/dev up only/,
    );
    expect(() =>
      parseCloudConfig({
        ...base,
        http: { host: '127.0.0.1' },
        console: { ...devConsole, cookieSecure: true },
      }),
    ).toThrow(/development login is for \.\/dev up only/);
    expect(() =>
      parseCloudConfig({
        ...base,
        console: { ...devConsole, devLogin: { enabled: true, origin: 'https://console.example.com' } },
      }),
    ).toThrow(/loopback/);
    expect(() =>
      parseCloudConfig({ ...base, console: { ...devConsole, devLogin: { enabled: true } } }),
    ).toThrow(/origin/);
  });

  it('cannot be turned on in the production configs we ship (infra/k8s overlays)', () => {
    for (const overlay of ['ha', 'single-node']) {
      const file = new URL(`../../infra/k8s/overlays/${overlay}/cloud.json`, import.meta.url);
      const prod = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
      const parsed = parseCloudConfig(prod);
      expect(parsed.console.devLogin.enabled).toBe(false);
      const consoleSection = (prod.console ?? {}) as Record<string, unknown>;
      expect(() =>
        parseCloudConfig({
          ...prod,
          console: { ...consoleSection, enabled: true, cookieSecure: false, devLogin: devConsole.devLogin },
        }),
      ).toThrow(/development login is for \.\/dev up only/);
    }
  });
});

describe('console nav: the pages a principal may open, by each page’s own Cedar question', () => {
  const cedar = createCedarAuthorizer({ log: pino({ level: 'silent' }) });
  const who = (roles: string[], sites?: string[]): Principal => ({
    subject: `${roles.join('+')}@acme`,
    tenant: 'acme',
    roles,
    ...(sites ? { sites } : {}),
  });
  const pages = async (p: Principal) => [...(await allowedPages(cedar, p))].sort();

  it('links a viewer to fleet, events and rollouts only; an admin to every page; a site-scoped user to its site', async () => {
    expect(await pages(who(['viewer']))).toEqual(['events', 'fleet', 'rollouts']);
    expect(await pages(who(['operator']))).toEqual(['dead-letters', 'events', 'fleet', 'rollouts']);
    expect(await pages(who(['admin']))).toEqual([
      'audit',
      'dead-letters',
      'events',
      'fleet',
      'rollouts',
      'webhooks',
    ]);
    expect(await pages(who(['installer']))).toEqual(['fleet']);
    // Tenant-wide pages (rollouts, alerts, webhooks, the audit log) are never a site-scoped user's.
    expect(await pages(who(['admin'], ['hq']))).toEqual(['events', 'fleet']);
    expect(await pages(who(['nobody']))).toEqual([]);
  });

  it('asks each question once per request: the nav, the guard and the controls share the answers', async () => {
    let calls = 0;
    const counting: Authorizer = {
      authorize: (p, a, r) => {
        calls++;
        return cedar.authorize(p, a, r);
      },
    };
    const res = { locals: {} } as unknown as Response;
    const viewer = who(['viewer']);
    const authz = requestAuthorizer(res, counting);
    expect(requestAuthorizer(res, counting)).toBe(authz);
    await allowedPages(authz, viewer);
    expect(calls).toBe(6);
    await allowedPages(authz, viewer);
    const write = await authz.authorize(viewer, 'rollouts:write', { type: 'rollouts', tenant: 'acme' });
    expect(write.allowed).toBe(false);
    expect(calls).toBe(7);
    // Another principal is another question; another request starts afresh.
    await allowedPages(authz, who(['admin']));
    expect(calls).toBe(13);
    await allowedPages(requestAuthorizer({ locals: {} } as unknown as Response, counting), viewer);
    expect(calls).toBe(19);
  });
});

describe('console rollout form: a refusal is said next to the fields it names', () => {
  it('maps the API body paths to the form fields', () => {
    expect(formFieldOf('target.id')).toBe('site');
    expect(formFieldOf('target')).toBe('scope');
    expect(formFieldOf('body')).toBe('document');
    expect(formFieldOf('body.retention.eventDays')).toBe('document');
    expect(formFieldOf('spec.canary')).toBe('canary');
    expect(formFieldOf('spec.waves')).toBe('waves');
    expect(formFieldOf('spec.waves.1')).toBe('waves');
    expect(formFieldOf('spec.gates.applied_ratio')).toBeUndefined();
  });

  it('sorts the issues of a real validation problem (the API body schema) to their fields', () => {
    let err: unknown;
    try {
      parseOrThrow(
        createRolloutBody,
        { target: { scope: 'site', id: 'bad site' }, body: {}, spec: { canary: 0, waves: [50, 20] } },
        'body',
      );
    } catch (e) {
      err = e;
    }
    const { problem } = toProblem(err, '/console/rollouts');
    expect(problem.status).toBe(400);
    const r = refusalOf(problem, formFieldOf);
    expect(r.detail).toBe(problem.detail);
    expect(Object.keys(r.fields).sort()).toEqual(['canary', 'site', 'waves']);
    expect(r.fields.waves).toMatch(/strictly increasing/);
    expect(r.other).toEqual([]);
  });
});
