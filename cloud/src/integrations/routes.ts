import type { Router } from 'express';
import type { Logger } from 'pino';
import { z } from 'zod';
import { principalOf, requireAllowed } from '../api/authenticate.js';
import { NotFoundError, ValidationError } from '../api/errors.js';
import { parseOrThrow } from '../api/events-query.js';
import type { ApiOperation } from '../api/openapi.js';
import { methodNotAllowed } from '../api/problem.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Authorizer } from '../auth/authorize.js';
import type { Principal } from '../auth/principal.js';
import { UnsafeUrlError, validateWebhookUrl, type UrlPolicy } from './ssrf.js';
import {
  MAX_ENABLED_WEBHOOKS_PER_TENANT,
  type Webhook,
  type WebhookDelivery,
  type WebhookStore,
} from './store.js';

const token = z.string().regex(/^[A-Za-z0-9_-]{1,63}$/, 'must be 1-63 letters, digits, - or _');
const list = (item: z.ZodType<string>) => z.array(item).max(50).optional();

export const createWebhookBody = z.strictObject({
  url: z.string().min(1).max(2048),
  filter: z
    .strictObject({ labels: list(z.string().min(1).max(64)), sites: list(token), cameras: list(token) })
    .optional(),
  description: z.string().max(500).optional(),
});
export const disableWebhookBody = z.strictObject({ reason: z.string().min(1).max(500).optional() });
export const webhookPathParams = z.strictObject({ id: z.uuid() });
export const listDeliveriesQuery = z.strictObject({
  limit: z
    .string()
    .regex(/^\d{1,3}$/, 'must be an integer from 1 to 200')
    .transform(Number)
    .refine((n) => n >= 1 && n <= 200, 'must be an integer from 1 to 200')
    .optional(),
});

const timestamp = z.iso.datetime({ offset: true });
const filterSchema = z.object({
  labels: z.array(z.string()).optional(),
  sites: z.array(z.string()).optional(),
  cameras: z.array(z.string()).optional(),
});
export const webhookViewSchema = z
  .object({
    id: z.uuid(),
    tenant_id: z.string(),
    url: z.string(),
    filter: filterSchema,
    description: z.string().nullable(),
    enabled: z.boolean(),
    created_by: z.string(),
    created_at: timestamp,
    disabled_at: timestamp.nullable(),
    disabled_reason: z.string().nullable(),
  })
  .meta({ id: 'Webhook', description: 'A webhook subscription (never its secret).' });
export const createdWebhookSchema = webhookViewSchema
  .extend({
    secret: z
      .string()
      .meta({ description: 'The HMAC-SHA256 key of the request signatures; shown only here.' }),
  })
  .meta({ id: 'CreatedWebhook', description: 'The new webhook with its signing secret.' });
export const webhookListSchema = z
  .object({ items: z.array(webhookViewSchema) })
  .meta({ id: 'WebhookList', description: 'The tenant’s webhooks, newest first.' });
export const deliveryListSchema = z
  .object({
    items: z.array(
      z.object({
        event_id: z.uuid(),
        attempt: z.number().int(),
        state: z.enum(['delivered', 'retrying', 'dead']),
        http_status: z.number().int().nullable(),
        error: z.string().nullable(),
        duration_ms: z.number().int().nullable(),
        at: timestamp,
      }),
    ),
  })
  .meta({ id: 'WebhookDeliveryList', description: 'Recent delivery attempts, newest first.' });

function view(w: Webhook): z.output<typeof webhookViewSchema> {
  return {
    id: w.id,
    tenant_id: w.tenant_id,
    url: w.url,
    filter: w.filter,
    description: w.description,
    enabled: w.enabled,
    created_by: w.created_by,
    created_at: w.created_at.toISOString(),
    disabled_at: w.disabled_at?.toISOString() ?? null,
    disabled_reason: w.disabled_reason,
  };
}

function deliveryView(d: WebhookDelivery) {
  const { event_id, attempt, state, http_status, error, duration_ms } = d;
  return { event_id, attempt, state, http_status, error, duration_ms, at: d.at.toISOString() };
}

/**
 * Creates a webhook for an authorized caller (webhooks:write asked already): the URL policy (SSRF), the per-tenant
 * bound, the row and the audit entry. The API's POST /v1/webhooks and the console's form both call it.
 */
export async function createWebhook(
  deps: Pick<WebhookRoutesDeps, 'store' | 'policy' | 'audit'>,
  principal: Principal,
  body: z.output<typeof createWebhookBody>,
): Promise<Webhook & { secret: string }> {
  try {
    validateWebhookUrl(body.url, deps.policy);
  } catch (err) {
    if (err instanceof UnsafeUrlError) throw new ValidationError([{ path: 'url', message: err.message }]);
    throw err;
  }
  if ((await deps.store.countEnabled(principal.tenant)) >= MAX_ENABLED_WEBHOOKS_PER_TENANT)
    throw new ValidationError([
      { path: 'url', message: `at most ${MAX_ENABLED_WEBHOOKS_PER_TENANT} enabled webhooks per tenant` },
    ]);
  const hook = await deps.store.create({
    tenantId: principal.tenant,
    url: body.url,
    filter: body.filter ?? {},
    description: body.description,
    createdBy: principal.subject,
  });
  // If this append fails the request fails (500) before the secret is shown; the webhook exists and can be
  // disabled, and its secret was never seen by anyone.
  await deps.audit.append({
    tenantId: principal.tenant,
    actor: principal.subject,
    actorKind: 'user',
    action: 'webhook.create',
    resource: `webhook:${principal.tenant}/${hook.id}`,
    outcome: 'allowed',
    detail: { webhook_id: hook.id, url: hook.url, filter: hook.filter },
  });
  return hook;
}

export interface WebhookRoutesDeps {
  store: WebhookStore;
  policy: UrlPolicy;
  audit: AuditLog;
  authorizer: Authorizer;
  log: Logger;
}

/**
 * POST/GET /webhooks, POST /webhooks/:id/disable, GET /webhooks/:id/deliveries (tenant-wide: site-scoped users
 * are refused by the policies). Disabling is a POST rather than DELETE: the row and its delivery history stay.
 */
export function mountWebhookRoutes(router: Router, deps: WebhookRoutesDeps): void {
  const allow = (res: Parameters<typeof principalOf>[0], action: 'webhooks:read' | 'webhooks:write') => {
    const principal = principalOf(res);
    return requireAllowed(
      deps.authorizer,
      deps.log,
      principal,
      action,
      { type: 'webhooks', tenant: principal.tenant },
      deps.audit,
    ).then(() => principal);
  };
  router
    .route('/webhooks')
    .post(async (req, res) => {
      const principal = await allow(res, 'webhooks:write');
      const body = parseOrThrow(createWebhookBody, req.body ?? {}, 'body');
      const hook = await createWebhook(deps, principal, body);
      res.status(201).json({ ...view(hook), secret: hook.secret });
    })
    .get(async (_req, res) => {
      const principal = await allow(res, 'webhooks:read');
      res.json({ items: (await deps.store.list(principal.tenant)).map(view) });
    })
    .all(methodNotAllowed('GET', 'HEAD', 'POST'));

  router
    .route('/webhooks/:id/disable')
    .post(async (req, res) => {
      const { id } = parseOrThrow(webhookPathParams, req.params, 'path parameters');
      const principal = await allow(res, 'webhooks:write');
      const body = parseOrThrow(disableWebhookBody, req.body ?? {}, 'body');
      const before = await deps.store.get(principal.tenant, id);
      if (!before) throw new NotFoundError();
      const hook = (await deps.store.disable(principal.tenant, id, body.reason ?? 'disabled by user'))!;
      if (before.enabled)
        await deps.audit.append({
          tenantId: principal.tenant,
          actor: principal.subject,
          actorKind: 'user',
          action: 'webhook.disable',
          resource: `webhook:${principal.tenant}/${id}`,
          outcome: 'allowed',
          detail: { webhook_id: id, reason: hook.disabled_reason },
        });
      res.json(view(hook));
    })
    .all(methodNotAllowed('POST'));

  router
    .route('/webhooks/:id/deliveries')
    .get(async (req, res) => {
      const { id } = parseOrThrow(webhookPathParams, req.params, 'path parameters');
      const q = parseOrThrow(listDeliveriesQuery, req.query, 'query parameters');
      const principal = await allow(res, 'webhooks:read');
      if (!(await deps.store.get(principal.tenant, id))) throw new NotFoundError();
      const rows = await deps.store.listDeliveries(principal.tenant, id, q.limit ?? 50);
      res.json({ items: rows.map(deliveryView) });
    })
    .all(methodNotAllowed('GET', 'HEAD'));
}

const READERS = ['admin', 'auditor'] as const;

/** The webhook routes for the registry (api/openapi.ts). */
export function webhookOperations(): ApiOperation[] {
  return [
    {
      method: 'post',
      mount: '/v1',
      path: '/webhooks',
      operationId: 'createWebhook',
      summary: 'Create a webhook',
      description:
        'Committed events of the tenant that pass `filter` (labels, sites, cameras; empty: all) are POSTed to ' +
        '`url` as `{"type":"vigil.event.committed","event":{...}}`, signed with RFC 9421 HTTP Message Signatures ' +
        '(hmac-sha256 keyed with the secret; Content-Digest, created, nonce, keyid = the webhook id). https only; ' +
        'private and loopback addresses are refused. The secret is in this response only: with an ' +
        'Idempotency-Key, a repeat gets 409 (idempotent-result-unavailable) instead of it.',
      tag: 'Webhooks',
      authorization: {
        action: 'webhooks:write',
        roles: ['admin'],
        resource: ({ tenant }) => ({ type: 'webhooks', tenant }),
      },
      body: createWebhookBody,
      success: { status: 201, description: 'The webhook, with its secret.', schema: createdWebhookSchema },
      withholdSuccessBody: 'the response holds the signing secret, which must be shown once only',
    },
    {
      method: 'get',
      mount: '/v1',
      path: '/webhooks',
      operationId: 'listWebhooks',
      summary: 'List webhooks',
      description: 'The tenant’s webhooks, never with their secrets.',
      tag: 'Webhooks',
      authorization: { action: 'webhooks:read', roles: READERS },
      success: { status: 200, description: 'The webhooks.', schema: webhookListSchema },
    },
    {
      method: 'post',
      mount: '/v1',
      path: '/webhooks/:id/disable',
      operationId: 'disableWebhook',
      summary: 'Disable a webhook',
      description: 'No further deliveries (queued ones are dropped). The webhook and its history are kept.',
      tag: 'Webhooks',
      authorization: {
        action: 'webhooks:write',
        roles: ['admin'],
        resource: ({ tenant }) => ({ type: 'webhooks', tenant }),
      },
      params: webhookPathParams,
      body: disableWebhookBody,
      success: { status: 200, description: 'The disabled webhook.', schema: webhookViewSchema },
      errors: [404],
    },
    {
      method: 'get',
      mount: '/v1',
      path: '/webhooks/:id/deliveries',
      operationId: 'listWebhookDeliveries',
      summary: 'Recent delivery attempts of a webhook',
      tag: 'Webhooks',
      authorization: { action: 'webhooks:read', roles: READERS },
      params: webhookPathParams,
      query: listDeliveriesQuery,
      queryDocs: { limit: 'At most this many (1 to 200, default 50).' },
      success: { status: 200, description: 'The attempts, newest first.', schema: deliveryListSchema },
      errors: [404],
    },
  ];
}
