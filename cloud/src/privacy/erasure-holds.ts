import { sql, type RawBuilder } from 'kysely';

/*
 * The one place where erasure and export ask "is this held?". Today it reads the media legal holds of
 * migration 0021 (media/holds.ts: an event, a device, or a camera of a device over a time range). The
 * generalized holds (privacy/holds.ts, on the "retention" branch: event, track, camera + time range, device)
 * replace the body of `heldSql` when that branch merges; callers do not change.
 *
 * An event is held by a hold on its id, its device, or its device's camera over a range that contains its
 * occurred_at; a media object by a hold on its event, its device, or its camera over a range that contains its
 * captured_at. Checked in SQL, in the statement that selects a batch, so held rows are counted and skipped
 * without a second round trip.
 */
export function heldSql(row: 'media' | 'event', alias: string): RawBuilder<boolean> {
  const a = sql.raw(alias);
  const time = row === 'media' ? sql`${a}.captured_at` : sql`${a}.occurred_at`;
  return sql<boolean>`exists (
    select 1 from legal_holds h
     where h.tenant_id = ${a}.tenant_id and h.released_at is null
       and ((h.kind = 'event' and h.event_id = ${a}.event_id)
         or (h.kind = 'device' and h.device_id = ${a}.device_id)
         or (h.kind = 'camera_range' and h.device_id = ${a}.device_id and h.camera_id = ${a}.camera_id
             and h.from_ts <= ${time} and h.to_ts > ${time})))`;
}
