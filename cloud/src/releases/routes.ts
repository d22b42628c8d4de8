import { createReadStream } from 'node:fs';
import type { Router } from 'express';
import type { Logger } from 'pino';
import { z } from 'zod';
import { principalOf, requireAllowed } from '../api/authenticate.js';
import { NotFoundError } from '../api/errors.js';
import { parseOrThrow } from '../api/events-query.js';
import type { ApiOperation } from '../api/openapi.js';
import { methodNotAllowed } from '../api/problem.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Authorizer } from '../auth/authorize.js';
import type { Principal } from '../auth/principal.js';
import { ReleaseError } from './errors.js';
import { parseRepoPath } from './layout.js';
import type { FsReleaseRepository } from './repository.js';
import type { ReleaseService } from './service.js';

export interface Releases {
  service: ReleaseService;
  repo: FsReleaseRepository;
  /** The tenant whose admins may publish (config releases.publisherTenant). */
  publisherTenant: string;
}

export interface ReleaseRoutesDeps {
  /** Undefined: releases.dir is not configured; every route answers 503. */
  releases: Releases | undefined;
  authorizer: Authorizer;
  log: Logger;
  audit?: AuditLog | undefined;
}

export const repoPathParams = z.strictObject({
  dir: z.enum(['metadata', 'targets']),
  file: z.string().min(1).max(200),
});
export const bundlePathParams = z.strictObject({
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be a lowercase hex SHA-256'),
});
export const metadataRoleParams = z.strictObject({ role: z.enum(['root', 'targets']) });
/** Signed TUF metadata as JSON ({signatures, signed}); checked by the release service, not by this schema. */
// The envelope of TUF root and targets metadata as the spec writes it, checked before the service verifies
// signatures and content, so that a malformed upload is a 400 naming the field (custom target fields are free).
const tufKey = z.strictObject({
  keytype: z.string().max(64),
  scheme: z.string().max(64),
  keyval: z.strictObject({ public: z.string().max(1024) }),
});
const tufRole = z.strictObject({
  keyids: z.array(z.string().max(128)).max(64),
  threshold: z.number().int().min(1).max(64),
});
const tufTarget = z.strictObject({
  length: z.number().int().min(0),
  hashes: z.record(z.string().max(32), z.string().max(256)),
  custom: z.record(z.string(), z.unknown()).optional(),
});
const signedMetadataBody = z
  .strictObject({
    signatures: z.array(z.strictObject({ keyid: z.string().max(128), sig: z.string().max(1024) })).max(64),
    signed: z.strictObject({
      _type: z.enum(['root', 'targets']),
      spec_version: z.string().max(32),
      version: z.number().int().min(1),
      expires: z.string().max(64),
      // root
      keys: z.record(z.string().max(128), tufKey).optional(),
      roles: z.record(z.string().max(64), tufRole).optional(),
      consistent_snapshot: z.boolean().optional(),
      // targets
      targets: z.record(z.string().max(200), tufTarget).optional(),
      delegations: z.record(z.string(), z.unknown()).optional(),
    }),
  })
  .meta({ id: 'TufMetadata', description: 'TUF metadata (root or targets): `signed` and its `signatures`.' });
const bundleBody = z.string().meta({ format: 'binary', description: 'The release bundle (.tar.gz).' });
const acceptedSchema = z.object({ version: z.number().int() }).meta({ id: 'ReleaseMetadataAccepted' });
const stagedSchema = z.object({ sha256: z.string(), size: z.number().int() }).meta({ id: 'StagedBundle' });
const binarySchema = z.string().meta({ format: 'binary' });

/**
 * The release repository over the admin API: GET any repository file (what devices get over mutual TLS, see
 * fleet/grpc-server.ts FetchRelease), and the publishing steps `vigil release publish` and `vigil release root
 * push` take: upload a bundle, then the targets (or root) metadata signed offline.
 */
export function mountReleaseRoutes(router: Router, deps: ReleaseRoutesDeps): void {
  const { authorizer, log, audit } = deps;
  const available = (): Releases => {
    if (!deps.releases)
      throw new ReleaseError('UNAVAILABLE', 'the release repository is not configured (releases.dir)');
    return deps.releases;
  };
  const mayPublish = async (principal: Principal, releases: Releases): Promise<void> =>
    requireAllowed(
      authorizer,
      log,
      principal,
      'releases:publish',
      { type: 'releases', tenant: releases.publisherTenant },
      audit,
    );
  const record = async (principal: Principal, action: string, resource: string, detail: object) =>
    audit?.append({
      tenantId: principal.tenant,
      actor: principal.subject,
      actorKind: 'user',
      action,
      resource,
      outcome: 'allowed',
      detail: { ...detail },
    });

  router
    .route('/releases/repository/:dir/:file')
    .get(async (req, res) => {
      const { dir, file } = parseOrThrow(repoPathParams, req.params, 'path parameters');
      const principal = principalOf(res);
      await requireAllowed(authorizer, log, principal, 'releases:read', {
        type: 'releases',
        tenant: principal.tenant,
      });
      const path = `${dir}/${file}`;
      const parsed = parseRepoPath(path);
      if (!parsed) throw new NotFoundError();
      const found = await available().repo.locate(path);
      if (!found) throw new NotFoundError();
      res.setHeader(
        'Content-Type',
        parsed.kind === 'metadata' ? 'application/json' : 'application/octet-stream',
      );
      res.setHeader('Content-Length', String(found.size));
      res.setHeader(
        'Cache-Control',
        parsed.kind === 'metadata' && parsed.role === 'timestamp' ? 'no-store' : 'private, max-age=300',
      );
      createReadStream(found.path).pipe(res);
    })
    .all(methodNotAllowed('GET', 'HEAD'));

  router
    .route('/releases/bundles/:sha256')
    .put(async (req, res) => {
      const { sha256 } = parseOrThrow(bundlePathParams, req.params, 'path parameters');
      const principal = principalOf(res);
      const releases = available();
      await mayPublish(principal, releases);
      const declared = Number(req.headers['content-length'] ?? NaN);
      if (Number.isFinite(declared) && declared > releases.service.maxBundleBytes) {
        req.resume();
        throw new ReleaseError(
          'PAYLOAD_TOO_LARGE',
          `the bundle is larger than releases.maxBundleBytes (${releases.service.maxBundleBytes})`,
        );
      }
      const { size } = await releases.service.stageBundle(sha256, req);
      await record(principal, 'release.bundle.upload', `release-bundle:${sha256}`, { size });
      res.status(201).json({ sha256, size });
    })
    .all(methodNotAllowed('PUT'));

  router
    .route('/releases/metadata/:role')
    .put(async (req, res) => {
      const { role } = parseOrThrow(metadataRoleParams, req.params, 'path parameters');
      const principal = principalOf(res);
      const releases = available();
      await mayPublish(principal, releases);
      // The envelope is checked here (a 400 naming the field); the service verifies the TUF content.
      parseOrThrow(signedMetadataBody, req.body, 'body');
      const body: unknown = req.body;
      const { version } =
        role === 'root' ? await releases.service.putRoot(body) : await releases.service.putTargets(body);
      await record(principal, `release.${role}.publish`, `release-metadata:${role}`, { version });
      log.info({ role, version, by: principal.subject }, 'release metadata published');
      res.status(201).json({ version });
    })
    .all(methodNotAllowed('PUT'));
}

const RELEASE_READERS = ['admin', 'auditor', 'operator', 'viewer'] as const;

/** The routes above in the API registry (api/openapi.ts). */
export function releaseOperations(): ApiOperation[] {
  return [
    {
      method: 'get',
      mount: '/v1',
      path: '/releases/repository/:dir/:file',
      operationId: 'getReleaseRepositoryFile',
      summary: 'Read a release repository file',
      description:
        'A file of the agent release repository (The Update Framework, consistent snapshots): ' +
        '`metadata/<N>.root.json`, `metadata/timestamp.json`, `metadata/<N>.snapshot.json`, ' +
        '`metadata/<N>.targets.json`, `targets/<sha256>.<name>`. Any other path is a 404. Every tenant reads ' +
        'the same repository. Devices read it over mutual TLS (DeviceService.FetchRelease).',
      tag: 'Releases',
      authorization: { action: 'releases:read', roles: RELEASE_READERS },
      params: repoPathParams,
      success: {
        status: 200,
        description: 'The file (application/json for metadata, application/octet-stream for bundles).',
        schema: binarySchema,
        contentType: 'application/octet-stream',
      },
      errors: [404, 503],
    },
    {
      method: 'put',
      mount: '/v1',
      path: '/releases/bundles/:sha256',
      operationId: 'uploadReleaseBundle',
      summary: 'Upload a release bundle',
      description:
        'Stages a bundle under its SHA-256 (refused when the bytes hash otherwise, 400, when its manifest.json ' +
        'says it was built from uncommitted changes (`"dirty": true`), 400, or when it exceeds ' +
        'releases.maxBundleBytes, 413). Nothing serves it until targets metadata that names it is published. ' +
        'Only admins of releases.publisherTenant.',
      tag: 'Releases',
      authorization: { action: 'releases:publish', roles: ['admin'] },
      params: bundlePathParams,
      body: bundleBody,
      bodyContentType: 'application/octet-stream',
      success: { status: 201, description: 'The staged bundle.', schema: stagedSchema },
      errors: [413, 503],
    },
    {
      method: 'put',
      mount: '/v1',
      path: '/releases/metadata/:role',
      operationId: 'publishReleaseMetadata',
      summary: 'Publish root or targets metadata',
      description:
        'The next version of `root` (signed by the current root keys and the new ones) or `targets` (signed by ' +
        'the targets key root lists; every target a staged or published bundle with custom fields version, ' +
        'channel and minVersion). The cloud then signs a new snapshot and timestamp with its online key. A wrong ' +
        'key is a 422, a version other than the next a 409. Only admins of releases.publisherTenant.',
      tag: 'Releases',
      authorization: { action: 'releases:publish', roles: ['admin'] },
      params: metadataRoleParams,
      body: signedMetadataBody,
      success: { status: 201, description: 'The version now published.', schema: acceptedSchema },
      errors: [409, 422, 503],
    },
  ];
}
