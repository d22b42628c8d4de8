/**
 * Placing, approving and releasing legal holds (the model and the "is it held?" check: privacy/holds.ts).
 *
 * Every change needs a reason (approval excepted: it approves the requester's reason) and is on the audit log in
 * the same transaction (`legal_hold.place`, `legal_hold.approve`, `legal_hold.release`), so a hold and its
 * record exist together. Under a tenant's two-admin rule a placement waits (`place_pending`, not holding yet)
 * and a release waits (`release_pending`, still holding) until another admin (another token `sub`) approves.
 * Turning the rule off is a two-admin change too, or one admin could switch it off and act alone.
 */
import type { Kysely, Selectable, Transaction } from 'kysely';
import type { AuditLog } from '../audit/audit-log.js';
import { VigilError } from '../lib/errors.js';
import type { AuditActorKind, Database, LegalHoldState, LegalHoldsTable } from '../storage/tables.js';
import { MAX_HOLDS_PER_TENANT, mediaHeld, type HoldScope } from './holds.js';

export type HoldRow = Selectable<LegalHoldsTable>;

export interface HoldActor {
  actor: string;
  actorKind: AuditActorKind;
}

export type HoldErrorCode =
  | 'HOLD_REASON_REQUIRED'
  | 'HOLD_INVALID'
  | 'HOLD_NOT_FOUND'
  | 'HOLD_STATE_CONFLICT'
  | 'HOLD_SAME_ADMIN'
  | 'HOLD_LIMIT';

export class HoldError extends VigilError {
  constructor(code: HoldErrorCode, message: string) {
    super(code, message, false);
  }
}

function checkReason(reason: string): string {
  const r = reason.trim();
  if (r.length === 0 || r.length > 500)
    throw new HoldError('HOLD_REASON_REQUIRED', 'a legal hold needs a reason (1-500 characters)');
  return r;
}

export interface PrivacySettings {
  holdsTwoAdmin: boolean;
  /** Under the rule: the admin who asked to turn it off (another admin's same request turns it off). */
  twoAdminOffRequestedBy: string | null;
}

export type HoldListFilter = 'effective' | 'pending' | 'released' | 'all';

export class LegalHolds {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly audit: AuditLog,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async settings(tenantId: string, db: Kysely<Database> = this.db): Promise<PrivacySettings> {
    const row = await db
      .selectFrom('privacy_settings')
      .select(['holds_two_admin', 'two_admin_off_requested_by'])
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst();
    return {
      holdsTwoAdmin: row?.holds_two_admin ?? false,
      twoAdminOffRequestedBy: row?.two_admin_off_requested_by ?? null,
    };
  }

  /**
   * Turns the two-admin rule on (at once) or off (at once when it is off already or when another admin asked
   * for it before; otherwise the request is recorded and the rule stays on). Audited `privacy_settings.update`.
   */
  async setTwoAdmin(tenantId: string, on: boolean, by: HoldActor): Promise<PrivacySettings> {
    return this.db.transaction().execute(async (tx) => {
      const before = await tx
        .selectFrom('privacy_settings')
        .selectAll()
        .where('tenant_id', '=', tenantId)
        .forUpdate()
        .executeTakeFirst();
      let next: PrivacySettings;
      if (on || !before?.holds_two_admin) next = { holdsTwoAdmin: on, twoAdminOffRequestedBy: null };
      else if (before.two_admin_off_requested_by && before.two_admin_off_requested_by !== by.actor)
        next = { holdsTwoAdmin: false, twoAdminOffRequestedBy: null };
      else next = { holdsTwoAdmin: true, twoAdminOffRequestedBy: by.actor };
      const at = this.now();
      await tx
        .insertInto('privacy_settings')
        .values({
          tenant_id: tenantId,
          holds_two_admin: next.holdsTwoAdmin,
          two_admin_off_requested_by: next.twoAdminOffRequestedBy,
          updated_by: by.actor,
          updated_at: at,
        })
        .onConflict((oc) =>
          oc.column('tenant_id').doUpdateSet({
            holds_two_admin: next.holdsTwoAdmin,
            two_admin_off_requested_by: next.twoAdminOffRequestedBy,
            updated_by: by.actor,
            updated_at: at,
          }),
        )
        .execute();
      await this.audit.append(
        {
          tenantId,
          actor: by.actor,
          actorKind: by.actorKind,
          action: 'privacy_settings.update',
          resource: `privacy_settings:${tenantId}`,
          outcome: 'allowed',
          detail: {
            requested: { holds_two_admin: on },
            holds_two_admin: next.holdsTwoAdmin,
            off_requested_by: next.twoAdminOffRequestedBy,
          },
        },
        tx,
      );
      return next;
    });
  }

  /** Places a hold (pending under the two-admin rule); returns its id. */
  async place(tenantId: string, scope: HoldScope, reason: string, by: HoldActor): Promise<string> {
    const why = checkReason(reason);
    if (scope.kind === 'camera_range' && !(scope.from < scope.to))
      throw new HoldError('HOLD_INVALID', 'a camera hold needs from < to');
    return this.db.transaction().execute(async (tx) => {
      const { holdsTwoAdmin } = await this.settings(tenantId, tx);
      const { n } = await tx
        .selectFrom('legal_holds')
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .where('tenant_id', '=', tenantId)
        .where('state', '<>', 'released')
        .executeTakeFirstOrThrow();
      if (Number(n) >= MAX_HOLDS_PER_TENANT)
        throw new HoldError('HOLD_LIMIT', `at most ${MAX_HOLDS_PER_TENANT} holds per tenant`);
      const state: LegalHoldState = holdsTwoAdmin ? 'place_pending' : 'active';
      const row = await tx
        .insertInto('legal_holds')
        .values({
          tenant_id: tenantId,
          kind: scope.kind,
          event_id: scope.kind === 'event' ? scope.eventId : null,
          device_id: scope.kind === 'event' ? null : scope.deviceId,
          camera_id: scope.kind === 'camera_range' || scope.kind === 'track' ? scope.cameraId : null,
          track_id: scope.kind === 'track' ? scope.trackId : null,
          from_ts: scope.kind === 'camera_range' ? scope.from : null,
          to_ts: scope.kind === 'camera_range' ? scope.to : null,
          reason: why,
          placed_by: by.actor,
          placed_at: this.now(),
          state,
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
          detail: { reason: why, scope: scopeDetail(scope), state },
        },
        tx,
      );
      return row.id;
    });
  }

  /**
   * Releases a hold: at once, or (two-admin rule) `release_pending` until another admin approves; a placement
   * still pending is withdrawn at once (it never held). Returns the new state.
   */
  async release(tenantId: string, id: string, reason: string, by: HoldActor): Promise<LegalHoldState> {
    const why = checkReason(reason);
    return this.db.transaction().execute(async (tx) => {
      const hold = await this.lock(tx, tenantId, id);
      if (hold.state === 'released' || hold.state === 'release_pending')
        throw new HoldError('HOLD_STATE_CONFLICT', `legal hold ${id} is ${hold.state.replace('_', ' ')}`);
      const { holdsTwoAdmin } = await this.settings(tenantId, tx);
      const at = this.now();
      const state: LegalHoldState = hold.state === 'active' && holdsTwoAdmin ? 'release_pending' : 'released';
      await tx
        .updateTable('legal_holds')
        .set(
          state === 'released'
            ? { state, released_at: at, released_by: by.actor, release_reason: why }
            : { state, release_requested_by: by.actor, release_requested_at: at, release_reason: why },
        )
        .where('tenant_id', '=', tenantId)
        .where('id', '=', id)
        .execute();
      await this.audit.append(
        {
          tenantId,
          actor: by.actor,
          actorKind: by.actorKind,
          action: 'legal_hold.release',
          resource: `legal_hold:${tenantId}/${id}`,
          outcome: 'allowed',
          detail: { reason: why, state, was: hold.state },
        },
        tx,
      );
      return state;
    });
  }

  /** A second admin approves a pending placement (it holds now) or release (it ends now). */
  async approve(tenantId: string, id: string, by: HoldActor, note?: string): Promise<LegalHoldState> {
    return this.db.transaction().execute(async (tx) => {
      const hold = await this.lock(tx, tenantId, id);
      if (hold.state !== 'place_pending' && hold.state !== 'release_pending')
        throw new HoldError('HOLD_STATE_CONFLICT', `legal hold ${id} is ${hold.state}: nothing to approve`);
      const requester = hold.state === 'place_pending' ? hold.placed_by : hold.release_requested_by;
      if (requester === by.actor)
        throw new HoldError('HOLD_SAME_ADMIN', 'the approval must come from another admin than the request');
      const at = this.now();
      const state: LegalHoldState = hold.state === 'place_pending' ? 'active' : 'released';
      await tx
        .updateTable('legal_holds')
        .set(
          state === 'active'
            ? { state, approved_by: by.actor }
            : { state, released_at: at, released_by: by.actor },
        )
        .where('tenant_id', '=', tenantId)
        .where('id', '=', id)
        .execute();
      await this.audit.append(
        {
          tenantId,
          actor: by.actor,
          actorKind: by.actorKind,
          action: 'legal_hold.approve',
          resource: `legal_hold:${tenantId}/${id}`,
          outcome: 'allowed',
          detail: {
            approved: state === 'active' ? 'place' : 'release',
            requested_by: requester,
            state,
            ...(note ? { note } : {}),
          },
        },
        tx,
      );
      return state;
    });
  }

  async get(tenantId: string, id: string): Promise<HoldRow | null> {
    return (
      (await this.db
        .selectFrom('legal_holds')
        .selectAll()
        .where('tenant_id', '=', tenantId)
        .where('id', '=', id)
        .executeTakeFirst()) ?? null
    );
  }

  /** A tenant's holds, newest first, at most `limit`. */
  async list(tenantId: string, filter: HoldListFilter, limit: number): Promise<HoldRow[]> {
    let q = this.db.selectFrom('legal_holds').selectAll().where('tenant_id', '=', tenantId);
    if (filter === 'effective') q = q.where('state', 'in', ['active', 'release_pending']);
    else if (filter === 'pending') q = q.where('state', 'in', ['place_pending', 'release_pending']);
    else if (filter === 'released') q = q.where('state', '=', 'released');
    return q.orderBy('placed_at', 'desc').orderBy('id').limit(limit).execute();
  }

  /** Whether a hold that takes effect covers this media object (media erasure asks before deleting). */
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

  private async lock(tx: Transaction<Database>, tenantId: string, id: string): Promise<HoldRow> {
    const hold = await tx
      .selectFrom('legal_holds')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('id', '=', id)
      .forUpdate()
      .executeTakeFirst();
    if (!hold) throw new HoldError('HOLD_NOT_FOUND', `no legal hold ${id} in tenant ${tenantId}`);
    return hold;
  }
}

export function scopeDetail(s: HoldScope): Record<string, string> {
  switch (s.kind) {
    case 'event':
      return { kind: s.kind, event_id: s.eventId };
    case 'device':
      return { kind: s.kind, device_id: s.deviceId };
    case 'track':
      return { kind: s.kind, device_id: s.deviceId, camera_id: s.cameraId, track_id: s.trackId };
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
