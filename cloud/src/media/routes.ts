import type { Router } from 'express';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { AuditLog } from '../audit/audit-log.js';
import type { Authorizer, DataClass, Resource } from '../auth/authorize.js';
import type { Principal } from '../auth/principal.js';
import { principalOf, requireAllowed, requireVisible } from '../api/authenticate.js';
import { NotFoundError } from '../api/errors.js';
import { parseOrThrow } from '../api/events-query.js';
import { methodNotAllowed } from '../api/problem.js';
import { VigilError } from '../lib/errors.js';
import type { Database } from '../storage/tables.js';
import { mediaHeld } from './holds.js';
import type { MediaRepository, MediaRow } from './repository.js';
import type { MediaStore } from './store.js';

/*
 * GET /v1/media/:id (the bytes) and POST /v1/media/:id/erase (right to erasure), inside the caller's tenant.
 *
 * Every served read is on the audit log before the first byte leaves (`media.read`); if the entry cannot be
 * written the request fails (503): there is no unaudited access to pictures. Denials of a loaded object are
 * audited too (outcome `denied`), and answered like a missing id (404), as is another tenant's id.
 *
 * Data class: a snapshot whose faces were redacted on the device is `media`; one that was not may show who
 * someone is, so it is `personal` (admin only under the default policies; operators see redacted ones).
 */

export const mediaPathParams = z.strictObject({
  id: z.uuid().meta({ description: 'The media id (an event’s `snapshot.media_id`).' }),
});

/** Body of POST /v1/media/:id/erase: why (kept on the audit log). */
export const eraseBody = z.strictObject({ reason: z.string().trim().min(1).max(500) });

export const erasedMediaSchema = z
  .object({
    media_id: z.uuid(),
    result: z.enum(['erased', 'already_deleted']),
    deleted_at: z.iso.datetime({ offset: true }),
    deleted_reason: z.enum(['retention', 'erasure']),
  })
  .meta({ id: 'ErasedMedia' });

/** The media was deleted (retention or erasure): HTTP 410, the tombstone says when and why. */
export class MediaGoneError extends VigilError {
  constructor(row: MediaRow) {
    super(
      'MEDIA_GONE',
      `This media was deleted (${row.deleted_reason ?? 'unknown'}) at ${row.deleted_at?.toISOString() ?? '?'}.`,
      false,
    );
  }
}

/** An active legal hold covers the object: erasure refuses it until the hold is released (HTTP 409). */
export class MediaHeldError extends VigilError {
  constructor() {
    super(
      'MEDIA_HELD',
      'This media is under a legal hold and cannot be erased; release the hold first (with a reason).',
      false,
    );
  }
}

/** The media store is not configured, or a read could not be audited: HTTP 503. */
export class MediaUnavailableError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('UNAVAILABLE', message, true, options);
  }
}

export interface MediaRoutesDeps {
  db: Kysely<Database>;
  repository: MediaRepository;
  /** Undefined when media.dir is not configured. */
  store: MediaStore | undefined;
  audit: AuditLog;
  authorizer: Authorizer;
  log: Logger;
  now: () => Date;
}

export function mediaDataClass(row: Pick<MediaRow, 'redacted'>): DataClass {
  return row.redacted ? 'media' : 'personal';
}

const mediaRef = (tenant: string, id: string): string => `media:${tenant}/${id}`;

export function mountMediaRoutes(router: Router, deps: MediaRoutesDeps): void {
  /** Loads the row and asks the second question; a deny is audited and answered as 404. */
  async function loadVisible(
    principal: Principal,
    action: 'media:read' | 'media:erase',
    id: string,
  ): Promise<MediaRow> {
    const row = await deps.repository.get(principal.tenant, id);
    if (row === null) throw new NotFoundError();
    const resource: Resource = {
      type: 'media',
      tenant: principal.tenant,
      id,
      site: row.site_id,
      camera: row.camera_id,
      dataClass: mediaDataClass(row),
    };
    try {
      await requireVisible(deps.authorizer, deps.log, principal, action, resource);
    } catch (err) {
      if (err instanceof NotFoundError)
        await deps.audit
          .append({
            tenantId: principal.tenant,
            actor: principal.subject,
            actorKind: 'user',
            action: action === 'media:read' ? 'media.read' : 'media.erase',
            resource: mediaRef(principal.tenant, id),
            outcome: 'denied',
            detail: { roles: principal.roles, data_class: resource.dataClass, site: row.site_id },
          })
          .catch(() => undefined); // counted by the audit log; the answer is a 404 either way
      throw err;
    }
    return row;
  }

  router
    .route('/media/:id')
    .get(async (req, res) => {
      const { id } = parseOrThrow(mediaPathParams, req.params, 'path parameters');
      const principal = principalOf(res);
      await requireAllowed(deps.authorizer, deps.log, principal, 'media:read', {
        type: 'media',
        tenant: principal.tenant,
        id,
      });
      const row = await loadVisible(principal, 'media:read', id);
      if (row.deleted_at !== null || row.storage_key === null) throw new MediaGoneError(row);
      if (!deps.store) throw new MediaUnavailableError('The media store is not configured (media.dir).');
      const file = await deps.store.open(row.storage_key);
      if (file === null) {
        deps.log.error(
          { tenant: principal.tenant, mediaId: id, key: row.storage_key },
          'media: indexed object missing from the store',
        );
        throw new MediaUnavailableError('The media object cannot be read from the store.');
      }
      try {
        await deps.audit.append({
          tenantId: principal.tenant,
          actor: principal.subject,
          actorKind: 'user',
          action: 'media.read',
          resource: mediaRef(principal.tenant, id),
          outcome: 'allowed',
          detail: {
            method: req.method,
            device: row.device_id,
            camera: row.camera_id,
            event_id: row.event_id,
            sha256: row.sha256,
            size_bytes: row.size_bytes,
            data_class: mediaDataClass(row),
          },
        });
      } catch (cause) {
        file.stream.destroy();
        throw new MediaUnavailableError('The access could not be recorded on the audit log; not served.', {
          cause,
        });
      }
      res.status(200);
      res.set({
        'Content-Type': row.content_type,
        'Content-Length': String(file.size),
        ETag: `"${row.sha256}"`,
        'Cache-Control': 'private, no-store',
        'Content-Disposition': `inline; filename="${id}.${row.content_type === 'image/jpeg' ? 'jpg' : 'bin'}"`,
        'Repr-Digest': `sha-256=:${Buffer.from(row.sha256, 'hex').toString('base64')}:`,
        'X-Content-Type-Options': 'nosniff',
      });
      if (req.method === 'HEAD') {
        file.stream.destroy();
        res.end();
        return;
      }
      await new Promise<void>((resolve) => {
        file.stream.once('error', (err) => {
          deps.log.error({ err, mediaId: id }, 'media: read failed mid-response');
          res.destroy(err);
          resolve();
        });
        res.once('close', () => {
          file.stream.destroy();
          resolve();
        });
        file.stream.pipe(res);
      });
    })
    .all(methodNotAllowed('GET', 'HEAD'));

  router
    .route('/media/:id/erase')
    .post(async (req, res) => {
      const { id } = parseOrThrow(mediaPathParams, req.params, 'path parameters');
      const principal = principalOf(res);
      await requireAllowed(
        deps.authorizer,
        deps.log,
        principal,
        'media:erase',
        { type: 'media', tenant: principal.tenant, id },
        deps.audit,
      );
      const body = parseOrThrow(eraseBody, req.body ?? {}, 'body');
      const row = await loadVisible(principal, 'media:erase', id);
      if (row.deleted_at !== null) {
        res.json({
          media_id: id,
          result: 'already_deleted',
          deleted_at: row.deleted_at.toISOString(),
          deleted_reason: row.deleted_reason,
        });
        return;
      }
      const at = deps.now();
      // Tombstone and audit entry commit together; the bytes go after the commit (a crash in between leaves an
      // unreferenced file that nothing serves, never a row pointing at nothing).
      const erased = await deps.db.transaction().execute(async (tx) => {
        // Checked in the erasing transaction: a hold placed before it commits wins.
        const held = await tx
          .selectFrom('media')
          .select('media_id')
          .where('tenant_id', '=', principal.tenant)
          .where('media_id', '=', id)
          .where((eb) => mediaHeld(eb))
          .executeTakeFirst();
        if (held) return 'held' as const;
        const done = await deps.repository.markDeleted(principal.tenant, id, 'erasure', at, tx);
        if (done === null) return null;
        await deps.audit.append(
          {
            tenantId: principal.tenant,
            actor: principal.subject,
            actorKind: 'user',
            action: 'media.erase',
            resource: mediaRef(principal.tenant, id),
            outcome: 'allowed',
            detail: {
              reason: body.reason,
              device: row.device_id,
              camera: row.camera_id,
              event_id: row.event_id,
              sha256: row.sha256,
            },
          },
          tx,
        );
        return done;
      });
      if (erased === 'held') {
        await deps.audit.append({
          tenantId: principal.tenant,
          actor: principal.subject,
          actorKind: 'user',
          action: 'media.erase',
          resource: mediaRef(principal.tenant, id),
          outcome: 'denied',
          detail: { reason: body.reason, denied: 'legal_hold' },
        });
        throw new MediaHeldError();
      }
      if (erased === null) {
        // Deleted by someone else (or retention) meanwhile.
        const now = await deps.repository.get(principal.tenant, id);
        res.json({
          media_id: id,
          result: 'already_deleted',
          deleted_at: now?.deleted_at?.toISOString() ?? at.toISOString(),
          deleted_reason: now?.deleted_reason ?? 'erasure',
        });
        return;
      }
      if (deps.store)
        await deps.store
          .delete(erased.storageKey)
          .catch((err: unknown) =>
            deps.log.error(
              { err, mediaId: id, key: erased.storageKey },
              'media: erased in the index, but deleting the bytes failed (retention will not see it again: remove the file by hand)',
            ),
          );
      res.json({ media_id: id, result: 'erased', deleted_at: at.toISOString(), deleted_reason: 'erasure' });
    })
    .all(methodNotAllowed('POST'));
}
