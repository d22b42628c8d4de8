import type { RequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { deviceRef, type AuditLog } from '../audit/audit-log.js';
import type { Action, Authorizer, Resource } from '../auth/authorize.js';
import { AccessDeniedError, AuthenticationError } from '../auth/errors.js';
import type { TokenVerifier } from '../auth/jwt.js';
import type { Principal } from '../auth/principal.js';
import { NotFoundError } from './errors.js';

const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

/**
 * Requires `Authorization: Bearer <jwt>` on every request it guards and stores the verified principal in
 * `res.locals.principal`. Failures become one generic 401; the specific reason is logged and counted.
 */
export function authenticate(verifier: TokenVerifier, log: Logger, metrics: Registry): RequestHandler {
  const failures = new Counter({
    name: 'vigil_cloud_api_auth_failures_total',
    help: 'Bearer tokens refused, by reason (missing, malformed, algorithm, signature, unknown_key, expired, claims, lifetime, other)',
    labelNames: ['reason'],
    registers: [metrics],
  });
  return async (req, res, next) => {
    try {
      const header = req.get('authorization');
      if (header === undefined) throw new AuthenticationError('missing', 'no Authorization header');
      const match = BEARER.exec(header);
      if (!match?.[1]) throw new AuthenticationError('malformed', 'Authorization is not a Bearer token');
      res.locals.principal = await verifier.verify(match[1]);
      next();
    } catch (err) {
      if (err instanceof AuthenticationError) {
        failures.inc({ reason: err.reason });
        log.info(
          { reason: err.reason, detail: err.logDetail, method: req.method, path: req.path, ip: req.ip },
          'bearer token refused',
        );
      }
      next(err);
    }
  };
}

/** The principal that {@link authenticate} verified for this request. */
export function principalOf(res: Response): Principal {
  const p = (res.locals as { principal?: Principal }).principal;
  if (!p) throw new Error('no principal: the route is not behind authenticate()');
  return p;
}

/** Actions that change something, with the audit action a denial of them is recorded as. */
const AUDITED_DENIALS: Readonly<Record<Exclude<Action, `${string}:read`>, string>> = {
  'events:review': 'event.review',
  'enrollment-tokens:create': 'enrollment_token.create',
  'devices:revoke': 'device.revoke',
  'configs:write': 'config.write',
  'rollouts:write': 'rollout.write',
  'media:erase': 'media.erase',
  'webhooks:write': 'webhook.write',
  'alerts:write': 'alert.write',
  'alerts:cancel': 'alert.cancel',
  'releases:publish': 'release.publish',
  'retention:write': 'retention_policy.write',
  'holds:write': 'legal_hold.write',
  'erasures:write': 'erasure.request',
  'exports:create': 'evidence.export',
};

function resourceRef(r: Resource): string {
  switch (r.type) {
    case 'device':
      return deviceRef(r.tenant, r.id);
    case 'event':
      return `event:${r.tenant}/${r.id}`;
    case 'media':
      return `media:${r.tenant}/${r.id}`;
    case 'enrollment-tokens':
      return r.site === undefined
        ? `enrollment_tokens:${r.tenant}`
        : `enrollment_tokens:${r.tenant}/${r.site}`;
    default:
      return `${r.type}:${r.tenant}`;
  }
}

/**
 * Asks the authorizer; throws AccessDeniedError (403) on deny. Every decision is logged. With `audit`, a denied
 * mutating action (anything but `*:read`) is also appended to the audit log (outcome `denied`); if that append
 * fails, the request is still denied (the failure is logged and counted by the audit log).
 */
export async function requireAllowed(
  authorizer: Authorizer,
  log: Logger,
  principal: Principal,
  action: Action,
  resource: Resource,
  audit?: AuditLog,
): Promise<void> {
  const decision = await authorizer.authorize(principal, action, resource);
  const entry = {
    sub: principal.subject,
    tenant: principal.tenant,
    action,
    resource,
    reason: decision.reason,
  };
  if (!decision.allowed) {
    log.info({ ...entry, decision: 'deny' }, 'authorization denied');
    const audited = (AUDITED_DENIALS as Partial<Record<Action, string>>)[action];
    if (audit && audited !== undefined)
      await audit
        .append({
          tenantId: resource.tenant,
          actor: principal.subject,
          actorKind: 'user',
          action: audited,
          resource: resourceRef(resource),
          outcome: 'denied',
          detail: { reason: decision.reason, principal_tenant: principal.tenant, roles: principal.roles },
        })
        .catch(() => undefined);
    throw new AccessDeniedError(`You are not allowed to perform ${action}.`);
  }
  log.debug({ ...entry, decision: 'allow' }, 'authorization allowed');
}

/**
 * The second question about a single resource, once it is loaded with its attributes (site, data class):
 * {@link requireAllowed}, but a deny is answered like a missing row (404), so a caller never learns that a
 * resource it may not see exists (another site's device, a personal-data event).
 */
export async function requireVisible(
  authorizer: Authorizer,
  log: Logger,
  principal: Principal,
  action: Action,
  resource: Resource,
  audit?: AuditLog,
): Promise<void> {
  try {
    await requireAllowed(authorizer, log, principal, action, resource, audit);
  } catch (err) {
    if (err instanceof AccessDeniedError) throw new NotFoundError();
    throw err;
  }
}
