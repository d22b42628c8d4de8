import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { createRoleAuthorizer, type Authorizer } from '../auth/authorize.js';
import { createTokenVerifier } from '../auth/jwt.js';
import type { CloudConfig } from '../config/schema.js';
import type { DeviceRevoker } from '../fleet/revocation.js';
import type { Database } from '../storage/tables.js';
import type { HttpMount } from './http.js';
import { createApiRouter } from './router.js';

export interface ApiMountDeps {
  db: Kysely<Database>;
  log: Logger;
  metrics: Registry;
  /** The policy decision point; default: {@link createRoleAuthorizer} (role-based, default deny). */
  authorizer?: Authorizer | undefined;
  /** The cloud clock (device status is derived from it); default: the system clock. */
  now?: (() => Date) | undefined;
  revoker?: DeviceRevoker | undefined;
}

/**
 * The /v1 API as an HTTP mount for createHttpApp, or nothing when `api.enabled` is false. Reads the JWKS
 * file now, so a bad `auth` config fails the start (ConfigError, exit 78), not the first request.
 */
export function createApiMounts(
  config: Pick<CloudConfig, 'api' | 'auth' | 'fleet'>,
  deps: ApiMountDeps,
): HttpMount[] {
  if (!config.api.enabled) return [];
  const router = createApiRouter({
    db: deps.db,
    verifier: createTokenVerifier(config.auth),
    authorizer: deps.authorizer ?? createRoleAuthorizer(),
    log: deps.log.child({ component: 'api' }),
    metrics: deps.metrics,
    maxPageSize: config.api.maxPageSize,
    offlineAfterSeconds: config.fleet.offlineAfterSeconds,
    now: deps.now ?? (() => new Date()),
    revoker: deps.revoker,
  });
  return [{ path: '/v1', handler: router }];
}
