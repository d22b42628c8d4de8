import express, { type RequestHandler, type Router } from 'express';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { Counter, Histogram, type Registry } from 'prom-client';
import { AuditLog } from '../audit/audit-log.js';
import type { Action, Authorizer, Resource } from '../auth/authorize.js';
import type { TokenVerifier } from '../auth/jwt.js';
import { EnrollmentTokens } from '../fleet/enrollment.js';
import type { ReadHeavy } from '../storage/replica.js';
import type { Database } from '../storage/tables.js';
import { authenticate, principalOf, requireAllowed } from './authenticate.js';
import { DOCS_CONTENT_SECURITY_POLICY, renderDocsPage } from './docs-page.js';
import { idempotency, IdempotencyStore, type IdempotencyOptions } from './idempotency.js';
import {
  countRejections,
  limitJsonDepth,
  limitUrlLength,
  rejectBodyFields,
  rejectionCounter,
  rejectQueryParameters,
  requireJsonBody,
} from './limits.js';
import {
  apiOperations,
  buildOpenApiDocument,
  isIdempotent,
  type ApiOperation,
  type AuthorizeFirstContext,
} from './openapi.js';
import { DeviceRevoker } from '../fleet/revocation.js';
import { DeviceReader } from './device-store.js';
import { mountDeviceRoutes } from './devices.js';
import { mountEnrollmentTokenRoutes } from './enrollment-tokens.js';
import { EventReader } from './event-store.js';
import { mountEventRoutes } from './events.js';
import { EventReviews } from '../events/reviews.js';
import { methodNotAllowed, notFoundHandler } from './problem.js';
import { rejectHostileText, requireUtf8Body } from './request-text.js';
import { mountRolloutRoutes } from './rollouts.js';
import { ConfigIssuer } from '../config-ota/issuer.js';
import { ModelStore } from '../config-ota/models.js';
import { mountReleaseRoutes, type Releases } from '../releases/routes.js';
import { mountConfigRoutes } from '../config-ota/routes.js';
import { MediaRepository } from '../media/repository.js';
import { mountMediaRoutes } from '../media/routes.js';
import { mountAuditRoutes } from '../audit/routes.js';
import type { MediaStore } from '../media/store.js';
import { mountWebhookRoutes } from '../integrations/routes.js';
import { mountAlertRoutes } from '../alerts/routes.js';
import { AlertStore } from '../alerts/store.js';
import type { UrlPolicy } from '../integrations/ssrf.js';
import { WebhookStore } from '../integrations/store.js';
import type { RetentionDefaults } from '../privacy/policies.js';
import { ErasureStore } from '../privacy/erasure-store.js';
import type { ExportKey } from '../privacy/evidence.js';
import type { ExportLimits } from '../privacy/export.js';
import { mountErasureRoutes } from '../privacy/erasure-routes.js';
import { mountPrivacyRoutes } from '../privacy/routes.js';

/** Largest request body the API parses (JSON bodies, e.g. POST /v1/enrollment-tokens). */
export const API_BODY_LIMIT = '256kb';

export interface ApiDeps {
  db: Kysely<Database>;
  /** Where the events and devices lists run (config database.replicaUrl: storage/replica.ts); default: db. */
  readHeavy?: ReadHeavy | undefined;
  verifier: TokenVerifier;
  authorizer: Authorizer;
  log: Logger;
  metrics: Registry;
  /** Largest `limit` a list accepts (config api.maxPageSize). */
  maxPageSize: number;
  /** Config fleet.offlineAfterSeconds: device status is derived from it at read time (fleet/status.ts). */
  offlineAfterSeconds: number;
  /** The cloud clock. */
  now: () => Date;
  /** Revokes devices (DB + NATS); default: database only (no NATS account push). */
  revoker?: DeviceRevoker | undefined;
  /** The audit log (admin actions, authorization denials); default: one on `db`. */
  audit?: AuditLog | undefined;
  /** Per-tenant and per-client rate limits (api/ratelimit.ts), run right after authentication; default: none. */
  rateLimit?: RequestHandler | undefined;
  /** Desired device configs (config-ota); default: one on `db` that cannot sign (issuing is a 503). */
  configs?: ConfigIssuer | undefined;
  /** The agent release repository; default: none configured (503). */
  releases?: Releases | undefined;
  /** The models store; default: none configured (503). */
  models?: ModelStore | undefined;
  /** The media index and store (media/); default: an index on `db` and no store (reads are a 503). */
  media?: { repository: MediaRepository; store: MediaStore | undefined } | undefined;
  /** Webhooks (integrations/): the store the outbox writer shares, and config integrations' URL policy; default: a
   * store on `db` and https-only, public-addresses-only URLs. */
  webhooks?: { store: WebhookStore; policy: UrlPolicy } | undefined;
  alerts?: { store: AlertStore } | undefined;
  /** config alerts.senderDomain (CAP sender of operator cancels). */
  senderDomain?: string | undefined;
  /** Retention (privacy/): the config defaults per data class; default: none (everything kept). */
  retention?: { defaults: RetentionDefaults } | undefined;
  /**
   * Erasure and export (privacy/): the export signing key and limits (config privacy.export), and the erasure
   * job's nudge; default: no key (exports are a 503), default limits, no job to nudge (it polls).
   */
  privacy?:
    | {
        exportKey: ExportKey | undefined;
        exportLimits: ExportLimits;
        nudge: () => void;
        /** The edge retention re-issue job's nudge (privacy/edge-sync.ts); default none (it polls). */
        nudgeEdgeSync?: (() => void) | undefined;
      }
    | undefined;
  /** Config api.idempotency (Idempotency-Key on POST and PATCH); default: 24 h, 60 s. */
  idempotency?: IdempotencyOptions | undefined;
}

/** Marks the middleware that the router adds in front of a route from the registry (api/openapi.ts). */
export const OPERATION_GUARD = Symbol.for('vigil.api.operationGuard');
function guard(handler: RequestHandler): RequestHandler {
  const wrapped: RequestHandler = (req, res, next) => handler(req, res, next);
  return Object.assign(wrapped, { [OPERATION_GUARD]: true });
}

/** Route middleware: the operation's first authorization question (see the loop in createApiRouter). */
function authorizeFirst(
  authorizer: Authorizer,
  log: Logger,
  audit: AuditLog,
  action: Action,
  resource: (ctx: AuthorizeFirstContext) => Resource,
  params: ApiOperation['params'],
): RequestHandler {
  return async (req, res, next) => {
    try {
      // Invalid path parameters: the handler answers 400 (after its own question); idempotency skips them too.
      if (params && !params.safeParse(req.params).success) {
        next();
        return;
      }
      const principal = principalOf(res);
      const body: unknown = req.body;
      const ctx = { tenant: principal.tenant, params: req.params as Record<string, string>, body };
      await requireAllowed(authorizer, log, principal, action, resource(ctx), audit);
      next();
    } catch (err) {
      next(err);
    }
  };
}

/**
 * The /v1 REST API: every route but its description (/openapi.json, /docs) authenticated (bearer JWT),
 * authorized through the Authorizer seam and scoped to the caller's tenant; responses are never cached. Errors propagate to the app's problem+json
 * error handler (api/problem.ts), which createHttpApp installs last.
 */
export function createApiRouter(deps: ApiDeps): Router {
  const requests = new Counter({
    name: 'vigil_cloud_api_requests_total',
    help: 'API requests by method, route template and status code',
    labelNames: ['method', 'route', 'status'],
    registers: [deps.metrics],
  });
  const duration = new Histogram({
    name: 'vigil_cloud_api_request_duration_seconds',
    help: 'API request duration by method and route template',
    labelNames: ['method', 'route'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [deps.metrics],
  });

  const audit = deps.audit ?? new AuditLog(deps.db, deps.log, deps.metrics, deps.now);
  const router = express.Router();
  router.use((req, res, next) => {
    const end = duration.startTimer();
    const base = req.baseUrl; // express resets it when an error leaves the router
    res.once('finish', () => {
      // The route template (bounded label values), never the raw path.
      const routePath = (req.route as { path?: unknown } | undefined)?.path;
      const route = typeof routePath === 'string' ? `${base}${routePath}` : 'unmatched';
      requests.inc({ method: req.method, route, status: String(res.statusCode) });
      end({ method: req.method, route });
    });
    res.set('Cache-Control', 'no-store');
    next();
  });
  // Limits (api/limits.ts): refused requests are counted by reason.
  const rejected = rejectionCounter(deps.metrics);
  router.use(limitUrlLength());

  // The API description, generated from the route registry and its zod schemas; public.
  const operations = apiOperations(deps.maxPageSize);
  const openApi = buildOpenApiDocument(operations, { version: '1.0.0' });
  const docsPage = renderDocsPage(openApi);
  router
    .route('/openapi.json')
    .get(rejectQueryParameters, (_req, res) => {
      res.json(openApi);
    })
    .all(methodNotAllowed('GET', 'HEAD'));
  router
    .route('/docs')
    .get(rejectQueryParameters, (_req, res) => {
      res.set('Content-Security-Policy', DOCS_CONTENT_SECURITY_POLICY).type('html').send(docsPage);
    })
    .all(methodNotAllowed('GET', 'HEAD'));

  // Authenticate before parsing anything a caller sends.
  router.use(authenticate(deps.verifier, deps.log, deps.metrics));
  if (deps.rateLimit) router.use(deps.rateLimit);
  router.use(
    express.json({
      limit: API_BODY_LIMIT,
      type: ['application/json', 'application/*+json'],
      verify: requireUtf8Body,
    }),
  );
  router.use(limitJsonDepth());

  // In front of each authenticated route of the registry: text no route accepts (NUL, unpaired surrogates,
  // non-finite numbers: api/request-text.ts) refused before anything reads the request, no query parameters
  // or body where it takes none, and Idempotency-Key on POST and PATCH (api/idempotency.ts).
  const idempotencyStore = new IdempotencyStore(
    deps.db,
    deps.idempotency ?? { ttlSeconds: 86_400, inProgressTimeoutSeconds: 60 },
    deps.log,
    deps.now,
  );
  for (const op of operations) {
    if (op.mount !== '/v1' || op.authorization === null) continue;
    const guards: RequestHandler[] = [guard(rejectHostileText)];
    if (op.query === undefined) guards.push(guard(rejectQueryParameters));
    if (op.body === undefined) guards.push(guard(rejectBodyFields));
    else if (op.bodyContentType === undefined) guards.push(guard(requireJsonBody));
    // Authenticate, authorize, then replay: a stored response must never reach a caller the decision point
    // refuses now. Handlers authorize themselves too (and again with the loaded row); this first question is
    // the router's, so that a new POST/PATCH route cannot put its replay in front of its authorization.
    if (isIdempotent(op) && op.authorization !== 'authenticated') {
      const { action, resource } = op.authorization;
      if (resource === undefined)
        throw new Error(
          `operation ${op.operationId} takes an Idempotency-Key but its authorization declares no resource: ` +
            'the router must authorize before it replays (api/openapi.ts, OperationAuthorization.resource)',
        );
      guards.push(guard(authorizeFirst(deps.authorizer, deps.log, audit, action, resource, op.params)));
    }
    if (isIdempotent(op))
      guards.push(
        guard(
          idempotency(
            idempotencyStore,
            { params: op.params, withholdSuccessBody: op.withholdSuccessBody },
            deps.log,
          ),
        ),
      );
    router[op.method](op.path, ...guards);
  }
  const eventReader = new EventReader(deps.db, { readHeavy: deps.readHeavy, now: deps.now });
  mountEventRoutes(router, {
    events: eventReader,
    authorizer: deps.authorizer,
    log: deps.log,
    maxPageSize: deps.maxPageSize,
    reviews: new EventReviews({
      db: deps.db,
      // The primary: a review follows the event the caller just saw, never a lagging replica's.
      events: new EventReader(deps.db, { now: deps.now }),
      authorizer: deps.authorizer,
      log: deps.log,
      audit,
      now: deps.now,
    }),
  });
  mountEnrollmentTokenRoutes(router, {
    tokens: new EnrollmentTokens(deps.db, deps.log, deps.metrics),
    audit,
    authorizer: deps.authorizer,
    log: deps.log,
  });
  mountDeviceRoutes(router, {
    devices: new DeviceReader(deps.db, deps.offlineAfterSeconds, deps.now, deps.readHeavy),
    revoker: deps.revoker ?? new DeviceRevoker(deps.db, undefined, audit, deps.log, deps.now),
    audit,
    authorizer: deps.authorizer,
    log: deps.log,
    maxPageSize: deps.maxPageSize,
  });
  const configs =
    deps.configs ??
    new ConfigIssuer({ db: deps.db, log: deps.log, metrics: deps.metrics, now: deps.now, audit });
  mountConfigRoutes(router, {
    configs,
    models: deps.models ?? new ModelStore(undefined, 0),
    devices: new DeviceReader(deps.db, deps.offlineAfterSeconds, deps.now),
    audit,
    authorizer: deps.authorizer,
    log: deps.log,
  });
  mountMediaRoutes(router, {
    db: deps.db,
    repository: deps.media?.repository ?? new MediaRepository(deps.db),
    store: deps.media?.store,
    audit,
    authorizer: deps.authorizer,
    log: deps.log,
    now: deps.now,
  });
  mountAuditRoutes(router, {
    db: deps.db,
    authorizer: deps.authorizer,
    log: deps.log,
    maxPageSize: deps.maxPageSize,
  });
  mountRolloutRoutes(router, {
    db: deps.db,
    releases: deps.releases,
    configs,
    audit,
    authorizer: deps.authorizer,
    log: deps.log,
    now: deps.now,
  });
  mountReleaseRoutes(router, { releases: deps.releases, audit, authorizer: deps.authorizer, log: deps.log });
  mountWebhookRoutes(router, {
    store: deps.webhooks?.store ?? new WebhookStore(deps.db, deps.now),
    policy: deps.webhooks?.policy ?? { allowInsecureHttp: false, allowPrivateNetworks: false },
    audit,
    authorizer: deps.authorizer,
    log: deps.log,
  });
  mountAlertRoutes(router, {
    store: deps.alerts?.store ?? new AlertStore(deps.db, deps.now),
    policy: deps.webhooks?.policy ?? { allowInsecureHttp: false, allowPrivateNetworks: false },
    audit,
    authorizer: deps.authorizer,
    log: deps.log,
    senderDomain: deps.senderDomain ?? 'vigil.invalid',
    now: deps.now ?? (() => new Date()),
  });
  mountPrivacyRoutes(router, {
    db: deps.db,
    audit,
    authorizer: deps.authorizer,
    log: deps.log,
    defaults: deps.retention?.defaults ?? {
      event_metadata: null,
      redacted_media: null,
      personal_media: null,
    },
    now: deps.now ?? (() => new Date()),
    nudgeEdgeSync: deps.privacy?.nudgeEdgeSync,
  });
  mountErasureRoutes(router, {
    db: deps.db,
    erasures: new ErasureStore(deps.db, audit, deps.now),
    store: deps.media?.store,
    audit,
    authorizer: deps.authorizer,
    log: deps.log,
    now: deps.now,
    exportKey: deps.privacy?.exportKey,
    exportLimits: deps.privacy?.exportLimits ?? {
      maxBytes: 512 * 1024 * 1024,
      maxEvents: 10_000,
      maxMedia: 10_000,
    },
    nudge: deps.privacy?.nudge ?? (() => undefined),
  });
  router.use(notFoundHandler);
  router.use(countRejections(rejected));
  return router;
}
