import type { Router } from 'express';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Authorizer } from '../auth/authorize.js';
import { principalOf, requireAllowed } from '../api/authenticate.js';
import { cursorParam, limitParam, parseOrThrow } from '../api/events-query.js';
import { methodNotAllowed } from '../api/problem.js';
import type { Database } from '../storage/tables.js';

/*
 * GET /v1/audit-log: the caller's tenant's entries, newest first, cursor = the last seq of a page. Auditors and
 * admins read it (site-scoped users never: the log is tenant-wide). Entries carry their chain hashes, so an
 * export can be checked offline against `audit:verify`; the chain itself spans tenants, so verifying it is an
 * operator's job (the verify command), not an API call.
 */

const rfc3339 = z.iso.datetime({
  offset: true,
  error: 'must be an RFC 3339 date-time, e.g. 2026-01-31T12:00:00Z',
});
/** The audit log's cursor: the last seq of a page, a positive bigint (a larger one would fail the query). */
const MAX_SEQ = 2n ** 63n - 1n;
export function decodeSeqCursor(text: string): string | null {
  return /^[1-9]\d{0,18}$/.test(text) && BigInt(text) <= MAX_SEQ ? text : null;
}

export function listAuditQuerySchema(maxPageSize: number) {
  return z
    .strictObject({
      action: z
        .string()
        .regex(/^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/, 'must be an action such as media.read')
        .optional(),
      actor: z.string().min(1).max(256).optional(),
      outcome: z.enum(['allowed', 'denied', 'failed']).optional(),
      since: rfc3339.optional(),
      until: rfc3339.optional(),
      limit: limitParam(maxPageSize).optional(),
      cursor: cursorParam(decodeSeqCursor).optional(),
    })
    .superRefine((q, ctx) => {
      if (q.since !== undefined && q.until !== undefined && Date.parse(q.since) >= Date.parse(q.until))
        ctx.addIssue({ code: 'custom', path: ['until'], message: 'must be later than since' });
    });
}

export const auditEntrySchema = z
  .object({
    seq: z.string().meta({ description: 'Position in the hash chain (a decimal integer as a string).' }),
    at: z.iso.datetime({ offset: true }),
    actor: z.string(),
    actor_kind: z.enum(['user', 'device', 'service', 'system']),
    action: z.string(),
    resource: z.string().nullable(),
    outcome: z.enum(['allowed', 'denied', 'failed']),
    detail: z.record(z.string(), z.unknown()),
    request_id: z.string().nullable(),
    prev_hash: z.string().meta({ description: 'Hex SHA-256 of the previous entry.' }),
    hash: z
      .string()
      .meta({ description: 'Hex SHA-256 of this entry (RFC 8785 canonical JSON + prev_hash).' }),
  })
  .meta({ id: 'AuditEntry' });

export const auditPageSchema = z
  .object({ items: z.array(auditEntrySchema), next_cursor: z.string().nullable() })
  .meta({ id: 'AuditPage' });

export interface AuditRoutesDeps {
  db: Kysely<Database>;
  authorizer: Authorizer;
  log: Logger;
  maxPageSize: number;
}

export function mountAuditRoutes(router: Router, deps: AuditRoutesDeps): void {
  const query = listAuditQuerySchema(deps.maxPageSize);
  router
    .route('/audit-log')
    .get(async (req, res) => {
      const q = parseOrThrow(query, req.query, 'query parameters');
      const principal = principalOf(res);
      await requireAllowed(deps.authorizer, deps.log, principal, 'audit:read', {
        type: 'audit-log',
        tenant: principal.tenant,
      });
      const limit = q.limit ?? Math.min(50, deps.maxPageSize);
      let sel = deps.db.selectFrom('audit_log').selectAll().where('tenant_id', '=', principal.tenant);
      if (q.action !== undefined) sel = sel.where('action', '=', q.action);
      if (q.actor !== undefined) sel = sel.where('actor', '=', q.actor);
      if (q.outcome !== undefined) sel = sel.where('outcome', '=', q.outcome);
      if (q.since !== undefined) sel = sel.where('at', '>=', new Date(q.since));
      if (q.until !== undefined) sel = sel.where('at', '<', new Date(q.until));
      if (q.cursor !== undefined) sel = sel.where('seq', '<', q.cursor);
      const rows = await sel
        .orderBy('seq', 'desc')
        .limit(limit + 1)
        .execute();
      const page = rows.slice(0, limit);
      res.json({
        items: page.map((r) => ({
          seq: String(r.seq),
          at: r.at.toISOString(),
          actor: r.actor,
          actor_kind: r.actor_kind,
          action: r.action,
          resource: r.resource,
          outcome: r.outcome,
          detail: r.detail,
          request_id: r.request_id,
          prev_hash: r.prev_hash.toString('hex'),
          hash: r.hash.toString('hex'),
        })),
        next_cursor: rows.length > limit ? String(page[page.length - 1]!.seq) : null,
      });
    })
    .all(methodNotAllowed('GET', 'HEAD'));
}
