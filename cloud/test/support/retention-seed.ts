import { createHash, randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { MediaRepository } from '../../src/media/repository.js';
import { mediaKeyFor, type FsMediaStore } from '../../src/media/store.js';
import type { Database } from '../../src/storage/tables.js';
import { uuidV7 } from '../api-fixtures.js';

/*
 * Seeding for the retention tests: events as ingest inserts them (any site, device, camera, track, payload
 * size, occurred_at) and media objects as media ingest stores them (bytes in the real FsMediaStore, the row in
 * the index).
 */

export interface SeededEvent {
  id: string;
  tenant: string;
  at: Date;
}

export async function seedEvent(
  db: Kysely<Database>,
  e: {
    tenant: string;
    site: string;
    device: string;
    camera: string;
    track?: string;
    at: Date;
    payloadBytes?: number;
  },
): Promise<SeededEvent> {
  const id = uuidV7(e.at.getTime());
  await sql`select vigil_ensure_event_partition(${e.at.toISOString().slice(0, 10)}::date)`.execute(db);
  await db
    .insertInto('events')
    .values({
      event_id: id,
      occurred_at: e.at,
      tenant_id: e.tenant,
      site_id: e.site,
      device_id: e.device,
      camera_id: e.camera,
      track_id: e.track ?? `t-${id.slice(-6)}`,
      phase: 'end',
      label: 'person',
      score: 0.9,
      box_x: 0.1,
      box_y: 0.1,
      box_w: 0.2,
      box_h: 0.2,
      zones: [],
      trigger_zone: null,
      model_name: 'yolox',
      model_sha256: 'ab'.repeat(32),
      snapshot_media_id: null,
      snapshot_sha256: null,
      snapshot_bytes: null,
      priority: 2,
      attributes: JSON.stringify({}),
      payload: randomBytes(e.payloadBytes ?? 100),
    })
    .execute();
  return { id, tenant: e.tenant, at: e.at };
}

export interface SeededMedia {
  id: string;
  tenant: string;
  key: string;
  at: Date;
  eventId: string;
}

export async function seedMedia(
  db: Kysely<Database>,
  store: FsMediaStore,
  m: {
    tenant: string;
    site: string;
    device: string;
    camera: string;
    redacted: boolean;
    at: Date;
    bytes?: number;
    eventId?: string;
  },
): Promise<SeededMedia> {
  const id = uuidV7(m.at.getTime());
  const bytes = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes((m.bytes ?? 1000) - 4)]);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const key = mediaKeyFor({
    tenantId: m.tenant,
    mediaId: id,
    capturedAt: m.at,
    contentType: 'image/jpeg',
    sha256,
  });
  await store.put(key, bytes);
  const eventId = m.eventId ?? uuidV7(m.at.getTime());
  await new MediaRepository(db).insert({
    tenantId: m.tenant,
    mediaId: id,
    siteId: m.site,
    deviceId: m.device,
    cameraId: m.camera,
    eventId,
    contentType: 'image/jpeg',
    sha256,
    sizeBytes: bytes.length,
    redacted: m.redacted,
    capturedAt: m.at,
    storedAt: new Date(),
    storageKey: key,
  });
  return { id, tenant: m.tenant, key, at: m.at, eventId };
}

/** Which of `ids` are still events rows of the tenant. */
export async function liveEvents(db: Kysely<Database>, tenant: string, ids: string[]): Promise<string[]> {
  if (ids.length === 0) return [];
  const rows = await db
    .selectFrom('events')
    .select('event_id')
    .where('tenant_id', '=', tenant)
    .where('event_id', 'in', ids)
    .execute();
  return rows.map((r) => r.event_id).sort();
}

/** Which of `ids` are live (not tombstoned) media rows of the tenant. */
export async function liveMedia(db: Kysely<Database>, tenant: string, ids: string[]): Promise<string[]> {
  if (ids.length === 0) return [];
  const rows = await db
    .selectFrom('media')
    .select('media_id')
    .where('tenant_id', '=', tenant)
    .where('media_id', 'in', ids)
    .where('deleted_at', 'is', null)
    .execute();
  return rows.map((r) => r.media_id).sort();
}
