/**
 * The legal hold model: what a hold covers, and the one question retention and erasure ask before deleting
 * anything ("is this held?"), in SQL for batches and as a pure function for single items.
 *
 * A hold covers one event, one track (device, camera, track id: track ids are unique per camera of a device),
 * one camera of a device over a time range [from, to), or a whole device. It takes effect while its state is
 * `active` or `release_pending` (a release under the two-admin rule keeps holding until the second admin
 * approves it); a `place_pending` hold does not hold yet. Holds are placed and released by LegalHolds
 * (privacy/legal-holds.ts), table legal_holds (migrations 0021, 0025).
 *
 * For erasure (and anything else that deletes): call `heldScopes(db, tenantId)` once and `isHeld(scopes, item)`
 * per item, or put `eventHeldSql('e')` / `mediaHeldSql('m')` in the WHERE of the deleting statement so that a
 * hold placed meanwhile still wins (that is what retention does).
 */
import { sql, type ExpressionBuilder, type Kysely, type RawBuilder } from 'kysely';
import type { Database, LegalHoldState } from '../storage/tables.js';

/** What a hold covers. */
export type HoldScope =
  | { kind: 'event'; eventId: string }
  | { kind: 'track'; deviceId: string; cameraId: string; trackId: string }
  | { kind: 'device'; deviceId: string }
  | { kind: 'camera_range'; deviceId: string; cameraId: string; from: Date; to: Date };

/** A hold that takes effect, with its id. */
export type HeldScope = HoldScope & { id: string };

/** States in which a hold takes effect. */
export const EFFECTIVE_HOLD_STATES: readonly LegalHoldState[] = ['active', 'release_pending'];

/** One stored item a deletion is about to touch: an event, or a media object (with its event's track). */
export interface HoldableItem {
  /** The event, or the event a snapshot belongs to. */
  eventId?: string | undefined;
  deviceId: string;
  cameraId: string;
  /** The track of the event (for a snapshot: of its event); unknown: track holds cannot match. */
  trackId?: string | undefined;
  /** occurred_at of an event, captured_at of a media object. */
  at: Date;
}

/** Pure: the first scope that covers `item`, or undefined. */
export function holdFor(scopes: readonly HeldScope[], item: HoldableItem): HeldScope | undefined {
  return scopes.find((s) => {
    switch (s.kind) {
      case 'event':
        return item.eventId !== undefined && s.eventId.toLowerCase() === item.eventId.toLowerCase();
      case 'device':
        return s.deviceId === item.deviceId;
      case 'track':
        return (
          s.deviceId === item.deviceId &&
          s.cameraId === item.cameraId &&
          item.trackId !== undefined &&
          s.trackId === item.trackId
        );
      case 'camera_range':
        return (
          s.deviceId === item.deviceId &&
          s.cameraId === item.cameraId &&
          s.from.getTime() <= item.at.getTime() &&
          item.at.getTime() < s.to.getTime()
        );
    }
  });
}

/** Pure: whether any of `scopes` (from {@link heldScopes}) covers `item`. */
export function isHeld(scopes: readonly HeldScope[], item: HoldableItem): boolean {
  return holdFor(scopes, item) !== undefined;
}

/** The holds of a tenant that take effect now (at most 10,000: a tenant with more is refused new holds). */
export async function heldScopes(db: Kysely<Database>, tenantId: string): Promise<HeldScope[]> {
  const rows = await db
    .selectFrom('legal_holds')
    .select(['id', 'kind', 'event_id', 'device_id', 'camera_id', 'track_id', 'from_ts', 'to_ts'])
    .where('tenant_id', '=', tenantId)
    .where('state', 'in', EFFECTIVE_HOLD_STATES)
    .orderBy('placed_at')
    .limit(MAX_HOLDS_PER_TENANT)
    .execute();
  return rows.map((r): HeldScope => {
    switch (r.kind) {
      case 'event':
        return { id: r.id, kind: 'event', eventId: r.event_id! };
      case 'device':
        return { id: r.id, kind: 'device', deviceId: r.device_id! };
      case 'track':
        return {
          id: r.id,
          kind: 'track',
          deviceId: r.device_id!,
          cameraId: r.camera_id!,
          trackId: r.track_id!,
        };
      case 'camera_range':
        return {
          id: r.id,
          kind: 'camera_range',
          deviceId: r.device_id!,
          cameraId: r.camera_id!,
          from: r.from_ts!,
          to: r.to_ts!,
        };
    }
  });
}

/** Holds (in any state but released) one tenant may have: bounds heldScopes and every hold probe. */
export const MAX_HOLDS_PER_TENANT = 10_000;

// `alias` below is always a constant of this code base (a table alias), never input.
const effective = sql.raw(`('${EFFECTIVE_HOLD_STATES.join("', '")}')`);

/** SQL: the events row `alias` is covered by a hold that takes effect. */
export function eventHeldSql(alias: string): RawBuilder<boolean> {
  const e = sql.raw(alias);
  return sql<boolean>`exists (
    select 1 from legal_holds h
     where h.tenant_id = ${e}.tenant_id and h.state in ${effective}
       and ((h.kind = 'event' and h.event_id = ${e}.event_id)
         or (h.kind = 'device' and h.device_id = ${e}.device_id)
         or (h.kind = 'track' and h.device_id = ${e}.device_id and h.camera_id = ${e}.camera_id
             and h.track_id = ${e}.track_id)
         or (h.kind = 'camera_range' and h.device_id = ${e}.device_id and h.camera_id = ${e}.camera_id
             and h.from_ts <= ${e}.occurred_at and h.to_ts > ${e}.occurred_at)))`;
}

/**
 * SQL: the media row `alias` is covered by a hold that takes effect. A track hold covers the snapshots of the
 * track's events (media rows name their event; the track is on the event).
 */
export function mediaHeldSql(alias: string): RawBuilder<boolean> {
  const m = sql.raw(alias);
  return sql<boolean>`exists (
    select 1 from legal_holds h
     where h.tenant_id = ${m}.tenant_id and h.state in ${effective}
       and ((h.kind = 'event' and h.event_id = ${m}.event_id)
         or (h.kind = 'device' and h.device_id = ${m}.device_id)
         or (h.kind = 'camera_range' and h.device_id = ${m}.device_id and h.camera_id = ${m}.camera_id
             and h.from_ts <= ${m}.captured_at and h.to_ts > ${m}.captured_at)
         or (h.kind = 'track' and h.device_id = ${m}.device_id and h.camera_id = ${m}.camera_id
             and exists (select 1 from events he
                          where he.tenant_id = ${m}.tenant_id and he.event_id = ${m}.event_id
                            and he.track_id = h.track_id))))`;
}

/** For Kysely `where` on the `media` table (unaliased): `.where((eb) => eb.not(mediaHeld(eb)))`. */
export function mediaHeld(_eb: ExpressionBuilder<Database, 'media'>): RawBuilder<boolean> {
  return mediaHeldSql('media');
}
