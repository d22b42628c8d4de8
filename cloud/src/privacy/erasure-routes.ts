import type { Router } from 'express';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { AuditLog } from '../audit/audit-log.js';
import type { Authorizer } from '../auth/authorize.js';
import { principalOf, requireAllowed } from '../api/authenticate.js';
import { NotFoundError } from '../api/errors.js';
import { parseOrThrow } from '../api/events-query.js';
import type { ApiOperation } from '../api/openapi.js';
import { methodNotAllowed } from '../api/problem.js';
import type { MediaStore } from '../media/store.js';
import type { Database } from '../storage/tables.js';
import { ExportUnavailableError } from './evidence-errors.js';
import type { ExportKey } from './evidence.js';
import { planExport, writeExport, type ExportLimits } from './export.js';
import { erasureViewSchema, toErasureView, type ErasureStore } from './erasure-store.js';
import { reason } from './schemas.js';
import { scopeSchema, type ExportScope } from './scope.js';

/*
 * POST /v1/erasures, GET /v1/erasures/:id (erasure requests, run by privacy/erasure-job.ts), POST /v1/exports
 * (an evidence archive, streamed) and GET /v1/exports/public-key. All tenant-wide: a request names ids inside the
 * caller's tenant, and everything is looked up with the tenant in the query, so another tenant's ids select
 * nothing (an erasure erases nothing of theirs, an export of their event ids is a 404 like a missing id).
 */

export const createErasureBody = z.strictObject({
  scope: scopeSchema,
  reason: reason.meta({ description: 'Why (kept on the request, not on the audit log).' }),
});
export const erasurePathParams = z.strictObject({ id: z.uuid() });
export const createExportBody = z.strictObject({
  scope: scopeSchema.refine((s) => s.kind === 'event' || s.kind === 'track' || s.kind === 'camera', {
    message: 'an export scope is event ids, a track, or a camera and time range',
  }),
  reason: reason.meta({
    description: 'Why (for the requester; the audit entry holds the scope and digest).',
  }),
});
export const exportPublicKeySchema = z
  .object({
    alg: z.literal('EdDSA'),
    crv: z.literal('Ed25519'),
    kid: z.string(),
    pem: z.string(),
    jwk: z.record(z.string(), z.string()),
  })
  .meta({ id: 'ExportPublicKey' });

export interface ErasureRoutesDeps {
  db: Kysely<Database>;
  erasures: ErasureStore;
  store: MediaStore | undefined;
  audit: AuditLog;
  authorizer: Authorizer;
  log: Logger;
  now: () => Date;
  /** Undefined: privacy.export.signingKeyFile is not configured (exports are a 503). */
  exportKey: ExportKey | undefined;
  exportLimits: ExportLimits;
  /** A request was created: the erasure job should look now. */
  nudge: () => void;
}

const tenantWide = ({ tenant }: { tenant: string }) => ({ type: 'privacy' as const, tenant });

/** The privacy routes for the registry (api/openapi.ts). */
export function erasureOperations(): ApiOperation[] {
  const tag = 'Privacy';
  return [
    {
      method: 'post',
      mount: '/v1',
      path: '/erasures',
      operationId: 'createErasure',
      summary: 'Request a scoped erasure',
      description:
        'Erases everything stored in a scope of the caller’s tenant (event ids, a track, a camera and time range, ' +
        'a device, a site) in the background: media bytes deleted, events tombstoned (personal fields cleared), ' +
        'items under a legal hold skipped and counted. Answers 202 with the request; follow it with GET ' +
        '/v1/erasures/{id}. The audit log records the scope ids and, at the end, the counts.',
      tag,
      authorization: { action: 'erasures:write', roles: ['admin'], resource: tenantWide },
      body: createErasureBody,
      success: { status: 202, description: 'The request, pending.', schema: erasureViewSchema },
    },
    {
      method: 'get',
      mount: '/v1',
      path: '/erasures/:id',
      operationId: 'getErasure',
      summary: 'Get an erasure request and its progress',
      description: 'State, phase and counts (erased, held, failed). Another tenant’s id is a 404.',
      tag,
      authorization: { action: 'erasures:read', roles: ['admin', 'auditor'] },
      params: erasurePathParams,
      success: { status: 200, description: 'The request.', schema: erasureViewSchema },
      errors: [404],
    },
    {
      method: 'post',
      mount: '/v1',
      path: '/exports',
      operationId: 'createExport',
      summary: 'Export evidence (signed archive)',
      description:
        'A tar archive of the scope’s events (events.json), media index (media.json) and media bytes, with a ' +
        'manifest of every file’s SHA-256 signed with the cloud’s export key (manifest.jws, EdDSA). Verify it ' +
        'offline with `vigil export verify`. The export is on the audit log (who, when, scope, manifest digest). ' +
        'A scope over config privacy.export limits is refused (422) before anything is sent.',
      tag,
      authorization: { action: 'exports:create', roles: ['admin'], resource: tenantWide },
      body: createExportBody,
      success: { status: 200, description: 'The archive.', contentType: 'application/x-tar' },
      errors: [404, 422, 503],
    },
    {
      method: 'get',
      mount: '/v1',
      path: '/exports/public-key',
      operationId: 'getExportPublicKey',
      summary: 'The public key that verifies evidence archives',
      description: 'Any authenticated caller may fetch it: it is public, the same for every tenant.',
      tag,
      authorization: 'authenticated',
      success: { status: 200, description: 'The Ed25519 public key.', schema: exportPublicKeySchema },
      errors: [503],
    },
  ];
}

export function mountErasureRoutes(router: Router, deps: ErasureRoutesDeps): void {
  router
    .route('/erasures')
    .post(async (req, res) => {
      const principal = principalOf(res);
      await requireAllowed(
        deps.authorizer,
        deps.log,
        principal,
        'erasures:write',
        tenantWide(principal),
        deps.audit,
      );
      const body = parseOrThrow(createErasureBody, req.body ?? {}, 'body');
      const row = await deps.erasures.create(principal.tenant, body.scope, body.reason, principal.subject);
      deps.nudge();
      res.status(202).set('Location', `${req.baseUrl}/erasures/${row.id}`).json(toErasureView(row));
    })
    .all(methodNotAllowed('POST'));

  router
    .route('/erasures/:id')
    .get(async (req, res) => {
      const { id } = parseOrThrow(erasurePathParams, req.params, 'path parameters');
      const principal = principalOf(res);
      await requireAllowed(deps.authorizer, deps.log, principal, 'erasures:read', tenantWide(principal));
      const row = await deps.erasures.get(principal.tenant, id);
      if (row === null) throw new NotFoundError();
      res.json(toErasureView(row));
    })
    .all(methodNotAllowed('GET', 'HEAD'));

  router
    .route('/exports/public-key')
    .get((_req, res) => {
      const key = deps.exportKey;
      if (!key)
        throw new ExportUnavailableError(
          'No export signing key is configured (privacy.export.signingKeyFile).',
        );
      res.json({
        alg: 'EdDSA',
        crv: 'Ed25519',
        kid: key.keyId,
        pem: key.publicPem,
        jwk: key.publicKey.export({ format: 'jwk' }) as Record<string, string>,
      });
    })
    .all(methodNotAllowed('GET', 'HEAD'));

  router
    .route('/exports')
    .post(async (req, res) => {
      const principal = principalOf(res);
      await requireAllowed(
        deps.authorizer,
        deps.log,
        principal,
        'exports:create',
        tenantWide(principal),
        deps.audit,
      );
      const body = parseOrThrow(createExportBody, req.body ?? {}, 'body');
      const key = deps.exportKey;
      if (!key)
        throw new ExportUnavailableError(
          'No export signing key is configured (privacy.export.signingKeyFile).',
        );
      const scope: ExportScope = body.scope;
      const plan = await planExport(deps.db, principal.tenant, scope, deps.exportLimits);
      res.status(200).set({
        'Content-Type': 'application/x-tar',
        'Content-Disposition': 'attachment; filename="evidence.tar"',
        'X-Content-Type-Options': 'nosniff',
      });
      try {
        const { manifest, manifestSha256 } = await writeExport(
          res,
          plan,
          scope,
          { tenant: principal.tenant, actor: principal.subject },
          { store: deps.store, audit: deps.audit, key, now: deps.now },
        );
        res.end();
        deps.log.info(
          {
            tenant: principal.tenant,
            export: manifest.export_id,
            manifest: manifestSha256,
            files: manifest.files.length,
          },
          'evidence export',
        );
      } catch (err) {
        // Headers are gone: the only honest answer left is a broken stream (no manifest: verifies as nothing).
        deps.log.error({ err, tenant: principal.tenant }, 'evidence export failed mid-stream');
        res.destroy(err as Error);
      }
    })
    .all(methodNotAllowed('POST'));
}
