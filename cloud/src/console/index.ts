import type { IncomingMessage } from 'node:http';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { AuditLog } from '../audit/audit-log.js';
import type { Authorizer } from '../auth/authorize.js';
import type { Principal } from '../auth/principal.js';
import type { CloudConfig } from '../config/schema.js';
import type { HttpMount } from '../api/http.js';
import type { MediaRepository } from '../media/repository.js';
import type { MediaStore } from '../media/store.js';
import type { DeviceRevoker } from '../fleet/revocation.js';
import type { Database } from '../storage/tables.js';
import { OidcClient } from './oidc.js';
import { createConsoleRouter, type ConsoleDeps } from './router.js';
import { expectedOrigin, readCookie, sessionCookieName } from './security.js';
import { SessionStore } from './session.js';

export interface ConsoleMount {
  mount: HttpMount;
  /**
   * The principal of a console session for a websocket upgrade (GET /v1/stream from the events page): the
   * session cookie, and an Origin of this console (a cross-site page cannot open the stream with the
   * user's cookie). Undefined otherwise; `expiresAt` closes the stream when the session ends.
   */
  streamPrincipal: (req: IncomingMessage) => Promise<{ principal: Principal; expiresAt: number } | undefined>;
}

export interface ConsoleStartDeps {
  db: Kysely<Database>;
  authorizer: Authorizer;
  log: Logger;
  metrics: Registry;
  audit: AuditLog;
  now: () => Date;
  media: { repository: MediaRepository; store: MediaStore | undefined };
  revoker: DeviceRevoker;
  alerts: ConsoleDeps['alerts'];
  webhooks: ConsoleDeps['webhooks'];
}

/** The console (config `console`), or undefined when it is disabled. */
export function createConsole(
  config: Pick<CloudConfig, 'console' | 'api' | 'fleet'>,
  deps: ConsoleStartDeps,
): ConsoleMount | undefined {
  const c = config.console;
  const devLogin = c.devLogin.enabled ? c.devLogin : undefined;
  if (!c.enabled || (c.oidc === undefined && devLogin === undefined)) return undefined;
  const cookie = { secure: c.cookieSecure };
  // The schema makes sure one of them is there (the dev origin is required without oidc).
  const origin = c.oidc ? expectedOrigin(c.oidc.redirectUrl) : devLogin!.origin!;
  const sessions = new SessionStore(
    deps.db,
    {
      ttlMs: c.sessionTtlSeconds * 1000,
      maxSessions: c.maxSessions,
      maxPerUser: c.maxSessionsPerUser,
      maxPending: c.maxSessions,
    },
    () => deps.now().getTime(),
  );
  const router = createConsoleRouter({
    ...deps,
    maxPageSize: config.api.maxPageSize,
    offlineAfterSeconds: config.fleet.offlineAfterSeconds,
    sessions,
    oidc: c.oidc && new OidcClient(c.oidc),
    devLoginTenant: devLogin?.tenant,
    cookie,
    origin,
  });
  return {
    mount: { path: '/console', handler: router },
    streamPrincipal: async (req) => {
      if (req.headers.origin !== origin) return undefined;
      const s = await sessions.get(readCookie(req.headers.cookie, sessionCookieName(cookie)));
      return s && { principal: s.principal, expiresAt: s.expiresAt };
    },
  };
}
