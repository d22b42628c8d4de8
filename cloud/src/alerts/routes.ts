import { createPrivateKey, X509Certificate } from 'node:crypto';
import type { Router } from 'express';
import type { Logger } from 'pino';
import { z } from 'zod';
import { principalOf, requireAllowed } from '../api/authenticate.js';
import { NotFoundError, ValidationError } from '../api/errors.js';
import { parseOrThrow } from '../api/events-query.js';
import { methodNotAllowed } from '../api/problem.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Action, Authorizer } from '../auth/authorize.js';
import type { Principal } from '../auth/principal.js';
import { UnsafeUrlError, validateWebhookUrl, type UrlPolicy } from '../integrations/ssrf.js';
import { minutesOf } from './rules.js';
import { cancelIncident, replayMessage } from './operations.js';
import { MAX_ENABLED_RULES_PER_TENANT, MAX_TARGETS_PER_TENANT, type AlertStore } from './store.js';
import * as v from './views.js';

export * from './views.js';

const token = z.string().regex(/^[A-Za-z0-9_-]{1,63}$/, 'must be 1-63 letters, digits, - or _');
const list = <T extends z.ZodType>(item: T) => z.array(item).max(50).optional();
const hhmm = z.string().refine((s) => minutesOf(s) !== undefined, 'must be HH:MM (UTC)');

export const ruleMatchSchema = z.strictObject({
  labels: list(z.string().min(1).max(64)),
  zones: list(z.string().min(1).max(64)),
  sites: list(token),
  cameras: list(token),
  schedule: z
    .strictObject({
      days: z.array(z.number().int().min(0).max(6)).max(7).optional(),
      from: hhmm.optional(),
      to: hhmm.optional(),
    })
    .optional(),
  min_dwell_seconds: z.number().int().min(0).max(86_400).optional(),
  min_score: z.number().min(0).max(1).optional(),
});
export const ruleCapSchema = z.strictObject({
  event: z.string().trim().min(1).max(100),
  urgency: z.enum(['Immediate', 'Expected', 'Future', 'Past', 'Unknown']).default('Immediate'),
  severity: z.enum(['Extreme', 'Severe', 'Moderate', 'Minor', 'Unknown']).default('Severe'),
  certainty: z.enum(['Observed', 'Likely', 'Possible', 'Unlikely', 'Unknown']).default('Observed'),
  headline: z.string().trim().min(1).max(160).optional(),
});
export const createRuleBody = z.strictObject({
  name: z.string().trim().min(1).max(200),
  match: ruleMatchSchema.default({}),
  cap: ruleCapSchema,
  target_ids: z.array(z.uuid()).min(1).max(MAX_TARGETS_PER_TENANT),
});
export const updateRuleBody = z.strictObject({
  name: z.string().trim().min(1).max(200).optional(),
  match: ruleMatchSchema.optional(),
  cap: ruleCapSchema.optional(),
  target_ids: z.array(z.uuid()).min(1).max(MAX_TARGETS_PER_TENANT).optional(),
  enabled: z.boolean().optional(),
});
const pem = (kind: string) =>
  z
    .string()
    .max(64 * 1024)
    .regex(new RegExp(`-----BEGIN ${kind}-----`), `must be a PEM ${kind}`);
export const createTargetBody = z.strictObject({
  name: z.string().trim().min(1).max(200),
  /** What the target is sent: CAP 1.2 XML, or the EIDO-style JSON document. */
  format: z.enum(['cap', 'eido']).default('cap'),
  /** push: POSTed to url (with auth); pull: only in the target's Atom feed (no url, no auth). */
  delivery: z.enum(['push', 'pull']).default('push'),
  url: z.string().min(1).max(2048).optional(),
  auth: z.enum(['mtls', 'signature']).optional(),
  client_cert_pem: pem('CERTIFICATE').optional(),
  client_key_pem: pem('[A-Z ]*PRIVATE KEY').optional(),
  ca_pem: pem('CERTIFICATE').optional(),
});
export const idParams = z.strictObject({ id: z.uuid() });
export const siteParams = z.strictObject({ id: token });
export const cancelBody = z.strictObject({ reason: z.string().trim().min(1).max(500) });
const limit = z
  .string()
  .regex(/^\d{1,3}$/, 'must be an integer from 1 to 500')
  .transform(Number)
  .refine((n) => n >= 1 && n <= 500, 'must be an integer from 1 to 500')
  .optional();
export const incidentsQuery = z.strictObject({
  state: z.enum(['pending', 'alerted', 'cancelled', 'ended']).optional(),
  limit,
});
export const messagesQuery = z.strictObject({
  incident: z.uuid().optional(),
  target: z.uuid().optional(),
  state: z.enum(['pending', 'retrying', 'delivered', 'dead']).optional(),
  limit,
});
const latLon = z.tuple([z.number().min(-90).max(90), z.number().min(-180).max(180)]);
export const siteLocationBody = z
  .strictObject({
    circle: z
      .strictObject({
        lat: z.number().min(-90).max(90),
        lon: z.number().min(-180).max(180),
        radius_km: z.number().min(0).max(20_000),
      })
      .optional(),
    polygon: z.array(latLon).min(3).max(500).optional(),
  })
  // One shape, not a union: a wrong field is then named by its path (circle.lat), not just "(body)".
  .refine((b) => (b.circle === undefined) !== (b.polygon === undefined), 'exactly one of circle or polygon');

export interface AlertRoutesDeps {
  store: AlertStore;
  policy: UrlPolicy;
  audit: AuditLog;
  authorizer: Authorizer;
  log: Logger;
  senderDomain: string;
  now: () => Date;
}

/** A push target needs url and auth; a pull-only one has neither (nor a certificate): its feed token is all. */
function checkDelivery(body: z.output<typeof createTargetBody>, policy: UrlPolicy): void {
  if (body.delivery === 'pull') {
    const extra = (['url', 'auth', 'client_cert_pem', 'client_key_pem', 'ca_pem'] as const).filter(
      (k) => body[k] !== undefined,
    );
    if (extra.length > 0)
      throw new ValidationError(
        extra.map((k) => ({ path: k, message: 'a pull-only target has no url, auth or certificate' })),
      );
    return;
  }
  const missing = (['url', 'auth'] as const).filter((k) => body[k] === undefined);
  if (missing.length > 0)
    throw new ValidationError(missing.map((k) => ({ path: k, message: `a push target needs ${k}` })));
  try {
    validateWebhookUrl(body.url!, policy);
  } catch (err) {
    if (err instanceof UnsafeUrlError) throw new ValidationError([{ path: 'url', message: err.message }]);
    throw err;
  }
}

/** Checks that the key and certificate parse and belong together (a typo must fail here, not at 3 a.m.). */
function checkMtls(body: z.output<typeof createTargetBody>): void {
  if (body.auth !== 'mtls') return;
  if (!body.client_cert_pem || !body.client_key_pem)
    throw new ValidationError([
      { path: 'client_cert_pem', message: 'mtls needs client_cert_pem and client_key_pem' },
    ]);
  try {
    const cert = new X509Certificate(body.client_cert_pem);
    if (!cert.checkPrivateKey(createPrivateKey(body.client_key_pem)))
      throw new Error('the key does not match');
    if (body.ca_pem) new X509Certificate(body.ca_pem);
  } catch (err) {
    throw new ValidationError([
      { path: 'client_key_pem', message: `unusable certificate or key: ${(err as Error).message}` },
    ]);
  }
}

/** /v1/alerts/* and PUT /v1/sites/:id/location (tenant-wide; Cedar alerts:read, alerts:write, alerts:cancel). */
export function mountAlertRoutes(router: Router, deps: AlertRoutesDeps): void {
  const allow = async (res: Parameters<typeof principalOf>[0], action: Action): Promise<Principal> => {
    const principal = principalOf(res);
    await requireAllowed(
      deps.authorizer,
      deps.log,
      principal,
      action,
      { type: 'alerts', tenant: principal.tenant },
      deps.audit,
    );
    return principal;
  };
  const audit = (p: Principal, action: string, resource: string, detail: Record<string, unknown>) =>
    deps.audit.append({
      tenantId: p.tenant,
      actor: p.subject,
      actorKind: 'user',
      action,
      resource,
      outcome: 'allowed',
      detail,
    });

  router
    .route('/alerts/targets')
    .post(async (req, res) => {
      const p = await allow(res, 'alerts:write');
      const body = parseOrThrow(createTargetBody, req.body ?? {}, 'body');
      checkDelivery(body, deps.policy);
      checkMtls(body);
      if ((await deps.store.countTargets(p.tenant)) >= MAX_TARGETS_PER_TENANT)
        throw new ValidationError([
          { path: 'url', message: `at most ${MAX_TARGETS_PER_TENANT} targets per tenant` },
        ]);
      const made = await deps.store.createTarget({
        tenantId: p.tenant,
        name: body.name,
        url: body.url ?? null,
        auth: body.auth ?? 'feed',
        format: body.format,
        delivery: body.delivery,
        clientCertPem: body.client_cert_pem,
        clientKeyPem: body.client_key_pem,
        caPem: body.ca_pem,
        createdBy: p.subject,
      });
      await audit(p, 'alert_target.create', `alert_target:${p.tenant}/${made.target.id}`, {
        target_id: made.target.id,
        url: made.target.url,
        auth: made.target.auth,
        format: made.target.format,
        delivery: made.target.delivery,
      });
      res.status(201).json({ ...v.targetView(made.target), secret: made.secret, feed_token: made.feedToken });
    })
    .get(async (_req, res) => {
      const p = await allow(res, 'alerts:read');
      res.json({ items: (await deps.store.listTargets(p.tenant)).map(v.targetView) });
    })
    .all(methodNotAllowed('GET', 'HEAD', 'POST'));

  for (const [verb, enabled] of [
    ['disable', false],
    ['enable', true],
  ] as const)
    router
      .route(`/alerts/targets/:id/${verb}`)
      .post(async (req, res) => {
        const { id } = parseOrThrow(idParams, req.params, 'path parameters');
        const p = await allow(res, 'alerts:write');
        const t = await deps.store.setTargetEnabled(p.tenant, id, enabled);
        if (!t) throw new NotFoundError();
        await audit(p, `alert_target.${verb}`, `alert_target:${p.tenant}/${id}`, { target_id: id });
        res.json(v.targetView(t));
      })
      .all(methodNotAllowed('POST'));

  const checkTargets = async (tenant: string, ids: readonly string[]): Promise<void> => {
    const known = new Set((await deps.store.listTargets(tenant)).map((t) => t.id));
    const unknown = ids.filter((id) => !known.has(id));
    if (unknown.length > 0)
      throw new ValidationError([{ path: 'target_ids', message: `no such target: ${unknown.join(', ')}` }]);
  };

  router
    .route('/alerts/rules')
    .post(async (req, res) => {
      const p = await allow(res, 'alerts:write');
      const body = parseOrThrow(createRuleBody, req.body ?? {}, 'body');
      await checkTargets(p.tenant, body.target_ids);
      if ((await deps.store.countEnabledRules(p.tenant)) >= MAX_ENABLED_RULES_PER_TENANT)
        throw new ValidationError([
          { path: 'name', message: `at most ${MAX_ENABLED_RULES_PER_TENANT} enabled rules per tenant` },
        ]);
      const rule = await deps.store.createRule({
        tenantId: p.tenant,
        name: body.name,
        match: body.match,
        cap: body.cap,
        targetIds: body.target_ids,
        createdBy: p.subject,
      });
      await audit(p, 'alert_rule.create', `alert_rule:${p.tenant}/${rule.id}`, v.ruleView(rule));
      res.status(201).json(v.ruleView(rule));
    })
    .get(async (_req, res) => {
      const p = await allow(res, 'alerts:read');
      res.json({ items: (await deps.store.listRules(p.tenant)).map(v.ruleView) });
    })
    .all(methodNotAllowed('GET', 'HEAD', 'POST'));

  router
    .route('/alerts/rules/:id')
    .patch(async (req, res) => {
      const { id } = parseOrThrow(idParams, req.params, 'path parameters');
      const p = await allow(res, 'alerts:write');
      const body = parseOrThrow(updateRuleBody, req.body ?? {}, 'body');
      if (body.target_ids) await checkTargets(p.tenant, body.target_ids);
      const before = await deps.store.getRule(p.tenant, id);
      if (!before) throw new NotFoundError();
      const rule = (await deps.store.updateRule(p.tenant, id, {
        name: body.name,
        match: body.match,
        cap: body.cap,
        targetIds: body.target_ids,
        enabled: body.enabled,
      }))!;
      await audit(p, 'alert_rule.update', `alert_rule:${p.tenant}/${id}`, {
        before: v.ruleView(before),
        after: v.ruleView(rule),
      });
      res.json(v.ruleView(rule));
    })
    .all(methodNotAllowed('PATCH'));

  router
    .route('/alerts/incidents')
    .get(async (req, res) => {
      const q = parseOrThrow(incidentsQuery, req.query, 'query parameters');
      const p = await allow(res, 'alerts:read');
      res.json({
        items: (await deps.store.listIncidents(p.tenant, q.limit ?? 50, q.state)).map(v.incidentView),
      });
    })
    .all(methodNotAllowed('GET', 'HEAD'));

  router
    .route('/alerts/incidents/:id/cancel')
    .post(async (req, res) => {
      const { id } = parseOrThrow(idParams, req.params, 'path parameters');
      const p = await allow(res, 'alerts:cancel');
      const body = parseOrThrow(cancelBody, req.body ?? {}, 'body');
      const out = await cancelIncident(deps, p, id, body.reason);
      if (!out) throw new NotFoundError();
      res.json(v.incidentView(out.incident));
    })
    .all(methodNotAllowed('POST'));

  router
    .route('/alerts/messages')
    .get(async (req, res) => {
      const q = parseOrThrow(messagesQuery, req.query, 'query parameters');
      const p = await allow(res, 'alerts:read');
      const rows = await deps.store.listMessages(
        p.tenant,
        { incidentId: q.incident, targetId: q.target, state: q.state },
        q.limit ?? 50,
      );
      res.json({ items: rows.map(v.messageView) });
    })
    .all(methodNotAllowed('GET', 'HEAD'));

  router
    .route('/alerts/messages/:id/replay')
    .post(async (req, res) => {
      const { id } = parseOrThrow(
        z.strictObject({ id: z.string().min(1).max(300) }),
        req.params,
        'path parameters',
      );
      const p = await allow(res, 'alerts:write');
      const m = await replayMessage(deps, p, id);
      if (!m) throw new NotFoundError();
      res.json(v.messageView(m));
    })
    .all(methodNotAllowed('POST'));

  router
    .route('/sites/:id/location')
    .put(async (req, res) => {
      const { id } = parseOrThrow(siteParams, req.params, 'path parameters');
      const p = await allow(res, 'alerts:write');
      const body = parseOrThrow(siteLocationBody, req.body ?? {}, 'body');
      const location = body.circle ? { circle: body.circle } : { polygon: body.polygon! };
      if (!(await deps.store.setSiteLocation(p.tenant, id, location))) throw new NotFoundError();
      await audit(p, 'site.location_set', `site:${p.tenant}/${id}`, { location });
      res.json({ site_id: id, location });
    })
    .all(methodNotAllowed('PUT'));
}
