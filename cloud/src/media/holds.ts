/**
 * Legal holds: while a hold is active, media retention and erasure skip what it covers (one event, a device, or
 * one camera of a device over a capture time range). Placing and releasing a hold need a reason and are audited
 * in the same transaction (`legal_hold.place`, `legal_hold.release`), so a hold and its record exist together.
 */
import { sql, type ExpressionBuilder, type Kysely } from 'kysely';
import type { AuditLog } from '../audit/audit-log.js';
import type { AuditActorKind, Database } from '../storage/tables.js';

export type HoldScope =
  | { kind: 'event'; eventId: string }
  | { kind: 'device'; deviceId: string }
  | { kind: 'camera_range'; deviceId: string; cameraId: string; from: Date; to: Date };

export interface HoldActor {
  actor: string;
  actorKind: AuditActorKind;
}

export class HoldError extends Error {
  override readonly name = 'HoldError';
  readonly retryable = false;
  constructor(
    readonly code: 'HOLD_REASON_REQUIRED' | 'HOLD_INVALID' | 'HOLD_NOT_FOUND',
    message: string,
  ) {
    super(message);
  }
}

function checkReason(reason: string): string {
  const r = reason.trim();
  if (r.length === 0 || r.length > 500)
    throw new HoldError('HOLD_REASON_REQUIRED', 'a legal hold needs a reason (1-500 characters)');
  return r;
}

/**
 * A media row is held when an active hold of its tenant covers it. For `where(notHeld)` in media queries (the
 * retention batch must exclude held rows in SQL: skipping them after the LIMIT would starve the batch).
 */
export function mediaHeld(eb: ExpressionBuilder<Database, 'media'>) {
  return eb.exists(
    eb
      .selectFrom('legal_holds as h')
      .select(sql<number>`1`.as('one'))
      .whereRef('h.tenant_id', '=', 'media.tenant_id')
      .where('h.released_at', 'is', null)
      .where((w) =>
        w.or([
          w.and([w('h.kind', '=', 'event'), w('h.event_id', '=', w.ref('media.event_id'))]),
          w.and([w('h.kind', '=', 'device'), w('h.device_id', '=', w.ref('media.device_id'))]),
          w.and([
            w('h.kind', '=', 'camera_range'),
            w('h.device_id', '=', w.ref('media.device_id')),
            w('h.camera_id', '=', w.ref('media.camera_id')),
            w('h.from_ts', '<=', w.ref('media.captured_at')),
            w('h.to_ts', '>', w.ref('media.captured_at')),
          ]),
        ]),
      ),
  );
}

export class LegalHolds {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly audit: AuditLog,
  ) {}

  /** Places a hold; returns its id. */
  async place(tenantId: string, scope: HoldScope, reason: string, by: HoldActor): Promise<string> {
    const why = checkReason(reason);
    if (scope.kind === 'camera_range' && !(scope.from < scope.to))
      throw new HoldError('HOLD_INVALID', 'a camera hold needs from < to');
    return this.db.transaction().execute(async (tx) => {
      const row = await tx
        .insertInto('legal_holds')
        .values({
          tenant_id: tenantId,
          kind: scope.kind,
          event_id: scope.kind === 'event' ? scope.eventId : null,
          device_id: scope.kind === 'event' ? null : scope.deviceId,
          camera_id: scope.kind === 'camera_range' ? scope.cameraId : null,
          from_ts: scope.kind === 'camera_range' ? scope.from : null,
          to_ts: scope.kind === 'camera_range' ? scope.to : null,
          reason: why,
          placed_by: by.actor,
          released_by: null,
          released_at: null,
          release_reason: null,
        })
        .returning('id')
        .executeTakeFirstOrThrow();
      await this.audit.append(
        {
          tenantId,
          actor: by.actor,
          actorKind: by.actorKind,
          action: 'legal_hold.place',
          resource: `legal_hold:${tenantId}/${row.id}`,
          outcome: 'allowed',
          detail: { reason: why, scope: scopeDetail(scope) },
        },
        tx,
      );
      return row.id;
    });
  }

  /** Releases an active hold; what it covered is subject to retention and erasure again. */
  async release(tenantId: string, id: string, reason: string, by: HoldActor): Promise<void> {
    const why = checkReason(reason);
    await this.db.transaction().execute(async (tx) => {
      const row = await tx
        .updateTable('legal_holds')
        .set({ released_at: new Date(), released_by: by.actor, release_reason: why })
        .where('tenant_id', '=', tenantId)
        .where('id', '=', id)
        .where('released_at', 'is', null)
        .returning('id')
        .executeTakeFirst();
      if (!row) throw new HoldError('HOLD_NOT_FOUND', `no active legal hold ${id} in tenant ${tenantId}`);
      await this.audit.append(
        {
          tenantId,
          actor: by.actor,
          actorKind: by.actorKind,
          action: 'legal_hold.release',
          resource: `legal_hold:${tenantId}/${id}`,
          outcome: 'allowed',
          detail: { reason: why },
        },
        tx,
      );
    });
  }

  /** Whether an active hold covers this media object (erasure asks before deleting). */
  async mediaIsHeld(tenantId: string, mediaId: string): Promise<boolean> {
    const row = await this.db
      .selectFrom('media')
      .select('media_id')
      .where('tenant_id', '=', tenantId)
      .where('media_id', '=', mediaId)
      .where((eb) => mediaHeld(eb))
      .executeTakeFirst();
    return row !== undefined;
  }
}

function scopeDetail(s: HoldScope): Record<string, string> {
  switch (s.kind) {
    case 'event':
      return { kind: s.kind, event_id: s.eventId };
    case 'device':
      return { kind: s.kind, device_id: s.deviceId };
    case 'camera_range':
      return {
        kind: s.kind,
        device_id: s.deviceId,
        camera_id: s.cameraId,
        from: s.from.toISOString(),
        to: s.to.toISOString(),
      };
  }
}
