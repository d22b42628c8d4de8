import { sql, type Kysely } from 'kysely';
import type { Database } from '../storage/tables.js';
import { MediaRepository, mediaRowKey, type NewMedia } from './repository.js';
import { mediaKeyFor, type MediaStore } from './store.js';
import type { ValidMedia } from './validate.js';

/** What storing one object came to: stored now, a resend of what is stored, or a conflict (other bytes). */
export type StoreResult = 'ok' | 'duplicate' | { storedSha256: string };

/**
 * Stores a batch of validated objects of registered devices in ONE transaction (media/consumer.ts acks after
 * it resolves):
 *
 *   advisory locks on every (tenant, media id), in one order -> which are indexed already (one query)
 *   -> write the new files at once, one fsync per directory (MediaStore.putMany) -> INSERT their rows -> COMMIT
 *
 * Under the locks the index row decides, as for one object: same sha256 -> a resend ('duplicate', nothing
 * written: an erased object's tombstone keeps its bytes from coming back); other -> a conflict (the stored
 * object untouched). The same media id twice in the batch: the first decides for the second. Throws if the
 * database or the store fails: nothing is indexed then (files already written are orphans a redelivery
 * overwrites with the same bytes). Returns one result per item, in order.
 */
export async function storeMediaBatch(
  db: Kysely<Database>,
  store: MediaStore,
  items: readonly ValidMedia[],
  storedAt: Date,
): Promise<StoreResult[]> {
  if (items.length === 0) return [];
  return db.transaction().execute(async (trx) => {
    // Sorted: two processes locking overlapping batches take the locks in one order (no deadlock).
    const lockKeys = [...new Set(items.map((m) => `media\n${m.tenantId}\n${m.mediaId}`))].sort();
    await sql`select pg_advisory_xact_lock(hashtextextended(k, 0))
                from unnest(${lockKeys}::text[]) with ordinality as t(k, i) order by i`.execute(trx);
    const repository = new MediaRepository(trx);
    const existing = await repository.getMany(items);
    /** sha256 by row key: indexed before, or decided by an earlier item of this batch. */
    const decided = new Map<string, string>();
    for (const [k, row] of existing) decided.set(k, row.sha256);
    const results: Array<StoreResult | undefined> = [];
    const fresh: Array<{ index: number; row: NewMedia; data: Uint8Array }> = [];
    items.forEach((m, index) => {
      const k = mediaRowKey(m.tenantId, m.mediaId);
      const sha = decided.get(k);
      if (sha !== undefined) {
        results.push(sha === m.sha256 ? 'duplicate' : { storedSha256: sha });
        return;
      }
      decided.set(k, m.sha256);
      results.push(undefined);
      const { data, ...fields } = m;
      fresh.push({ index, data, row: { ...fields, storedAt, storageKey: mediaKeyFor(m) } });
    });
    if (fresh.length > 0) {
      await store.putMany(fresh.map((f) => ({ key: f.row.storageKey, data: f.data })));
      const inserted = await repository.insertMany(fresh.map((f) => f.row));
      const lost = fresh.filter((f) => !inserted.has(mediaRowKey(f.row.tenantId, f.row.mediaId)));
      // A writer that did not take the lock won the race: drop the files just written unless they are theirs.
      const winners = await repository.getMany(lost.map((f) => f.row));
      for (const f of fresh) {
        if (inserted.has(mediaRowKey(f.row.tenantId, f.row.mediaId))) {
          results[f.index] = 'ok';
          continue;
        }
        const winner = winners.get(mediaRowKey(f.row.tenantId, f.row.mediaId));
        if (winner?.storage_key !== f.row.storageKey) await store.delete(f.row.storageKey);
        results[f.index] =
          winner?.sha256 === f.row.sha256 ? 'duplicate' : { storedSha256: winner?.sha256 ?? 'unknown' };
      }
    }
    return results.map((r) => r ?? 'duplicate');
  });
}
