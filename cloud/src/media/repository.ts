import { sql, type Kysely, type Selectable, type Transaction } from 'kysely';
import type { Database, MediaDeletedReason, MediaTable } from '../storage/tables.js';
import { mediaHeld } from './holds.js';

export type MediaRow = Selectable<MediaTable>;

/** What ingest records for one stored object. */
export interface NewMedia {
  tenantId: string;
  mediaId: string;
  siteId: string;
  deviceId: string;
  cameraId: string;
  eventId: string;
  contentType: string;
  sha256: string;
  sizeBytes: number;
  redacted: boolean;
  capturedAt: Date;
  storedAt: Date;
  storageKey: string;
}

/**
 * The key of one media row in maps: tenant and media id (neither holds a newline: validated), the id in
 * PostgreSQL's uuid spelling (lower case), as it comes back from the database.
 */
export function mediaRowKey(tenantId: string, mediaId: string): string {
  return `${tenantId}\n${mediaId.toLowerCase()}`;
}

/** The media index in PostgreSQL; every read and change is scoped by tenant. */
export class MediaRepository {
  constructor(private readonly db: Kysely<Database>) {}

  /**
   * Inserts the row unless (tenant, media id) exists. Returns 'inserted', 'duplicate' (same id and sha256: a
   * resend) or 'conflict' (same id, other content: refused, the stored object stays).
   */
  async insert(m: NewMedia): Promise<'inserted' | 'duplicate' | 'conflict'> {
    const inserted = await this.db
      .insertInto('media')
      .values({
        tenant_id: m.tenantId,
        media_id: m.mediaId,
        site_id: m.siteId,
        device_id: m.deviceId,
        camera_id: m.cameraId,
        event_id: m.eventId,
        content_type: m.contentType,
        sha256: m.sha256,
        size_bytes: m.sizeBytes,
        redacted: m.redacted,
        captured_at: m.capturedAt,
        stored_at: m.storedAt,
        storage_key: m.storageKey,
      })
      .onConflict((oc) => oc.columns(['tenant_id', 'media_id']).doNothing())
      .returning('media_id')
      .executeTakeFirst();
    if (inserted) return 'inserted';
    const existing = await this.get(m.tenantId, m.mediaId);
    return existing?.sha256 === m.sha256 ? 'duplicate' : 'conflict';
  }

  /**
   * Inserts the rows whose (tenant, media id) is not taken yet, in one statement, in (tenant, media id) order;
   * returns the keys inserted (`tenant\nmedia id`). The caller decides about the others (getMany). In a
   * transaction an inserted row claims its id until COMMIT: another writer's INSERT of that id waits for it
   * (the primary key), and the sorted order keeps two overlapping batches from waiting on each other. One array
   * per column through unnest: the statement's text and parameters do not grow with the batch (Kysely's VALUES
   * list of 13 x N parameters took ~0.2 ms of main-thread time per object in a profile at load ~8; BENCHMARKS.md).
   */
  async insertMany(rows: readonly NewMedia[]): Promise<Set<string>> {
    if (rows.length === 0) return new Set();
    const col = <T>(f: (m: NewMedia) => T): T[] => rows.map(f);
    const { rows: inserted } = await sql<Pick<MediaRow, 'tenant_id' | 'media_id'>>`
      insert into media (tenant_id, media_id, site_id, device_id, camera_id, event_id, content_type, sha256,
                         size_bytes, redacted, captured_at, stored_at, storage_key)
      select * from unnest(${col((m) => m.tenantId)}::text[], ${col((m) => m.mediaId)}::uuid[],
                           ${col((m) => m.siteId)}::text[], ${col((m) => m.deviceId)}::text[],
                           ${col((m) => m.cameraId)}::text[], ${col((m) => m.eventId)}::uuid[],
                           ${col((m) => m.contentType)}::text[], ${col((m) => m.sha256)}::text[],
                           ${col((m) => m.sizeBytes)}::integer[], ${col((m) => m.redacted)}::boolean[],
                           ${col((m) => m.capturedAt.toISOString())}::timestamptz[],
                           ${col((m) => m.storedAt.toISOString())}::timestamptz[],
                           ${col((m) => m.storageKey)}::text[])
        as r(tenant_id, media_id, site_id, device_id, camera_id, event_id, content_type, sha256, size_bytes,
             redacted, captured_at, stored_at, storage_key)
       order by tenant_id, media_id
      on conflict (tenant_id, media_id) do nothing
      returning tenant_id, media_id`.execute(this.db);
    return new Set(inserted.map((r) => mediaRowKey(r.tenant_id, r.media_id)));
  }

  /** The rows (live or tombstones) of these (tenant, media id) pairs, keyed `tenant\nmedia id`. */
  async getMany(
    keys: ReadonlyArray<{ tenantId: string; mediaId: string }>,
  ): Promise<Map<string, Pick<MediaRow, 'sha256' | 'storage_key'>>> {
    if (keys.length === 0) return new Map();
    const { rows } = await sql<Pick<MediaRow, 'tenant_id' | 'media_id' | 'sha256' | 'storage_key'>>`
      select m.tenant_id, m.media_id, m.sha256, m.storage_key
        from media m
        join unnest(${keys.map((k) => k.tenantId)}::text[], ${keys.map((k) => k.mediaId)}::uuid[]) as k(t, id)
          on m.tenant_id = k.t and m.media_id = k.id`.execute(this.db);
    return new Map(rows.map((r) => [mediaRowKey(r.tenant_id, r.media_id), r]));
  }

  /** The row (live or tombstone) or null; another tenant's id is null as well. */
  async get(tenantId: string, mediaId: string): Promise<MediaRow | null> {
    const row = await this.db
      .selectFrom('media')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('media_id', '=', mediaId)
      .executeTakeFirst();
    return row ?? null;
  }

  /**
   * Turns a live row into a tombstone and returns its former storage key (the caller deletes the bytes after
   * this commits: a crash in between leaves an orphan file, never a row pointing at nothing). Null when the row
   * is missing or already deleted.
   */
  async markDeleted(
    tenantId: string,
    mediaId: string,
    reason: MediaDeletedReason,
    at: Date,
    tx?: Transaction<Database>,
  ): Promise<{ storageKey: string; row: MediaRow } | null> {
    const db = tx ?? this.db;
    const before = await db
      .selectFrom('media')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('media_id', '=', mediaId)
      .where('deleted_at', 'is', null)
      .forUpdate()
      .executeTakeFirst();
    if (!before?.storage_key) return null;
    const updated = await db
      .updateTable('media')
      .set({ deleted_at: at, deleted_reason: reason, storage_key: null })
      .where('tenant_id', '=', tenantId)
      .where('media_id', '=', mediaId)
      .where('deleted_at', 'is', null)
      .returning('media_id')
      .executeTakeFirst();
    return updated ? { storageKey: before.storage_key, row: before } : null;
  }

  /** Live media captured before `cutoff`, oldest first, at most `limit` (retention works in bounded batches). */
  async expired(
    cutoff: Date,
    limit: number,
  ): Promise<Pick<MediaRow, 'tenant_id' | 'media_id' | 'captured_at'>[]> {
    return (
      this.db
        .selectFrom('media')
        .select(['tenant_id', 'media_id', 'captured_at'])
        .where('deleted_at', 'is', null)
        .where('captured_at', '<', cutoff)
        // Held media is skipped here, in SQL, so held rows never fill a batch (media/holds.ts).
        .where((eb) => eb.not(mediaHeld(eb)))
        .orderBy('captured_at')
        .limit(limit)
        .execute()
    );
  }
}
