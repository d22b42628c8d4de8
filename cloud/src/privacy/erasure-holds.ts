import type { RawBuilder } from 'kysely';
import { eventHeldSql, mediaHeldSql } from './holds.js';

/*
 * The one place where erasure and export ask "is this held?": the general legal holds (privacy/holds.ts: an
 * event, a track, a camera of a device over a time range, a device; in effect while `active` or
 * `release_pending`). Checked in SQL, in the statement that selects a batch, so held rows are counted and
 * skipped without a second round trip.
 */
export function heldSql(row: 'media' | 'event', alias: string): RawBuilder<boolean> {
  return row === 'media' ? mediaHeldSql(alias) : eventHeldSql(alias);
}
