import type { Kysely } from 'kysely';
import { VigilError } from '../lib/errors.js';
import { failpoint } from '../lib/failpoint.js';
import type { Database } from '../storage/tables.js';
import { MediaRepository, mediaRowKey, type NewMedia } from './repository.js';
import { mediaKeyFor, type MediaStore } from './store.js';
import type { ValidMedia } from './validate.js';

/** What storing one object came to: stored now, a resend of what is stored, or a conflict (other bytes). */
export type StoreResult = 'ok' | 'duplicate' | { storedSha256: string };

/** An id the INSERT found taken whose row the next statement did not see (retried: the batch is nak'd). */
export class MediaIndexError extends VigilError {
  constructor(message: string) {
    super('MEDIA_INDEX_RACE', message, true);
  }
}

/**
 * Stores a batch of validated objects of registered devices in ONE transaction (media/consumer.ts acks after
 * it resolves):
 *
 *   INSERT the rows of the ids not indexed yet (claims them) -> read the rows of the others (only if any)
 *   -> write the claimed objects' files at once, one fsync per file and per directory (MediaStore.putMany)
 *   -> COMMIT
 *
 * The row decides, as for one object: an id found indexed with the same sha256 is a resend ('duplicate',
 * nothing written: an erased object's tombstone keeps its bytes from coming back); with another, a conflict
 * (the stored object untouched). The same media id twice in the batch: the first decides for the second.
 * Only the transaction that inserted an id's row writes its file, and the row is invisible until the file is
 * durable (a COMMIT after putMany). A writer of the same id elsewhere waits on the uncommitted row, then sees
 * it (or, after a rollback, claims the id itself), so no advisory lock is needed. Throws if the database or
 * the store fails: nothing is indexed then (files already written are orphans a redelivery overwrites with
 * the same bytes). Returns one result per item, in order.
 *
 * Before: advisory locks, SELECT, files, INSERT (5 round trips with BEGIN and COMMIT); now 3 in the usual
 * case (cloud/bench/media.bench.ts, BENCHMARKS.md "Media ingest").
 */
export async function storeMediaBatch(
  db: Kysely<Database>,
  store: MediaStore,
  items: readonly ValidMedia[],
  storedAt: Date,
): Promise<StoreResult[]> {
  if (items.length === 0) return [];
  /** The first item of each (tenant, media id): the one inserted, or compared with the stored row. */
  const firsts = new Map<string, { index: number; row: NewMedia; data: Uint8Array }>();
  items.forEach((m, index) => {
    const k = mediaRowKey(m.tenantId, m.mediaId);
    if (firsts.has(k)) return;
    const { data, ...fields } = m;
    firsts.set(k, { index, data, row: { ...fields, storedAt, storageKey: mediaKeyFor(m) } });
  });
  const results = await db.transaction().execute(async (trx) => {
    const repository = new MediaRepository(trx);
    const fresh = [...firsts.values()];
    const inserted = await repository.insertMany(fresh.map((f) => f.row));
    const claimed = fresh.filter((f) => inserted.has(mediaRowKey(f.row.tenantId, f.row.mediaId)));
    const taken = fresh.filter((f) => !inserted.has(mediaRowKey(f.row.tenantId, f.row.mediaId)));
    const stored = await repository.getMany(taken.map((f) => f.row));
    /** sha256 by row key: stored before, or inserted now. */
    const decided = new Map<string, string>();
    for (const f of taken) {
      const k = mediaRowKey(f.row.tenantId, f.row.mediaId);
      const row = stored.get(k);
      // Rows are never deleted (tombstones stay): a conflict without a row is a race to retry, not an answer.
      if (!row)
        throw new MediaIndexError(`media ${f.row.mediaId} of ${f.row.tenantId} is taken but not found`);
      decided.set(k, row.sha256);
    }
    for (const f of claimed) decided.set(mediaRowKey(f.row.tenantId, f.row.mediaId), f.row.sha256);
    if (claimed.length > 0)
      await store.putMany(claimed.map((f) => ({ key: f.row.storageKey, data: f.data })));
    // Crash test point: files durable, rows inserted but not committed (test/media-crash.test.ts).
    failpoint('media.after_store');
    const claimedIndexes = new Set(claimed.map((f) => f.index));
    return items.map((m, i): StoreResult => {
      if (claimedIndexes.has(i)) return 'ok';
      const sha = decided.get(mediaRowKey(m.tenantId, m.mediaId))!;
      return sha === m.sha256 ? 'duplicate' : { storedSha256: sha };
    });
  });
  // Crash test point: committed, nothing acked yet (every object is redelivered and found a duplicate).
  failpoint('media.after_commit');
  return results;
}
