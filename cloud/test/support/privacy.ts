// Seeding for the erasure and export tests and the erasure bench: media objects as ingest stores them (bytes in a
// real FsMediaStore, index rows in PostgreSQL) and their events (snapshot reference set), in bulk.
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { uuidV7 } from '@vigil/testkit';
import { sql, type Kysely } from 'kysely';
import type { Database } from '../../src/storage/tables.js';
import { FsMediaStore, mediaKeyFor } from '../../src/media/store.js';

export interface SeedObject {
  tenant: string;
  site: string;
  device: string;
  camera: string;
  track: string;
  at: Date;
}

export interface Seeded extends SeedObject {
  eventId: string;
  mediaId: string;
  key: string;
  sha256: string;
  bytes: Buffer;
}

export { uuidV7 };

/** Stores each object's bytes (a fake JPEG of `size` bytes) and inserts its media row and event, in chunks. */
export async function seedObjects(
  db: Kysely<Database>,
  storeDir: string,
  objects: readonly SeedObject[],
  size = 256,
): Promise<Seeded[]> {
  const store = new FsMediaStore(storeDir);
  const out: Seeded[] = objects.map((o) => {
    const bytes = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(Math.max(0, size - 4))]);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const mediaId = uuidV7(o.at.getTime());
    const key = mediaKeyFor({
      tenantId: o.tenant,
      mediaId,
      capturedAt: o.at,
      contentType: 'image/jpeg',
      sha256,
    });
    return { ...o, eventId: uuidV7(o.at.getTime()), mediaId, key, sha256, bytes };
  });
  for (const day of new Set(out.map((o) => o.at.toISOString().slice(0, 10))))
    await sql`select vigil_ensure_event_partition(${day}::date)`.execute(db);
  for (let i = 0; i < out.length; i += 1000) {
    const chunk = out.slice(i, i + 1000);
    await store.putMany(chunk.map((o) => ({ key: o.key, data: o.bytes })));
    await db
      .insertInto('media')
      .values(
        chunk.map((o) => ({
          tenant_id: o.tenant,
          media_id: o.mediaId,
          site_id: o.site,
          device_id: o.device,
          camera_id: o.camera,
          event_id: o.eventId,
          content_type: 'image/jpeg',
          sha256: o.sha256,
          size_bytes: o.bytes.length,
          redacted: false,
          captured_at: o.at,
          stored_at: o.at,
          storage_key: o.key,
        })),
      )
      .execute();
    await db
      .insertInto('events')
      .values(
        chunk.map((o, j) => ({
          event_id: o.eventId,
          occurred_at: o.at,
          tenant_id: o.tenant,
          site_id: o.site,
          device_id: o.device,
          camera_id: o.camera,
          track_id: o.track,
          phase: 'start',
          label: 'person',
          score: 0.8,
          box_x: 0.1,
          box_y: 0.2,
          box_w: 0.3,
          box_h: 0.4,
          zones: ['door'],
          trigger_zone: 'door',
          model_name: 'yolox',
          model_sha256: 'ab'.repeat(32),
          snapshot_media_id: o.mediaId,
          snapshot_sha256: o.sha256,
          snapshot_bytes: o.bytes.length,
          priority: 2,
          attributes: JSON.stringify({ 'acme.badge': `b${i + j}` }),
          payload: Buffer.from('device bytes'),
        })),
      )
      .execute();
  }
  return out;
}

/** Every file under the store root, as store keys (temp files included: none may be left). */
export function listStore(root: string): Set<string> {
  const keys = new Set<string>();
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else keys.add(relative(root, p));
    }
  };
  walk(root);
  return keys;
}
