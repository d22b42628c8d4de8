import express, { type ErrorRequestHandler, type Router } from 'express';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { toProblem } from '../api/problem.js';
import { mountMediaRoutes } from '../media/routes.js';
import type { MediaRepository } from '../media/repository.js';
import type { MediaStore } from '../media/store.js';
import type { DeviceRevoker } from '../fleet/revocation.js';
import { navOf, type PageDeps } from './context.js';
import { CsrfError, LoginError } from './errors.js';
import { html } from './html.js';
import { layout } from './layout.js';
import type { OidcClient } from './oidc.js';
import { mountAuditPage } from './pages/audit.js';
import { mountDevicePage } from './pages/device.js';
import { mountEventPages } from './pages/events.js';
import { mountFleetPage } from './pages/fleet.js';
import { mountRolloutPages } from './pages/rollouts.js';
import { mountDeadLetterPages, type DeadLetterDeps } from './pages/dead-letters.js';
import { mountWebhookPages, type WebhookPageDeps } from './pages/webhooks.js';
import {
  clearSessionCookie,
  consoleSession,
  readCookie,
  requireCsrf,
  requireSession,
  securityHeaders,
  setSessionCookie,
  type CookieSettings,
} from './security.js';
import type { Session, SessionStore } from './session.js';
import { mountStatic } from './static.js';
import { mountDevLogin } from './dev-login.js';

export interface ConsoleDeps extends Omit<PageDeps, 'assets'> {
  metrics: Registry;
  sessions: SessionStore;
  /** The identity provider; undefined when only the development login is configured. */
  oidc: OidcClient | undefined;
  /** The development login's tenant (config console.devLogin, `./dev up` only); undefined: off. */
  devLoginTenant?: string | undefined;
  cookie: CookieSettings;
  /** This console's origin (scheme://host:port), from the configured redirect URL. */
  origin: string;
  media: { repository: MediaRepository; store: MediaStore | undefined };
  revoker: DeviceRevoker;
  /** The API's alert store (dead letters) and config alerts.senderDomain. */
  alerts: DeadLetterDeps['alerts'];
  /** The API's webhook store and config integrations' URL policy. */
  webhooks: WebhookPageDeps['webhooks'];
}

/** Bounded form bodies: the largest is a rollout's config document. */
export const CONSOLE_BODY_LIMIT = '256kb';
const LOGIN_COOKIE = 'vigil_console_login';

/** Only a path inside the console may be returned to after login (no open redirect). */
function safeReturn(v: unknown): string {
  return typeof v === 'string' && /^\/console(\/[A-Za-z0-9/_?=&%.-]*)?$/.test(v) && v.length <= 512
    ? v
    : '/console';
}

/**
 * The web console under /console: login (OpenID Connect), pages, and the audited media route for thumbnails.
 * Every page asks the same authorizer as the API; every POST passes the CSRF check first.
 */
export function createConsoleRouter(deps: ConsoleDeps): Router {
  const log: Logger = deps.log.child({ component: 'console' });
  const logins = new Counter({
    name: 'vigil_cloud_console_logins_total',
    help: 'Console logins by result (ok, state, exchange, claims, provider)',
    labelNames: ['result'],
    registers: [deps.metrics],
  });
  const csrfRefused = new Counter({
    name: 'vigil_cloud_console_csrf_refused_total',
    help: 'State-changing console requests refused by the CSRF check, by reason (origin, token)',
    labelNames: ['reason'],
    registers: [deps.metrics],
  });
  const router = express.Router();
  router.use(securityHeaders());
  const assets = mountStatic(router);
  const pageDeps: PageDeps = { ...deps, log, assets };
  const bare = (title: string, body: ReturnType<typeof html>): string =>
    layout({ title, page: undefined, principal: undefined, csrf: undefined, nav: new Set(), assets, body });

  if (deps.devLoginTenant !== undefined)
    mountDevLogin(router, {
      sessions: deps.sessions,
      cookie: deps.cookie,
      origin: deps.origin,
      tenant: deps.devLoginTenant,
      log,
      logins,
      bare,
    });
  const oidc = deps.oidc;

  router.get('/login', async (req, res) => {
    if (oidc === undefined) {
      res.redirect(303, '/console/dev-login');
      return;
    }
    const login = await deps.sessions.beginLogin(safeReturn(req.query.return_to));
    const url = await oidc.authorizationUrl(login);
    // Binds the login to this browser: a callback with someone else's state (login CSRF) finds no cookie.
    res.cookie(LOGIN_COOKIE, login.state, {
      httpOnly: true,
      secure: deps.cookie.secure,
      sameSite: 'lax',
      path: '/console/auth',
      maxAge: 10 * 60_000,
    });
    res.redirect(303, url.href);
  });

  router.get('/auth/callback', async (req, res) => {
    const state = typeof req.query.state === 'string' ? req.query.state : undefined;
    const bound = readCookie(req.headers.cookie, LOGIN_COOKIE);
    res.clearCookie(LOGIN_COOKIE, { path: '/console/auth' });
    const login = state !== undefined && bound === state ? await deps.sessions.takeLogin(state) : undefined;
    if (login === undefined || oidc === undefined)
      throw new LoginError('state', 'unknown, expired or foreign login state');
    const { principal, idToken } = await oidc.finish(new URL(req.originalUrl, deps.origin), login);
    const session = await deps.sessions.create(principal, idToken);
    setSessionCookie(res, deps.cookie, session);
    logins.inc({ result: 'ok' });
    log.info({ sub: principal.subject, tenant: principal.tenant, roles: principal.roles }, 'console login');
    res.redirect(303, login.returnTo);
  });

  router.get('/logged-out', (_req, res) => {
    res
      .type('html')
      .send(bare('Logged out', html`<p>You are logged out. <a href="/console/login">Log in</a></p>`));
  });

  // Everything below needs a session; state-changing requests a CSRF token and our Origin too.
  router.use(requireSession(deps.sessions, deps.cookie));
  router.use(express.urlencoded({ extended: false, limit: CONSOLE_BODY_LIMIT, parameterLimit: 100 }));
  router.use(requireCsrf(deps.origin, csrfRefused));

  router.post('/logout', async (_req, res) => {
    await deps.sessions.delete(consoleSession(res).id);
    clearSessionCookie(res, deps.cookie);
    res.redirect(303, '/console/logged-out');
  });

  mountFleetPage(router, pageDeps);
  mountDevicePage(router, { ...pageDeps, revoker: deps.revoker });
  mountEventPages(router, pageDeps);
  mountRolloutPages(router, pageDeps);
  mountDeadLetterPages(router, { ...pageDeps, alerts: deps.alerts });
  mountWebhookPages(router, { ...pageDeps, webhooks: deps.webhooks });
  mountAuditPage(router, pageDeps);

  // Snapshots: the API's own media route (its decisions, and `media.read` on the audit log before any byte),
  // with the session's principal where the API has the bearer token's.
  const media = express.Router();
  media.use((_req, res, next) => {
    res.locals.principal = consoleSession(res).principal;
    next();
  });
  mountMediaRoutes(media, {
    db: deps.db,
    repository: deps.media.repository,
    store: deps.media.store,
    audit: deps.audit,
    authorizer: deps.authorizer,
    log,
    now: deps.now,
  });
  router.use(media);

  const onError: ErrorRequestHandler = (err: unknown, req, res, _next) => {
    if (err instanceof LoginError) logins.inc({ result: err.reason });
    let status: number;
    let message: string;
    if (err instanceof CsrfError) [status, message] = [403, err.message];
    else if (err instanceof LoginError) {
      log.warn({ reason: err.reason, err: err.message }, 'console login failed');
      [status, message] = [
        err.reason === 'provider' ? 503 : 401,
        'The login did not complete. Please try again.',
      ];
    } else {
      const p = toProblem(err, req.path);
      if (p.internal) log.error({ err, path: req.path }, 'console: request failed');
      status = p.problem.status;
      message = p.problem.detail ?? p.problem.title;
      if (p.problem.errors)
        message += ` ${p.problem.errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`;
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const title = status === 403 ? 'Not allowed' : status === 404 ? 'Not found' : 'Something went wrong';
    const body = html`<p role="alert">${message}</p>
      <p><a href="/console">Back to the console</a></p>`;
    const session = (res.locals as { consoleSession?: Session }).consoleSession;
    const send = (page: string) => {
      if (!res.headersSent) res.status(status).type('html').send(page);
    };
    if (session === undefined) {
      send(bare(title, body));
      return;
    }
    // A signed-in user keeps the nav (only the pages Cedar lets it open) and the logout form.
    void navOf(res, pageDeps)
      .then((nav) =>
        layout({
          title,
          page: undefined,
          principal: session.principal,
          csrf: session.csrf,
          nav,
          assets,
          body,
        }),
      )
      // The authorizer itself failing (the error being shown, maybe): the page without the nav.
      .catch(() => bare(title, body))
      .then(send);
  };
  router.use(onError);
  return router;
}
