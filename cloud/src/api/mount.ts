import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { AuditLog } from '../audit/audit-log.js';
import type { Authorizer } from '../auth/authorize.js';
import { createAuthorizerFromConfig } from '../auth/engine.js';
import { createTokenVerifier, type TokenVerifier } from '../auth/jwt.js';
import type { CloudConfig } from '../config/schema.js';
import type { DeviceRevoker } from '../fleet/revocation.js';
import type { ConfigIssuer } from '../config-ota/issuer.js';
import type { ModelStore } from '../config-ota/models.js';
import type { Releases } from '../releases/routes.js';
import type { MediaRepository } from '../media/repository.js';
import type { MediaStore } from '../media/store.js';
import type { ReadHeavy } from '../storage/replica.js';
import type { Database } from '../storage/tables.js';
import type { UrlPolicy } from '../integrations/ssrf.js';
import type { WebhookStore } from '../integrations/store.js';
import type { AlertStore } from '../alerts/store.js';
import { defaultsFromConfig } from '../privacy/policies.js';
import type { ApiDeps } from './router.js';
import type { HttpMount } from './http.js';
import { rateLimitMiddleware, type RateLimiter } from './ratelimit.js';
import { createApiRouter } from './router.js';

export interface ApiMountDeps {
  db: Kysely<Database>;
  /** Where the events and devices lists run (a fresh replica); default: db. */
  readHeavy?: ReadHeavy | undefined;
  log: Logger;
  metrics: Registry;
  /** The policy decision point; default: the one config `authz` names (Cedar unless told otherwise). */
  authorizer?: Authorizer | undefined;
  /** The cloud clock (device status is derived from it); default: the system clock. */
  now?: (() => Date) | undefined;
  revoker?: DeviceRevoker | undefined;
  audit?: AuditLog | undefined;
  configs?: ConfigIssuer | undefined;
  models?: ModelStore | undefined;
  releases?: Releases | undefined;
  media?: { repository: MediaRepository; store: MediaStore | undefined } | undefined;
  /** Bearer token verification; default: built from config `auth`. */
  verifier?: TokenVerifier | undefined;
  /** The webhook store shared with the outbox writer, and config integrations' URL policy. */
  webhooks?: { store: WebhookStore; policy: UrlPolicy } | undefined;
  /** The alert store shared with the commit hook. */
  alerts?: { store: AlertStore } | undefined;
  /** Erasure and export (privacy/). */
  privacy?: ApiDeps['privacy'];
  /** API rate limits (config rateLimit); default: none. */
  rateLimiter?: RateLimiter | undefined;
}

/**
 * The /v1 API as an HTTP mount for createHttpApp, or nothing when `api.enabled` is false. Reads the JWKS
 * file and the authorization policies now, so a bad `auth` or `authz` config fails the start (ConfigError,
 * exit 78), not the first request.
 */
export function createApiMounts(
  config: Pick<CloudConfig, 'api' | 'auth' | 'authz' | 'fleet' | 'alerts' | 'events' | 'media'>,
  deps: ApiMountDeps,
): HttpMount[] {
  if (!config.api.enabled) return [];
  const router = createApiRouter({
    db: deps.db,
    readHeavy: deps.readHeavy,
    verifier: deps.verifier ?? createTokenVerifier(config.auth),
    authorizer: deps.authorizer ?? createAuthorizerFromConfig(config.authz, deps.log, deps.metrics),
    log: deps.log.child({ component: 'api' }),
    metrics: deps.metrics,
    maxPageSize: config.api.maxPageSize,
    offlineAfterSeconds: config.fleet.offlineAfterSeconds,
    now: deps.now ?? (() => new Date()),
    revoker: deps.revoker,
    audit: deps.audit,
    rateLimit: deps.rateLimiter && rateLimitMiddleware(deps.rateLimiter),
    idempotency: config.api.idempotency,
    configs: deps.configs,
    models: deps.models,
    releases: deps.releases,
    media: deps.media,
    webhooks: deps.webhooks,
    alerts: deps.alerts,
    senderDomain: config.alerts.senderDomain,
    retention: { defaults: defaultsFromConfig(config) },
    privacy: deps.privacy,
  });
  return [{ path: '/v1', handler: router }];
}
