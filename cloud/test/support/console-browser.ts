// Browser-test helpers for the web console: a real OpenID Connect provider (oidc-provider) and Debian's
// chromium driven by playwright-core, axe-core run inside the page, screenshots to cloud/test-output/console.
import { mkdirSync, readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Provider, { type Configuration } from 'oidc-provider';
import { chromium, type Browser, type Page } from 'playwright-core';

/** Who may log in at the test provider, with the claims the ID token carries (as a customer's IdP would map). */
export const ACCOUNTS: Readonly<Record<string, Record<string, unknown>>> = {
  'admin@acme': { tenant: 'acme', roles: ['admin'] },
  'viewer@acme': { tenant: 'acme', roles: ['viewer'] },
};

export const CLIENT_ID = 'vigil-console';
export const CLIENT_SECRET = 'console-test-secret-0123456789abcdef';

/** A real OpenID Connect provider on `port` (its dev login form takes any password). */
export async function startIdp(
  port: number,
  redirectUri: string,
): Promise<{ issuer: string; close(): Promise<void> }> {
  const issuer = `http://localhost:${port}`;
  const configuration: Configuration = {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        redirect_uris: [redirectUri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_post',
      },
    ],
    pkce: { required: () => true },
    scopes: ['openid', 'vigil'],
    claims: { openid: ['sub'], vigil: ['tenant', 'roles', 'sites'] },
    // The vigil claims go into the ID token itself (the console reads no userinfo).
    conformIdTokenClaims: false,
    cookies: { keys: ['console-test-cookie-key-0123456789'] },
    findAccount: (_ctx, id) => {
      const claims = ACCOUNTS[id];
      if (!claims) return undefined;
      return { accountId: id, claims: () => ({ sub: id, ...claims }) };
    },
  };
  const provider = new Provider(issuer, configuration);
  const server: Server = await new Promise((resolve) => {
    const s = provider.listen(port, () => resolve(s));
  });
  return { issuer, close: () => new Promise((r) => server.close(() => r())) };
}

export const CHROMIUM = '/usr/bin/chromium';

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** Logs in through the provider's form as `user`; ends back on the console. */
export async function login(page: Page, base: string, user: string): Promise<void> {
  await page.goto(`${base}/console`);
  await page.waitForSelector('input[name="login"]');
  await page.fill('input[name="login"]', user);
  await page.fill('input[name="password"]', 'any');
  await page.click('button[type="submit"]');
  // The consent prompt (first login of this account in this browser context).
  const consent = page.locator('button:has-text("Continue")');
  await Promise.race([
    page.waitForURL(/\/console/, { timeout: 20_000 }),
    consent.waitFor({ timeout: 20_000 }).then(() => consent.click()),
  ]);
  await page.waitForURL(new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/console`), {
    timeout: 20_000,
  });
}

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: number;
}

/** axe-core's serious and critical violations on the page (run through the DevTools protocol: the CSP stays). */
export async function seriousViolations(page: Page): Promise<AxeViolation[]> {
  await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate(async () => {
    const axe = (
      globalThis as unknown as {
        axe: {
          run(): Promise<{
            violations: Array<{ id: string; impact: string | null; help: string; nodes: unknown[] }>;
          }>;
        };
      }
    ).axe;
    const r = await axe.run();
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length }));
  });
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

export const SCREENSHOT_DIR = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'test-output',
  'console',
);

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOT_DIR, `${name}.png`), fullPage: true });
}
