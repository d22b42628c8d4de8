import express, { type Router } from 'express';
import type { Logger } from 'pino';
import type { Counter } from 'prom-client';
import { CsrfError } from './errors.js';
import { html } from './html.js';
import { setSessionCookie, type CookieSettings } from './security.js';
import type { SessionStore } from './session.js';

/** The roles the development login offers (the Cedar policies give each its usual rights). */
export const DEV_LOGIN_ROLES = ['admin', 'operator', 'viewer', 'auditor'] as const;

export interface DevLoginDeps {
  sessions: SessionStore;
  cookie: CookieSettings;
  origin: string;
  tenant: string;
  log: Logger;
  logins: Counter<'result'>;
  /** Renders a page without a session (router.ts). */
  bare: (title: string, body: ReturnType<typeof html>) => string;
}

/**
 * The development login of `./dev up` (config console.devLogin; the schema refuses it unless the cloud listens on
 * loopback with a non-Secure cookie): GET /console/dev-login offers a role of the dev tenant, POST makes a
 * session for `<role>@<tenant>` exactly as an OIDC login would (same store, cookie, CSRF token, bounds). The POST
 * must come from this console's Origin (no login CSRF). Every use is logged at warn.
 */
export function mountDevLogin(router: Router, deps: DevLoginDeps): void {
  deps.log.warn(
    { tenant: deps.tenant },
    'console development login enabled (./dev up): anyone on this machine can log in',
  );
  router.get('/dev-login', (_req, res) => {
    res.type('html').send(
      deps.bare(
        'Development login',
        html`<p>
            <strong>Development only</strong> (./dev up): log in to tenant <code>${deps.tenant}</code> with a
            role, no identity provider. A deployed cloud refuses this setting.
          </p>
          <form method="post" action="/console/dev-login" class="dev-login">
            <fieldset>
              <legend>Role</legend>
              ${DEV_LOGIN_ROLES.map(
                (r, i) =>
                  html`<label
                    ><input type="radio" name="role" value="${r}" ${i === 0 ? html`checked` : ''} />
                    ${r}</label
                  >`,
              )}
            </fieldset>
            <button type="submit">Log in</button>
          </form>`,
      ),
    );
  });
  router.post(
    '/dev-login',
    express.urlencoded({ extended: false, limit: '1kb', parameterLimit: 5 }),
    async (req, res) => {
      if (req.get('origin') !== deps.origin) throw new CsrfError('origin');
      const role = (req.body as Record<string, unknown>).role;
      const chosen = DEV_LOGIN_ROLES.find((r) => r === role) ?? 'viewer';
      const principal = { subject: `${chosen}@${deps.tenant}`, tenant: deps.tenant, roles: [chosen] };
      const session = await deps.sessions.create(principal, undefined);
      setSessionCookie(res, deps.cookie, session);
      deps.logins.inc({ result: 'dev' });
      deps.log.warn({ sub: principal.subject, tenant: principal.tenant }, 'console development login');
      res.redirect(303, '/console');
    },
  );
}
