import type { RequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { Action, Authorizer, Resource } from '../auth/authorize.js';
import { AccessDeniedError, AuthenticationError } from '../auth/errors.js';
import type { TokenVerifier } from '../auth/jwt.js';
import type { Principal } from '../auth/principal.js';

const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

/**
 * Requires `Authorization: Bearer <jwt>` on every request it guards and stores the verified principal in
 * `res.locals.principal`. Failures become one generic 401; the specific reason is logged and counted.
 */
export function authenticate(verifier: TokenVerifier, log: Logger, metrics: Registry): RequestHandler {
  const failures = new Counter({
    name: 'vigil_cloud_api_auth_failures_total',
    help: 'Bearer tokens refused, by reason (missing, malformed, algorithm, signature, unknown_key, expired, claims, other)',
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

/** Asks the authorizer; throws AccessDeniedError (403) on deny. Every decision is logged. */
export async function requireAllowed(
  authorizer: Authorizer,
  log: Logger,
  principal: Principal,
  action: Action,
  resource: Resource,
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
    throw new AccessDeniedError(`You are not allowed to perform ${action}.`);
  }
  log.debug({ ...entry, decision: 'allow' }, 'authorization allowed');
}
