import type { Router } from 'express';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { AuditLog } from '../audit/audit-log.js';
import type { Authorizer, Resource } from '../auth/authorize.js';
import { principalOf, requireAllowed, requireVisible } from '../api/authenticate.js';
import type { DeviceReader } from '../api/device-store.js';
import { devicePathParams } from '../api/devices-query.js';
import { NotFoundError, ValidationError } from '../api/errors.js';
import { parseOrThrow } from '../api/events-query.js';
import { methodNotAllowed } from '../api/problem.js';
import type { Principal } from '../auth/principal.js';
import { configBodySchema, effectiveBodyProblems } from './body.js';
import type { ConfigIssuer } from './issuer.js';
import { CONFIG_SCOPES, type ConfigScope } from './merge.js';
import { ModelStoreError, SHA256_RE, type ModelStore } from './models.js';

export const configPathParams = z.strictObject({
  scope: z.enum(CONFIG_SCOPES),
  scopeId: z.string().regex(/^[A-Za-z0-9_-]{1,63}$/, 'must be 1-63 letters, digits, "-" or "_"'),
});
export const modelPathParams = z.strictObject({
  sha256: z.string().regex(SHA256_RE, 'must be a lowercase hex SHA-256'),
});
/** The body of PUT /v1/models/{sha256}: the raw file (documentation only; it is streamed, not parsed). */
export const modelUploadBody = z.string().meta({ format: 'binary', description: 'The model file.' });

const iso = z.iso.datetime();
export const configDocumentViewSchema = z
  .object({
    scope: z.enum(CONFIG_SCOPES),
    scope_id: z.string(),
    revision: z.number().int(),
    body: configBodySchema,
    created_by: z.string(),
    created_at: iso,
  })
  .meta({ id: 'ConfigDocument' });
export const deviceConfigViewSchema = z
  .object({
    device_id: z.string(),
    effective_body: configBodySchema,
    desired_version: z.string().meta({ description: 'Newest issued version (a decimal uint64); "0": none.' }),
    reported_version: z.string().nullable(),
    applied_version: z.string().nullable(),
    last_known_good_version: z
      .string()
      .nullable()
      .meta({
        description:
          'The newest version it applied and reported healthy on (a rollout’s once the rollout completed): what a ' +
          'rollback restores. null: none.',
      }),
    state: z.enum(['pending', 'applied', 'failed', 'rolled_back', 'unknown']),
    reason: z.string(),
    health: z.enum(['ok', 'degraded', 'failing', 'unknown']),
    reported_at: iso.nullable(),
  })
  .meta({ id: 'DeviceConfig' });
export const issuedConfigViewSchema = z
  .object({ device_id: z.string(), version: z.string() })
  .meta({ id: 'IssuedConfig' });
export const modelViewSchema = z
  .object({ sha256: z.string(), size: z.number().int(), stored_at: iso })
  .meta({ id: 'Model' });
export const modelListSchema = z.object({ items: z.array(modelViewSchema) }).meta({ id: 'ModelList' });

export interface ConfigRoutesDeps {
  configs: ConfigIssuer;
  models: ModelStore;
  devices: DeviceReader;
  audit?: AuditLog | undefined;
  authorizer: Authorizer;
  log: Logger;
}

/**
 * Desired-state documents (PUT/GET /configs/{scope}/{scopeId}), a device's effective config and state
 * (GET /devices/{id}/config), issuing it now (POST /devices/{id}/config/issue) and the models store
 * (PUT /models/{sha256}, GET /models); always inside the caller's tenant.
 */
export function mountConfigRoutes(router: Router, deps: ConfigRoutesDeps): void {
  const { authorizer, log, audit } = deps;

  /** Asks about the scope's resource; a device must exist in the tenant (404 otherwise). */
  async function authorizeScope(
    principal: Principal,
    action: 'configs:read' | 'configs:write',
    scope: ConfigScope,
    scopeId: string,
  ): Promise<void> {
    const tenant = principal.tenant;
    if (scope === 'tenant') {
      await requireAllowed(authorizer, log, principal, action, { type: 'configs', tenant }, audit);
      if (scopeId !== tenant) throw new NotFoundError();
      return;
    }
    if (scope === 'site') {
      await requireAllowed(
        authorizer,
        log,
        principal,
        action,
        { type: 'configs', tenant, site: scopeId },
        audit,
      );
      return;
    }
    await authorizeDevice(principal, action, scopeId);
  }

  async function authorizeDevice(
    principal: Principal,
    action: 'configs:read' | 'configs:write',
    id: string,
  ): Promise<void> {
    const resource: Resource = { type: 'device', tenant: principal.tenant, id };
    await requireAllowed(authorizer, log, principal, action, resource, audit);
    const device = await deps.devices.get(principal.tenant, id);
    if (device === null) throw new NotFoundError();
    await requireVisible(authorizer, log, principal, action, { ...resource, site: device.site_id }, audit);
  }

  router
    .route('/configs/:scope/:scopeId')
    .get(async (req, res) => {
      const { scope, scopeId } = parseOrThrow(configPathParams, req.params, 'path parameters');
      const principal = principalOf(res);
      await authorizeScope(principal, 'configs:read', scope, scopeId);
      const doc = await deps.configs.getDocument(principal.tenant, scope, scopeId);
      if (doc === null) throw new NotFoundError();
      res.json(documentView(doc));
    })
    .put(async (req, res) => {
      const { scope, scopeId } = parseOrThrow(configPathParams, req.params, 'path parameters');
      const principal = principalOf(res);
      await authorizeScope(principal, 'configs:write', scope, scopeId);
      const body = parseOrThrow(configBodySchema, req.body ?? {}, 'body');
      const doc = await deps.configs.putDocument(principal.tenant, scope, scopeId, body, principal.subject);
      res.status(200).json(documentView(doc));
    })
    .all(methodNotAllowed('GET', 'HEAD', 'PUT'));

  router
    .route('/devices/:id/config')
    .get(async (req, res) => {
      const { id } = parseOrThrow(devicePathParams, req.params, 'path parameters');
      const principal = principalOf(res);
      await authorizeDevice(principal, 'configs:read', id);
      const body = await deps.configs.effectiveConfigBody(principal.tenant, id);
      const [state] = await deps.configs.desiredAndReported(principal.tenant, [id]);
      if (body === null || !state) throw new NotFoundError();
      res.json({
        device_id: id,
        effective_body: body,
        desired_version: state.desiredVersion.toString(),
        reported_version: state.reportedVersion?.toString() ?? null,
        applied_version: state.appliedVersion?.toString() ?? null,
        last_known_good_version: state.goodVersion?.toString() ?? null,
        state: state.state,
        reason: state.reason,
        health: state.health,
        reported_at: state.reportedAt?.toISOString() ?? null,
      });
    })
    .all(methodNotAllowed('GET', 'HEAD'));

  router
    .route('/devices/:id/config/issue')
    .post(async (req, res) => {
      const { id } = parseOrThrow(devicePathParams, req.params, 'path parameters');
      const principal = principalOf(res);
      await authorizeDevice(principal, 'configs:write', id);
      const body = await deps.configs.effectiveConfigBody(principal.tenant, id);
      if (body === null) throw new NotFoundError();
      const problems = effectiveBodyProblems(body);
      if (problems.length > 0)
        throw new ValidationError(
          problems.map((message) => ({ path: '(effective config)', message })),
          'The device’s effective config is not complete.',
        );
      const [issued] = await deps.configs.issue({
        tenantId: principal.tenant,
        deviceIds: [id],
        body,
        actor: principal.subject,
      });
      if (!issued) throw new NotFoundError();
      res.status(201).json({ device_id: issued.deviceId, version: issued.version.toString() });
    })
    .all(methodNotAllowed('POST'));

  router
    .route('/models')
    .get(async (_req, res) => {
      const principal = principalOf(res);
      await requireAllowed(authorizer, log, principal, 'configs:read', {
        type: 'configs',
        tenant: principal.tenant,
      });
      const items = await deps.models.list(principal.tenant);
      res.json({
        items: items.map((m) => ({ sha256: m.sha256, size: m.size, stored_at: m.storedAt.toISOString() })),
      });
    })
    .all(methodNotAllowed('GET', 'HEAD'));

  router
    .route('/models/:sha256')
    .put(async (req, res) => {
      const { sha256 } = parseOrThrow(modelPathParams, req.params, 'path parameters');
      const principal = principalOf(res);
      await requireAllowed(
        authorizer,
        log,
        principal,
        'configs:write',
        { type: 'configs', tenant: principal.tenant },
        audit,
      );
      if (!req.is('application/octet-stream'))
        throw new ValidationError(
          [{ path: 'Content-Type', message: 'must be application/octet-stream' }],
          'The model must be sent as application/octet-stream.',
        );
      const declared = Number(req.headers['content-length'] ?? NaN);
      if (Number.isFinite(declared) && declared > deps.models.maxBytes) {
        req.resume();
        throw new ModelStoreError(
          'PAYLOAD_TOO_LARGE',
          `the model is larger than ${deps.models.maxBytes} bytes`,
        );
      }
      const { model, created } = await deps.models.put(principal.tenant, sha256, req);
      await audit?.append({
        tenantId: principal.tenant,
        actor: principal.subject,
        actorKind: 'user',
        action: 'model.upload',
        resource: `model:${sha256}`,
        outcome: 'allowed',
        detail: { size: model.size, created },
      });
      res
        .status(created ? 201 : 200)
        .json({ sha256: model.sha256, size: model.size, stored_at: model.storedAt.toISOString() });
    })
    .all(methodNotAllowed('PUT'));
}

function documentView(doc: {
  scope: ConfigScope;
  scopeId: string;
  revision: number;
  body: unknown;
  createdBy: string;
  createdAt: Date;
}): Record<string, unknown> {
  return {
    scope: doc.scope,
    scope_id: doc.scopeId,
    revision: doc.revision,
    body: doc.body,
    created_by: doc.createdBy,
    created_at: doc.createdAt.toISOString(),
  };
}
