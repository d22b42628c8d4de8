import type { Router } from 'express';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { AuditLog } from '../audit/audit-log.js';
import type { Authorizer, Resource } from '../auth/authorize.js';
import {
  DEFAULT_TOKEN_TTL_SECONDS,
  MAX_TOKEN_TTL_SECONDS,
  MIN_TOKEN_TTL_SECONDS,
  type EnrollmentToken,
  type EnrollmentTokens,
} from '../fleet/enrollment.js';
import { principalOf, requireAllowed } from './authenticate.js';
import { parseOrThrow } from './events-query.js';
import { methodNotAllowed } from './problem.js';

export interface EnrollmentTokenRoutesDeps {
  tokens: EnrollmentTokens;
  audit: AuditLog;
  authorizer: Authorizer;
  log: Logger;
}

// Site ids follow the same token rules as device ids and NATS subject tokens.
const siteId = z.string().regex(/^[A-Za-z0-9_-]{1,63}$/, 'must be 1-63 letters, digits, - or _');

/** Body of POST /v1/enrollment-tokens. Unknown keys are refused. */
export const createBody = z.strictObject({
  site_id: siteId,
  ttl_seconds: z
    .number()
    .int(`must be an integer from ${MIN_TOKEN_TTL_SECONDS} to ${MAX_TOKEN_TTL_SECONDS}`)
    .min(MIN_TOKEN_TTL_SECONDS, `must be at least ${MIN_TOKEN_TTL_SECONDS}`)
    .max(MAX_TOKEN_TTL_SECONDS, `must be at most ${MAX_TOKEN_TTL_SECONDS} (7 days)`)
    .default(DEFAULT_TOKEN_TTL_SECONDS),
  note: z.string().max(500).optional(),
});

export const listQuery = z.strictObject({
  include_used: z.enum(['true', 'false']).optional(),
});

/**
 * The resource minting a token is asked about: the tenant's tokens of the body's site (when it names a valid
 * one). The rest of the body is validated after the decision, so the decision never depends on it.
 */
export function tokenCollection(tenant: string, body: unknown): Resource {
  const site = siteId.safeParse((body as Record<string, unknown> | null | undefined)?.site_id);
  return { type: 'enrollment-tokens', tenant, site: site.success ? site.data : undefined };
}

/** The API view of a token: never the secret (not stored), never its hash. */
function view(t: EnrollmentToken): Record<string, unknown> {
  return {
    id: t.id,
    tenant_id: t.tenantId,
    site_id: t.siteId,
    created_by: t.createdBy,
    created_at: t.createdAt.toISOString(),
    expires_at: t.expiresAt.toISOString(),
    used_at: t.usedAt?.toISOString() ?? null,
    used_by_device: t.usedByDevice,
    note: t.note,
  };
}

/** POST /enrollment-tokens (the secret is shown once, in the 201) and GET /enrollment-tokens. */
export function mountEnrollmentTokenRoutes(router: Router, deps: EnrollmentTokenRoutesDeps): void {
  router
    .route('/enrollment-tokens')
    .post(async (req, res) => {
      const principal = principalOf(res);
      // A token is for one site: a site-scoped installer may mint tokens for its sites. The rest of the body
      // is validated after the decision, so the decision never depends on it.
      await requireAllowed(
        deps.authorizer,
        deps.log,
        principal,
        'enrollment-tokens:create',
        tokenCollection(principal.tenant, req.body),
        deps.audit,
      );
      const body = parseOrThrow(createBody, req.body ?? {}, 'body');
      const { secret, token } = await deps.tokens.createToken({
        tenantId: principal.tenant,
        siteId: body.site_id,
        ttlSeconds: body.ttl_seconds,
        createdBy: principal.subject,
        note: body.note,
      });
      // createToken commits its own transaction, so the record follows it rather than sharing it. If this append
      // fails the request fails (500) before the secret is shown: the token exists but nobody can ever use it.
      await deps.audit.append({
        tenantId: token.tenantId,
        actor: principal.subject,
        actorKind: 'user',
        action: 'enrollment_token.create',
        resource: `enrollment_token:${token.tenantId}/${token.id}`,
        outcome: 'allowed',
        // Never the secret.
        detail: { token_id: token.id, site_id: token.siteId, ttl_seconds: body.ttl_seconds },
      });
      // The only time the secret leaves the server; it is stored as a SHA-256 alone.
      res.status(201).json({ ...view(token), token: secret });
    })
    .get(async (req, res) => {
      const q = parseOrThrow(listQuery, req.query, 'query parameters');
      const principal = principalOf(res);
      await requireAllowed(deps.authorizer, deps.log, principal, 'enrollment-tokens:read', {
        type: 'enrollment-tokens',
        tenant: principal.tenant,
      });
      const tokens = await deps.tokens.listTokens(principal.tenant, {
        includeUsed: q.include_used === 'true',
      });
      res.json({ items: tokens.map(view) });
    })
    .all(methodNotAllowed('GET', 'HEAD', 'POST'));
}
