import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseCloudConfig } from '../src/config/load.js';
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
