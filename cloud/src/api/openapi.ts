import { z } from 'zod';
import {
  createRolloutBody,
  listRolloutsQuery,
  rolloutListSchema,
  rolloutOperationBody,
  rolloutDevicePageSchema,
  rolloutDevicesQuery,
  rolloutPathParams,
  rolloutViewSchema,
} from './rollouts.js';
import type { Action, Resource } from '../auth/authorize.js';
import {
  createBody as createTokenBody,
  listQuery as listTokensQuery,
  tokenCollection,
} from './enrollment-tokens.js';
import { revokeBody } from './devices.js';
import { devicePathParams, listDevicesQuerySchema } from './devices-query.js';
import { eventPathParams } from './events.js';
import { eventReviewSchema } from '../events/reviews.js';
import { DEFAULT_PAGE_SIZE, listEventsQuerySchema } from './events-query.js';
import {
  IDEMPOTENCY_KEY_HEADER,
  IDEMPOTENT_REPLAYED_HEADER,
  MAX_IDEMPOTENCY_KEY_LENGTH,
} from './idempotency.js';
import { API_MAX_JSON_DEPTH, API_MAX_URL_LENGTH } from './limits.js';
import { configBodySchema } from '../config-ota/body.js';
import { eraseBody, erasedMediaSchema, mediaPathParams } from '../media/routes.js';
import { auditPageSchema, listAuditQuerySchema } from '../audit/routes.js';
import { alertOperations } from '../alerts/api-operations.js';
import { webhookOperations } from '../integrations/routes.js';
import { privacyOperations } from '../privacy/api.js';
import { releaseOperations } from '../releases/routes.js';
import { erasureOperations } from '../privacy/erasure-routes.js';
import {
  configDocumentViewSchema,
  configPathParams,
  deviceConfigViewSchema,
  issuedConfigViewSchema,
  modelListSchema,
  modelPathParams,
  modelUploadBody,
  modelViewSchema,
} from '../config-ota/routes.js';
import {
  createdEnrollmentTokenSchema,
  devicePageSchema,
  deviceViewSchema,
  enrollmentTokenListSchema,
  eventPageSchema,
  eventViewSchema,
  healthSchema,
  problemSchema,
  readinessSchema,
  revokeResultSchema,
} from './views.js';

/*
 * The route registry of the cloud's HTTP API and the OpenAPI 3.1 document built from it.
 *
 * Every route the server answers is declared here once, with the very zod schemas its handler validates with
 * (path parameters, query, body) and zod schemas of its responses (api/views.ts). The document is generated
 * from those (zod 4's z.toJSONSchema, JSON Schema 2020-12 = OpenAPI 3.1's dialect: `io: 'input'` for what a
 * request may carry, `io: 'output'` for what a response holds). The router (api/router.ts) reads the same
 * registry to refuse query parameters on routes that take none and to put Idempotency-Key on POST and PATCH.
 * cloud/test/api-openapi.test.ts checks that the express routes and the document's operations are the same set,
 * and lints the document with Redocly.
 */

export type HttpMethod = 'get' | 'post' | 'patch' | 'put' | 'delete';

export interface OperationSuccess {
  status: number;
  description: string;
  /** JSON body; absent for other content (see contentType). */
  schema?: z.ZodType | undefined;
  /** Default application/json. */
  contentType?: string | undefined;
}

/** What the router hands {@link OperationAuthorization.resource}: the caller's tenant and the raw request. */
export interface AuthorizeFirstContext {
  tenant: string;
  /** Path parameters that passed the operation's `params` schema. */
  params: Readonly<Record<string, string>>;
  /** The parsed JSON body, not validated yet (the decision must not depend on its validity). */
  body: unknown;
}

export interface OperationAuthorization {
  action: Action;
  roles: readonly string[];
  /**
   * The resource of the handler's first authorization question (tenant and id only, never a loaded row).
   * Required on POST and PATCH: the router asks it before Idempotency-Key replay, so that a stored response
   * never reaches a caller the decision point refuses (createApiRouter refuses to start without it).
   */
  resource?: ((ctx: AuthorizeFirstContext) => Resource) | undefined;
}

export interface ApiOperation {
  method: HttpMethod;
  /** Where the router that serves it is mounted: the /v1 API, or the operational endpoints at the root. */
  mount: '/v1' | '';
  /** Express path under the mount, e.g. `/events/:id`. */
  path: string;
  operationId: string;
  summary: string;
  description?: string | undefined;
  tag: string;
  /**
   * What the handler asks the authorizer (and the roles the default Cedar policies grant it to, inside the
   * caller's tenant; the API test checks them against the policies). Null: no authentication at all.
   */
  authorization: OperationAuthorization | 'authenticated' | null;
  params?: z.ZodType | undefined;
  query?: z.ZodType | undefined;
  /** Descriptions of query parameters, by name. */
  queryDocs?: Readonly<Record<string, string>> | undefined;
  body?: z.ZodType | undefined;
  /** Media type of the body; default application/json. */
  bodyContentType?: string | undefined;
  success: OperationSuccess;
  /** Problem statuses beyond those every operation of its kind has (see problemStatuses). */
  errors?: readonly number[] | undefined;
  /** POST/PATCH whose 2xx body holds a one-time secret: not stored for Idempotency-Key replay (why). */
  withholdSuccessBody?: string | undefined;
}

const EVENT_READERS = ['admin', 'auditor', 'operator', 'viewer'] as const;
const CONFIG_READERS = ['admin', 'auditor', 'operator', 'viewer'] as const;
const DEVICE_READERS = ['admin', 'auditor', 'installer', 'operator', 'viewer'] as const;
const ROLLOUT_READERS = ['admin', 'auditor', 'operator', 'viewer'] as const;

function pageDocs(maxPageSize: number): Record<string, string> {
  return {
    limit: `Page size, an integer from 1 to ${maxPageSize} (default ${Math.min(DEFAULT_PAGE_SIZE, maxPageSize)}); a larger value is a 400, never clamped.`,
    cursor: 'The `next_cursor` of the previous page (opaque).',
    site: 'Only this site. A site-scoped caller must name one of its sites.',
  };
}

/** Every route of the HTTP server; `maxPageSize` is config api.maxPageSize (the list schemas depend on it). */
export function apiOperations(maxPageSize: number): ApiOperation[] {
  return [
    {
      method: 'get',
      mount: '/v1',
      path: '/events',
      operationId: 'listEvents',
      summary: 'List events',
      description: 'Events of the caller’s tenant, newest first, with filters and cursor pagination.',
      tag: 'Events',
      authorization: { action: 'events:read', roles: EVENT_READERS },
      query: listEventsQuerySchema(maxPageSize),
      queryDocs: {
        ...pageDocs(maxPageSize),
        device: 'Only this device.',
        camera: 'Only this camera.',
        label: 'Only this detection label, e.g. person.',
        since: 'Occurred at or after (RFC 3339).',
        until: 'Occurred before (RFC 3339); must be later than since.',
      },
      success: { status: 200, description: 'A page of events.', schema: eventPageSchema },
    },
    {
      method: 'get',
      mount: '/v1',
      path: '/events/:id',
      operationId: 'getEvent',
      summary: 'Get an event',
      description: 'Another tenant’s event, or one the caller may not see, is a 404 like a missing one.',
      tag: 'Events',
      authorization: { action: 'events:read', roles: EVENT_READERS },
      params: eventPathParams,
      success: { status: 200, description: 'The event.', schema: eventViewSchema },
      errors: [404],
    },
    {
      method: 'get',
      mount: '/v1',
      path: '/events/:id/review',
      operationId: 'getEventReview',
      summary: 'Whether an event is marked reviewed',
      tag: 'Events',
      authorization: { action: 'events:read', roles: EVENT_READERS },
      params: eventPathParams,
      success: { status: 200, description: 'The review mark.', schema: eventReviewSchema },
      errors: [404],
    },
    {
      method: 'post',
      mount: '/v1',
      path: '/events/:id/review',
      operationId: 'reviewEvent',
      summary: 'Mark an event reviewed',
      description:
        'Records who marked it and when (on the audit log: `event.review`). Marking a reviewed event again ' +
        'keeps the first mark. An event the caller may not see is a 404 like a missing one.',
      tag: 'Events',
      authorization: {
        action: 'events:review',
        roles: ['admin', 'operator'],
        resource: ({ tenant, params }) => ({ type: 'event', tenant, id: params.id! }),
      },
      params: eventPathParams,
      success: { status: 200, description: 'The review mark.', schema: eventReviewSchema },
      errors: [404],
    },
    {
      method: 'delete',
      mount: '/v1',
      path: '/events/:id/review',
      operationId: 'unreviewEvent',
      summary: 'Remove an event’s review mark',
      description: 'Audited (`event.unreview`) when there was a mark; without one nothing changes.',
      tag: 'Events',
      authorization: { action: 'events:review', roles: ['admin', 'operator'] },
      params: eventPathParams,
      success: { status: 200, description: 'The (now absent) review mark.', schema: eventReviewSchema },
      errors: [404],
    },
    {
      method: 'get',
      mount: '/v1',
      path: '/media/:id',
      operationId: 'getMedia',
      summary: 'Get a media object (snapshot)',
      description:
        'The bytes of a snapshot (`image/jpeg`), with `ETag` and `Repr-Digest` carrying its SHA-256. Every ' +
        'read is recorded on the audit log (`media.read`) before the bytes are sent; when that fails the answer ' +
        'is a 503. Snapshots redacted on the device are data class `media` (admin, operator); unredacted ones ' +
        'are `personal` (admin). Another tenant’s id, or one the caller may not see, is a 404; a deleted ' +
        'object (retention, erasure) is a 410.',
      tag: 'Media',
      authorization: { action: 'media:read', roles: ['admin', 'operator'] },
      params: mediaPathParams,
      success: { status: 200, description: 'The media bytes.', contentType: 'image/jpeg' },
      errors: [404, 410, 503],
    },
    {
      method: 'post',
      mount: '/v1',
      path: '/media/:id/erase',
      operationId: 'eraseMedia',
      summary: 'Erase a media object',
      description:
        'Right to erasure: deletes the bytes and keeps a tombstone (when, why) so that the event’s snapshot ' +
        'answers 410. The erasure and its reason are on the audit log. Erasing again reports `already_deleted`.',
      tag: 'Media',
      authorization: {
        action: 'media:erase',
        roles: ['admin'],
        resource: ({ tenant, params }) => ({ type: 'media', tenant, id: params.id! }),
      },
      params: mediaPathParams,
      body: eraseBody,
      success: { status: 200, description: 'The media is erased.', schema: erasedMediaSchema },
      errors: [404],
    },
    {
      method: 'get',
      mount: '/v1',
      path: '/audit-log',
      operationId: 'listAuditLog',
      summary: 'Read the audit log',
      description:
        'The caller’s tenant’s entries (admin actions, enrollments, media reads and erasures, denied changes), ' +
        'newest first, with their chain hashes. Site-scoped callers are refused (the log is tenant-wide).',
      tag: 'Audit log',
      authorization: { action: 'audit:read', roles: ['admin', 'auditor'] },
      query: listAuditQuerySchema(maxPageSize),
      queryDocs: {
        limit: pageDocs(maxPageSize).limit!,
        cursor: 'The `next_cursor` of the previous page.',
        action: 'Only this action, e.g. media.read.',
        actor: 'Only this actor (a JWT subject, device:<tenant>/<id>, system).',
        outcome: 'Only allowed, denied or failed.',
        since: 'At or after (RFC 3339).',
        until: 'Before (RFC 3339); must be later than since.',
      },
      success: { status: 200, description: 'A page of entries.', schema: auditPageSchema },
    },
    {
      method: 'get',
      mount: '/v1',
      path: '/devices',
      operationId: 'listDevices',
      summary: 'List devices',
      description: 'Devices of the caller’s tenant by id, with their status derived from heartbeats.',
      tag: 'Devices',
      authorization: { action: 'devices:read', roles: DEVICE_READERS },
      query: listDevicesQuerySchema(maxPageSize),
      queryDocs: { ...pageDocs(maxPageSize), status: 'Only devices with this status.' },
      success: { status: 200, description: 'A page of devices.', schema: devicePageSchema },
    },
    {
      method: 'get',
      mount: '/v1',
      path: '/devices/:id',
      operationId: 'getDevice',
      summary: 'Get a device',
      tag: 'Devices',
      authorization: { action: 'devices:read', roles: DEVICE_READERS },
      params: devicePathParams,
      success: { status: 200, description: 'The device.', schema: deviceViewSchema },
      errors: [404],
    },
    {
      method: 'post',
      mount: '/v1',
      path: '/devices/:id/revoke',
      operationId: 'revokeDevice',
      summary: 'Revoke a device',
      description:
        'Marks the device and its certificates revoked and cuts its NATS access. Revoking again changes ' +
        'nothing and reports the first revocation (`already_revoked`).',
      tag: 'Devices',
      authorization: {
        action: 'devices:revoke',
        roles: ['admin'],
        resource: ({ tenant, params }) => ({ type: 'device', tenant, id: params.id! }),
      },
      params: devicePathParams,
      body: revokeBody,
      success: { status: 200, description: 'The device is revoked.', schema: revokeResultSchema },
      errors: [404],
    },
    {
      method: 'put',
      mount: '/v1',
      path: '/configs/:scope/:scopeId',
      operationId: 'putConfigDocument',
      summary: 'Write a config document',
      description:
        'Stores a new revision of the desired-state document of a scope: `tenant` (scopeId = the tenant), ' +
        '`site` or `device`. A device’s effective config is the tenant document overlaid by its site’s and ' +
        'its own. Issues nothing: a rollout or POST /v1/devices/{id}/config/issue sends it to devices.',
      tag: 'Configs',
      authorization: { action: 'configs:write', roles: ['admin'] },
      params: configPathParams,
      body: configBodySchema,
      success: { status: 200, description: 'The stored revision.', schema: configDocumentViewSchema },
      errors: [404],
    },
    {
      method: 'get',
      mount: '/v1',
      path: '/configs/:scope/:scopeId',
      operationId: 'getConfigDocument',
      summary: 'Get a config document',
      description: 'The latest revision of the document of a scope.',
      tag: 'Configs',
      authorization: { action: 'configs:read', roles: CONFIG_READERS },
      params: configPathParams,
      success: { status: 200, description: 'The latest revision.', schema: configDocumentViewSchema },
      errors: [404],
    },
    {
      method: 'get',
      mount: '/v1',
      path: '/devices/:id/config',
      operationId: 'getDeviceConfig',
      summary: 'Get a device’s config',
      description: 'The effective body, the desired version and what the device last reported.',
      tag: 'Configs',
      authorization: { action: 'configs:read', roles: CONFIG_READERS },
      params: devicePathParams,
      success: { status: 200, description: 'The device’s config state.', schema: deviceConfigViewSchema },
      errors: [404],
    },
    {
      method: 'post',
      mount: '/v1',
      path: '/devices/:id/config/issue',
      operationId: 'issueDeviceConfig',
      summary: 'Issue a device’s config now',
      description:
        'Signs the device’s effective config as a new version and pushes it to the device (no rollout).',
      tag: 'Configs',
      authorization: {
        action: 'configs:write',
        roles: ['admin'],
        resource: ({ tenant, params }) => ({ type: 'device', tenant, id: params.id! }),
      },
      params: devicePathParams,
      success: { status: 201, description: 'The issued version.', schema: issuedConfigViewSchema },
      errors: [404, 503],
    },
    {
      method: 'put',
      mount: '/v1',
      path: '/models/:sha256',
      operationId: 'uploadModel',
      summary: 'Upload a model',
      description:
        'Stores a model file under its SHA-256 (application/octet-stream) in the caller’s tenant’s store (one ' +
        'store per tenant, no shared catalogue). A body that does not hash to the named SHA-256 is refused ' +
        '(400); one larger than models.maxBytes is a 413. Devices fetch a model only once a config issued to ' +
        'them names it.',
      tag: 'Models',
      authorization: { action: 'configs:write', roles: ['admin'] },
      params: modelPathParams,
      body: modelUploadBody,
      bodyContentType: 'application/octet-stream',
      success: {
        status: 201,
        description: 'The stored model (200 when it was already stored).',
        schema: modelViewSchema,
      },
      errors: [503],
    },
    {
      method: 'get',
      mount: '/v1',
      path: '/models',
      operationId: 'listModels',
      summary: 'List models',
      description: 'The models of the caller’s tenant (never another tenant’s).',
      tag: 'Models',
      authorization: { action: 'configs:read', roles: CONFIG_READERS },
      success: { status: 200, description: 'The stored models.', schema: modelListSchema },
      errors: [503],
    },
    {
      method: 'post',
      mount: '/v1',
      path: '/enrollment-tokens',
      operationId: 'createEnrollmentToken',
      summary: 'Create an enrollment token',
      description:
        'Mints a one-time token with which a gateway of this site enrolls. The secret is in this response ' +
        'only. With an Idempotency-Key, a repeat does not mint a second token; because the secret is never ' +
        'stored, the repeat gets 409 (idempotent-result-unavailable) instead of the secret.',
      tag: 'Enrollment tokens',
      authorization: {
        action: 'enrollment-tokens:create',
        roles: ['admin', 'installer'],
        resource: ({ tenant, body }) => tokenCollection(tenant, body),
      },
      body: createTokenBody,
      success: {
        status: 201,
        description: 'The token, with its secret.',
        schema: createdEnrollmentTokenSchema,
      },
      withholdSuccessBody: 'the response holds the one-time token secret, which is stored as a hash only',
    },
    {
      method: 'get',
      mount: '/v1',
      path: '/enrollment-tokens',
      operationId: 'listEnrollmentTokens',
      summary: 'List enrollment tokens',
      description: 'Tokens of the caller’s tenant, never with their secrets.',
      tag: 'Enrollment tokens',
      authorization: { action: 'enrollment-tokens:read', roles: ['admin', 'auditor', 'installer'] },
      query: listTokensQuery,
      queryDocs: { include_used: 'Include tokens already used (default false).' },
      success: { status: 200, description: 'The tokens.', schema: enrollmentTokenListSchema },
    },
    {
      method: 'post',
      mount: '/v1',
      path: '/rollouts',
      operationId: 'createRollout',
      summary: 'Start a staged rollout',
      description:
        'Rolls a config body (or each device’s current effective document) out to a tenant or a site: a ' +
        'canary, then cumulative waves, each gated on applied + healthy devices (health, fps against the ' +
        'device’s pre-rollout baseline, event rate) within a window; aborts and rolls back on the abort criteria. ' +
        'One rollout per tenant is active at a time: another one is a 409 (rollout-state-conflict).',
      tag: 'Rollouts',
      authorization: {
        action: 'rollouts:write',
        roles: ['admin'],
        resource: ({ tenant }) => ({ type: 'rollouts', tenant }),
      },
      body: createRolloutBody,
      success: { status: 201, description: 'The rollout, pending.', schema: rolloutViewSchema },
    },
    {
      method: 'get',
      mount: '/v1',
      path: '/rollouts',
      operationId: 'listRollouts',
      summary: 'List rollouts',
      description: 'Rollouts of the caller’s tenant, newest first, with their progress.',
      tag: 'Rollouts',
      authorization: { action: 'rollouts:read', roles: ROLLOUT_READERS },
      query: listRolloutsQuery,
      queryDocs: { limit: 'At most this many (1 to 200, default 50).' },
      success: { status: 200, description: 'The rollouts.', schema: rolloutListSchema },
    },
    {
      method: 'get',
      mount: '/v1',
      path: '/rollouts/:id',
      operationId: 'getRollout',
      summary: 'Get a rollout and its progress',
      description: 'Per wave: devices applied, failed, pending, rolled back; the state and the abort reason.',
      tag: 'Rollouts',
      authorization: { action: 'rollouts:read', roles: ROLLOUT_READERS },
      params: rolloutPathParams,
      success: { status: 200, description: 'The rollout.', schema: rolloutViewSchema },
      errors: [404],
    },
    {
      method: 'get',
      mount: '/v1',
      path: '/rollouts/:id/devices',
      operationId: 'listRolloutDevices',
      summary: 'What each device of a rollout runs now',
      description:
        'The rollout’s devices in rollout order: its status in the rollout (and after a rollback whether it runs ' +
        'its restored config), the versions issued, and now: desired, applied and last known good version, the ' +
        'state it reported and its health.',
      tag: 'Rollouts',
      authorization: { action: 'rollouts:read', roles: ROLLOUT_READERS },
      params: rolloutPathParams,
      query: rolloutDevicesQuery,
      queryDocs: {
        limit: 'Page size, 1 to 500 (default 100).',
        after: 'The `next_after` of the previous page (default: from the start).',
      },
      success: { status: 200, description: 'A page of devices.', schema: rolloutDevicePageSchema },
      errors: [404],
    },
    ...(['pause', 'resume', 'abort'] as const).map((op): ApiOperation => ({
      method: 'post',
      mount: '/v1',
      path: `/rollouts/:id/${op}`,
      operationId: `${op}Rollout`,
      summary: `${op[0]!.toUpperCase()}${op.slice(1)} a rollout`,
      description:
        op === 'abort'
          ? 'Stops the rollout and returns every device it issued to (failed ones included) to its last known good ' +
            'config (a new version with that body; a device without one gets the body it ran before the rollout, ' +
            'or is left as it is and reported not_restored).'
          : op === 'pause'
            ? 'Issues no further wave; the abort criteria are still watched.'
            : 'Continues a paused rollout.',
      tag: 'Rollouts',
      authorization: {
        action: 'rollouts:write',
        roles: ['admin'],
        resource: ({ tenant }) => ({ type: 'rollouts', tenant }),
      },
      params: rolloutPathParams,
      body: rolloutOperationBody,
      success: { status: 200, description: 'The rollout.', schema: rolloutViewSchema },
      errors: [404],
    })),
    ...webhookOperations(),
    ...alertOperations(),
    ...releaseOperations(),
    ...privacyOperations(),
    ...erasureOperations(),
    {
      method: 'get',
      mount: '/v1',
      path: '/openapi.json',
      operationId: 'getOpenApiDocument',
      summary: 'This OpenAPI document',
      tag: 'API description',
      authorization: null,
      success: {
        status: 200,
        description: 'The OpenAPI 3.1 document.',
        schema: z.record(z.string(), z.unknown()),
      },
    },
    {
      method: 'get',
      mount: '/v1',
      path: '/docs',
      operationId: 'getApiDocs',
      summary: 'API reference (HTML)',
      description: 'This document rendered as one HTML page, without scripts.',
      tag: 'API description',
      authorization: null,
      success: { status: 200, description: 'The HTML page.', contentType: 'text/html' },
    },
    {
      method: 'get',
      mount: '',
      path: '/healthz',
      operationId: 'getHealth',
      summary: 'Liveness',
      tag: 'Operations',
      authorization: null,
      success: { status: 200, description: 'The process is alive.', schema: healthSchema },
    },
    {
      method: 'get',
      mount: '',
      path: '/readyz',
      operationId: 'getReadiness',
      summary: 'Readiness',
      description: 'Checks every dependency (PostgreSQL, NATS); 503 when one fails.',
      tag: 'Operations',
      authorization: null,
      success: { status: 200, description: 'Every dependency answers.', schema: readinessSchema },
      errors: [503],
    },
    {
      method: 'get',
      mount: '',
      path: '/metrics',
      operationId: 'getMetrics',
      summary: 'Prometheus metrics',
      tag: 'Operations',
      authorization: null,
      success: {
        status: 200,
        description: 'Metrics in the Prometheus text format.',
        contentType: 'text/plain',
      },
    },
  ];
}

const TAGS = [
  { name: 'Events', description: 'Detection events stored by ingest.' },
  { name: 'Devices', description: 'The fleet of edge gateways.' },
  { name: 'Audit log', description: 'The tamper-evident record of admin actions and media access.' },
  { name: 'Media', description: 'Snapshots uploaded by devices: reading (audited) and erasure.' },
  { name: 'Enrollment tokens', description: 'One-time tokens with which new gateways enroll.' },
  { name: 'Configs', description: 'Desired device configuration: documents per scope, signed versions.' },
  { name: 'Models', description: 'The content-addressed store of model files that devices fetch.' },
  {
    name: 'Rollouts',
    description: 'Staged config rollouts: canary, waves, health gates, abort and rollback.',
  },
  {
    name: 'Webhooks',
    description: 'Signed JSON webhooks (RFC 9421) of committed events, with retries and a delivery history.',
  },
  {
    name: 'Agency alerts',
    description: 'CAP 1.2 alerts to agencies: rules, targets, incidents, messages, dead letters.',
  },
  {
    name: 'Privacy',
    description: 'Scoped erasure requests and signed evidence exports.',
  },
  {
    name: 'Releases',
    description:
      'The agent release repository (The Update Framework): signed metadata and bundles, and publishing them.',
  },
  {
    name: 'Retention and legal holds',
    description:
      'Retention policies per tenant, site, camera and data class, the retention check, and legal holds.',
  },
  { name: 'API description', description: 'This document, as JSON and as HTML.' },
  { name: 'Operations', description: 'Liveness, readiness and metrics, outside /v1 (no authentication).' },
];

/** POST and PATCH operations of the authenticated API take an Idempotency-Key. */
export function isIdempotent(op: ApiOperation): boolean {
  return op.authorization !== null && (op.method === 'post' || op.method === 'patch');
}

/** `/events/:id` under `/v1` -> `/v1/events/{id}`. */
export function openApiPath(op: ApiOperation): string {
  return `${op.mount}${op.path}`.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

/** The problem statuses an operation may answer, in order. */
export function problemStatuses(op: ApiOperation): number[] {
  const s = new Set<number>(op.errors ?? []);
  if (op.mount === '/v1') [400, 414].forEach((x) => s.add(x));
  if (op.authorization !== null) [401, 429].forEach((x) => s.add(x));
  if (op.authorization !== null && op.authorization !== 'authenticated') s.add(403);
  if (op.body !== undefined) [413, 415].forEach((x) => s.add(x));
  if (isIdempotent(op)) [409, 422].forEach((x) => s.add(x));
  if (op.mount === '/v1') s.add(500);
  return [...s].sort((a, b) => a - b);
}

type Json = Record<string, unknown>;

const PROBLEM_RESPONSES: Readonly<Record<number, { name: string; description: string; headers?: string[] }>> =
  {
    400: {
      name: 'BadRequest',
      description:
        `Invalid request: a parameter or body field (listed in \`errors\`), an unknown query parameter, a body ` +
        `that is not JSON (\`(body)\`) or is nested deeper than ${API_MAX_JSON_DEPTH} levels, or a malformed ` +
        'Idempotency-Key. No string, parameter or member name anywhere may contain NUL (U+0000) or an unpaired ' +
        'surrogate, text must be UTF-8 (percent-encoded UTF-8 in the URL), and no number may exceed what a ' +
        'double holds (1e400). A `cursor` this API did not return is `urn:vigil:problem:invalid-cursor`: start ' +
        'again from the first page.',
    },
    401: {
      name: 'Unauthorized',
      description: 'No valid bearer token.',
      headers: ['WWW-Authenticate'],
    },
    403: { name: 'Forbidden', description: 'The caller may not do this.' },
    404: { name: 'NotFound', description: 'No such resource, or none the caller may see.' },
    409: {
      name: 'Conflict',
      description:
        'Idempotency-Key: a request with this key is still in progress (`idempotency-key-in-use`, retry after ' +
        '`Retry-After`), or it completed but its response cannot be replayed (`idempotent-result-unavailable`).',
      headers: ['Retry-After'],
    },
    410: {
      name: 'Gone',
      description: 'The resource was deleted (retention or an erasure request); `detail` says when and why.',
    },
    413: { name: 'PayloadTooLarge', description: 'The body is larger than the API accepts.' },
    414: {
      name: 'UriTooLong',
      description: `The URL (path and query) is longer than ${API_MAX_URL_LENGTH} characters.`,
    },
    415: { name: 'UnsupportedMediaType', description: 'The body encoding or charset is not supported.' },
    422: {
      name: 'UnprocessableContent',
      description: 'Idempotency-Key: the key was already used for a request with a different body.',
    },
    429: { name: 'TooManyRequests', description: 'Rate limit exceeded.', headers: ['Retry-After'] },
    500: { name: 'InternalError', description: 'An unexpected error (details stay in the server log).' },
    503: { name: 'Unavailable', description: 'Not ready: a dependency does not answer.' },
  };

const HEADERS: Readonly<Record<string, Json>> = {
  'WWW-Authenticate': {
    description: 'The bearer challenge (RFC 6750).',
    schema: { type: 'string' },
  },
  'Retry-After': { description: 'Seconds to wait before retrying.', schema: { type: 'integer' } },
  [IDEMPOTENT_REPLAYED_HEADER]: {
    description:
      'Present (`true`) when this is the stored response of an earlier request with the same Idempotency-Key.',
    schema: { type: 'string', enum: ['true'] },
  },
};

/** A zod schema -> JSON Schema 2020-12; named schemas (meta id) go to `components` and are referenced. */
function toSchema(schema: z.ZodType, io: 'input' | 'output', components: Record<string, unknown>): Json {
  const json = z.toJSONSchema(schema, {
    target: 'draft-2020-12',
    io,
    unrepresentable: 'any',
    override: (ctx) => {
      const js = ctx.jsonSchema as Json;
      const def = (ctx.zodSchema as unknown as { _zod: { def: { type: string; catchall?: unknown } } })._zod
        .def;
      // Responses: z.object may grow members (clients ignore unknown ones); strict objects stay closed.
      if (io === 'output' && def.type === 'object' && def.catchall === undefined)
        delete js.additionalProperties;
      // The format says it; zod's long validation regexes only clutter the document.
      if (js.format === 'date-time' || js.format === 'uuid') delete js.pattern;
      if (js.minimum === Number.MIN_SAFE_INTEGER) delete js.minimum;
      if (js.maximum === Number.MAX_SAFE_INTEGER) delete js.maximum;
    },
  }) as Json;
  delete json.$schema;
  const defs = (json.$defs ?? {}) as Record<string, Json>;
  delete json.$defs;
  for (const [id, def] of Object.entries(defs)) components[id] = rewriteRefs(def);
  return rewriteRefs(json);
}

function rewriteRefs<T>(value: T): T {
  return JSON.parse(JSON.stringify(value).replaceAll('"#/$defs/', '"#/components/schemas/')) as T;
}

/** Object schema -> one OpenAPI parameter per property. */
function parametersOf(
  schema: z.ZodType,
  where: 'path' | 'query',
  docs: Readonly<Record<string, string>>,
  components: Record<string, unknown>,
): Json[] {
  const json = toSchema(schema, 'input', components);
  const properties = (json.properties ?? {}) as Record<string, Json>;
  const required = new Set((json.required ?? []) as string[]);
  return Object.entries(properties).map(([name, s]) => {
    const { description, ...rest } = s;
    const text = docs[name] ?? description;
    return {
      name,
      in: where,
      required: where === 'path' || required.has(name),
      ...(typeof text === 'string' ? { description: text } : {}),
      schema: rest,
    };
  });
}

export interface OpenApiOptions {
  /** The document's `info.version`. */
  version: string;
}

/** The OpenAPI 3.1 document of `operations`. */
export function buildOpenApiDocument(operations: readonly ApiOperation[], opts: OpenApiOptions): Json {
  const schemas: Record<string, unknown> = {};
  const usedResponses = new Set<number>();
  const usedHeaders = new Set<string>();
  const paths: Record<string, Record<string, Json>> = {};
  let idempotencyUsed = false;

  for (const op of operations) {
    const parameters: Json[] = [];
    if (op.params) parameters.push(...parametersOf(op.params, 'path', {}, schemas));
    if (op.query) parameters.push(...parametersOf(op.query, 'query', op.queryDocs ?? {}, schemas));
    const idempotent = isIdempotent(op);
    if (idempotent) {
      parameters.push({ $ref: '#/components/parameters/IdempotencyKey' });
      idempotencyUsed = true;
    }

    const success: Json = { description: op.success.description };
    const contentType = op.success.contentType ?? 'application/json';
    success.content = {
      [contentType]: {
        schema: op.success.schema ? toSchema(op.success.schema, 'output', schemas) : { type: 'string' },
      },
    };
    if (idempotent && op.withholdSuccessBody === undefined) {
      success.headers = {
        [IDEMPOTENT_REPLAYED_HEADER]: { $ref: `#/components/headers/${IDEMPOTENT_REPLAYED_HEADER}` },
      };
      usedHeaders.add(IDEMPOTENT_REPLAYED_HEADER);
    }
    const responses: Record<string, Json> = { [String(op.success.status)]: success };
    for (const status of problemStatuses(op)) {
      const kind = PROBLEM_RESPONSES[status];
      if (!kind) throw new Error(`no problem response for ${status} (${op.operationId})`);
      responses[String(status)] = { $ref: `#/components/responses/${kind.name}` };
      usedResponses.add(status);
      for (const h of kind.headers ?? []) usedHeaders.add(h);
    }

    const auth = op.authorization;
    const notes: string[] = [];
    if (op.description) notes.push(op.description);
    if (auth === null) notes.push('No authentication.');
    else if (auth !== 'authenticated')
      notes.push(
        `Authorization: \`${auth.action}\` in the caller’s tenant; the default policies grant it to ` +
          `${auth.roles.map((r) => `\`${r}\``).join(', ')}.`,
      );
    if (idempotent)
      notes.push(
        'Accepts an Idempotency-Key: a repeat with the same key and body gets the stored response ' +
          `(\`${IDEMPOTENT_REPLAYED_HEADER}: true\`) instead of running again.`,
      );
    const operation: Json = {
      operationId: op.operationId,
      summary: op.summary,
      description: notes.join('\n\n'),
      tags: [op.tag],
      ...(auth === null ? { security: [] } : {}),
      ...(auth !== null && auth !== 'authenticated' ? { 'x-vigil-action': auth.action } : {}),
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(op.body
        ? {
            requestBody: {
              required: true,
              content: {
                [op.bodyContentType ?? 'application/json']: { schema: toSchema(op.body, 'input', schemas) },
              },
            },
          }
        : {}),
      responses,
    };
    (paths[openApiPath(op)] ??= {})[op.method] = operation;
  }

  const problemResponses: Record<string, Json> = {};
  for (const status of [...usedResponses].sort((a, b) => a - b)) {
    const kind = PROBLEM_RESPONSES[status]!;
    problemResponses[kind.name] = {
      description: kind.description,
      ...(kind.headers
        ? { headers: Object.fromEntries(kind.headers.map((h) => [h, { $ref: `#/components/headers/${h}` }])) }
        : {}),
      content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
    };
  }
  if (usedResponses.size > 0) toSchema(problemSchema, 'output', schemas);

  return {
    openapi: '3.1.0',
    info: {
      title: 'Vigil cloud API',
      version: opts.version,
      description:
        'The REST API of the Vigil cloud control plane. Every /v1 operation but this description needs a ' +
        'bearer JWT and acts inside the tenant the token names. Errors are RFC 9457 problem details ' +
        '(application/problem+json) with a stable `type` (urn:vigil:problem:<slug>). Live events: a websocket ' +
        'at /v1/stream (not an OpenAPI operation): bearer token in `Authorization` or as the subprotocol ' +
        '`bearer.<jwt>` next to `vigil.v1`; filters `site`, `device`, `camera`, `label`; `events:read` as for ' +
        'GET /v1/events; one JSON message per committed event, `{"type":"event","event":{...}}`.',
    },
    servers: [{ url: '/', description: 'This server.' }],
    security: [{ bearerAuth: [] }],
    tags: TAGS,
    paths,
    components: {
      securitySchemes: {
        bearerAuth: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'JWT',
          description: 'A JWT from the configured issuer, with `sub`, `tenant` and `roles` claims.',
        },
      },
      schemas: Object.fromEntries(Object.entries(schemas).sort(([a], [b]) => a.localeCompare(b))),
      responses: problemResponses,
      ...(idempotencyUsed
        ? {
            parameters: {
              IdempotencyKey: {
                name: IDEMPOTENCY_KEY_HEADER,
                in: 'header',
                required: false,
                description:
                  `1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters (a quoted string "..." is the ` +
                  'same key), e.g. a random UUID, scoped to the caller and to this method and path; kept 24 h by ' +
                  'default. A repeat with another body is a 422; a repeat while the first runs is a 409.',
                schema: { type: 'string', minLength: 1, maxLength: MAX_IDEMPOTENCY_KEY_LENGTH + 2 },
              },
            },
          }
        : {}),
      headers: Object.fromEntries([...usedHeaders].sort().map((h) => [h, HEADERS[h]])),
    },
  };
}
