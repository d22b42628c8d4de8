import { sql, type RawBuilder } from 'kysely';
import { z } from 'zod';
import { cameraRangeShape, checkRange, idToken, trackId } from './schemas.js';

/*
 * What an erasure request or an evidence export covers, inside the caller's tenant: some events by id, one
 * track of a device, one camera of a device over a time range, a whole device, or a whole site. The same scope
 * selects events (by occurred_at) and media (by captured_at, and also the snapshots of the selected events,
 * so that an event never loses its metadata while keeping its picture, or the other way round).
 *
 * Ids are validated here with the same shapes ingest accepts, so a scope never carries free text into SQL
 * (every value is a bound parameter anyway).
 */

/** Most event ids one request may name. */
export const MAX_SCOPE_EVENT_IDS = 1000;

export const scopeSchema = z
  .discriminatedUnion('kind', [
    z.strictObject({
      kind: z.literal('event'),
      event_ids: z.array(z.uuid()).min(1).max(MAX_SCOPE_EVENT_IDS),
    }),
    z.strictObject({ kind: z.literal('track'), device_id: idToken, track_id: trackId }),
    z.strictObject({ kind: z.literal('camera'), ...cameraRangeShape }).superRefine(checkRange),
    z.strictObject({ kind: z.literal('device'), device_id: idToken }),
    z.strictObject({ kind: z.literal('site'), site_id: idToken }),
  ])
  .meta({ id: 'PrivacyScope' });

export type Scope = z.infer<typeof scopeSchema>;

/** The scopes an evidence export accepts (a whole device or site is never one piece of evidence). */
export type ExportScope = Extract<Scope, { kind: 'event' | 'track' | 'camera' }>;

/** The scope as the audit log and the API show it: ids and times only, never the reason. */
export function scopeDetail(s: Scope): Record<string, unknown> {
  switch (s.kind) {
    case 'event':
      return {
        kind: s.kind,
        event_ids: s.event_ids.length <= 20 ? s.event_ids : undefined,
        events: s.event_ids.length,
      };
    case 'track':
      return { kind: s.kind, device_id: s.device_id, track_id: s.track_id };
    case 'camera':
      return { kind: s.kind, device_id: s.device_id, camera_id: s.camera_id, from: s.from, to: s.to };
    case 'device':
      return { kind: s.kind, device_id: s.device_id };
    case 'site':
      return { kind: s.kind, site_id: s.site_id };
  }
}

/** SQL condition on `events` (alias `e`) for the scope, tenant included. */
export function eventsInScope(tenant: string, s: Scope): RawBuilder<boolean> {
  const t = sql`e.tenant_id = ${tenant}`;
  switch (s.kind) {
    case 'event':
      return sql<boolean>`(${t} and e.event_id = any(${s.event_ids}::uuid[]))`;
    case 'track':
      return sql<boolean>`(${t} and e.device_id = ${s.device_id} and e.track_id = ${s.track_id})`;
    case 'camera':
      return sql<boolean>`(${t} and e.device_id = ${s.device_id} and e.camera_id = ${s.camera_id}
        and e.occurred_at >= ${s.from}::timestamptz and e.occurred_at < ${s.to}::timestamptz)`;
    case 'device':
      return sql<boolean>`(${t} and e.device_id = ${s.device_id})`;
    case 'site':
      return sql<boolean>`(${t} and e.site_id = ${s.site_id})`;
  }
}

/** SQL condition on `media` (alias `m`) for the scope, tenant included: the scope's own media and its events' snapshots. */
export function mediaInScope(tenant: string, s: Scope): RawBuilder<boolean> {
  const t = sql`m.tenant_id = ${tenant}`;
  const ofEvents = sql`m.event_id in (select e.event_id from events e where ${eventsInScope(tenant, s)})`;
  switch (s.kind) {
    case 'event':
      return sql<boolean>`(${t} and m.event_id = any(${s.event_ids}::uuid[]))`;
    case 'track':
      return sql<boolean>`(${t} and m.device_id = ${s.device_id} and ${ofEvents})`;
    case 'camera':
      return sql<boolean>`(${t} and ((m.device_id = ${s.device_id} and m.camera_id = ${s.camera_id}
        and m.captured_at >= ${s.from}::timestamptz and m.captured_at < ${s.to}::timestamptz) or ${ofEvents}))`;
    case 'device':
      return sql<boolean>`(${t} and m.device_id = ${s.device_id})`;
    case 'site':
      return sql<boolean>`(${t} and m.site_id = ${s.site_id})`;
  }
}
