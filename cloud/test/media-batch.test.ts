// storeMediaBatch against real PostgreSQL and the filesystem store: two batches holding one media id at once
// (two cloud processes, or two batches in flight in one). The first INSERT claims the id with its uncommitted
// row; the second waits on that row until the first COMMITs, then finds it: one row, one file, the second told
// 'duplicate' (same bytes) or a conflict (other bytes), and the stored file untouched.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useDatabase } from '@vigil/testkit';
import { createDb } from '../src/index.js';
import { storeMediaBatch } from '../src/media/batch.js';
import { FsMediaStore, type MediaStore } from '../src/media/store.js';
import type { ValidMedia } from '../src/media/validate.js';
import { migrateToLatest } from '../src/storage/migrate.js';
import type { Database } from '../src/storage/tables.js';
import { sha256Hex, TINY_JPEG } from './support/media.js';
import { uuidv7 } from './support/ingest-stack.js';

function media(mediaId: string, data: Buffer): ValidMedia {
  const at = new Date(Date.now() - 1000);
  return {
    tenantId: 'acme',
    mediaId,
    siteId: 'hq',
    deviceId: 'gw-1',
    cameraId: 'cam1',
    eventId: uuidv7(at.getTime()),
    contentType: 'image/jpeg',
    sha256: sha256Hex(data),
    sizeBytes: data.length,
    redacted: true,
    capturedAt: at,
    data,
  };
}

/** The real store; `putMany` waits for `release()` once armed (holds a batch's transaction open). */
class GatedStore extends FsMediaStore {
  private gate: Promise<void> | undefined;
  private unblock: (() => void) | undefined;
  arm(): void {
    this.gate = new Promise((resolve) => (this.unblock = resolve));
  }
  release(): void {
    this.unblock?.();
    this.gate = undefined;
  }
  override async putMany(objects: ReadonlyArray<{ key: string; data: Uint8Array }>): Promise<void> {
    await super.putMany(objects);
    await this.gate;
  }
}

describe('storeMediaBatch: two batches with one media id at once', () => {
  const databaseUrl = useDatabase();
  const dir = mkdtempSync(join(tmpdir(), 'vigil-media-batch-'));
  let db: Kysely<Database>;
  beforeAll(async () => {
    db = createDb(databaseUrl(), 4, () => undefined);
    await migrateToLatest(db as Kysely<unknown>);
  });
  afterAll(async () => {
    await db?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  const files = (root: string): string[] =>
    !existsSync(root)
      ? []
      : readdirSync(root, { recursive: true, withFileTypes: true })
          .filter((e) => e.isFile())
          .map((e) => relative(root, join(e.parentPath, e.name)))
          .sort();

  /** A holds the id (files written, not committed) while B stores the same id; then A commits. */
  async function race(root: string, a: ValidMedia, b: ValidMedia) {
    const gated = new GatedStore(root);
    const plain: MediaStore = new FsMediaStore(root);
    gated.arm();
    const first = storeMediaBatch(db, gated, [a], new Date());
    // A's row is inserted once its files are being written: wait for them.
    await expect.poll(() => files(root).some((f) => !f.includes('/.')), { timeout: 10_000 }).toBe(true);
    let secondDone = false;
    const second = storeMediaBatch(db, plain, [b], new Date()).finally(() => (secondDone = true));
    await new Promise((r) => setTimeout(r, 300));
    const waited = !secondDone; // B must wait on A's uncommitted row, not decide without it
    gated.release();
    return { first: await first, second: await second, waited };
  }

  it('same bytes: the second is a duplicate, one row and one file', async () => {
    const root = join(dir, 'same');
    const id = uuidv7(Date.now());
    const r = await race(root, media(id, TINY_JPEG), media(id, TINY_JPEG));
    expect(r).toEqual({ first: ['ok'], second: ['duplicate'], waited: true });
    const rows = await db.selectFrom('media').selectAll().where('media_id', '=', id).execute();
    expect(rows).toHaveLength(1);
    expect(files(root)).toEqual([rows[0]!.storage_key]);
  });

  it('other bytes: the second is a conflict naming the stored sha256; the stored file is untouched', async () => {
    const root = join(dir, 'other');
    const id = uuidv7(Date.now());
    const other = Buffer.concat([TINY_JPEG, Buffer.from([0])]);
    const r = await race(root, media(id, TINY_JPEG), media(id, other));
    expect(r).toEqual({
      first: ['ok'],
      second: [{ storedSha256: sha256Hex(TINY_JPEG) }],
      waited: true,
    });
    const rows = await db.selectFrom('media').selectAll().where('media_id', '=', id).execute();
    expect(rows.map((x) => x.sha256)).toEqual([sha256Hex(TINY_JPEG)]);
    expect(files(root)).toEqual([rows[0]!.storage_key]);
    expect(readFileSync(join(root, rows[0]!.storage_key!))).toEqual(TINY_JPEG);
  });

  it('one id twice in a batch: the first decides for the second; nothing written for a stored id', async () => {
    const root = join(dir, 'twice');
    const store = new FsMediaStore(root);
    const id = uuidv7(Date.now());
    const other = Buffer.concat([TINY_JPEG, Buffer.from([1])]);
    expect(
      await storeMediaBatch(
        db,
        store,
        [media(id, TINY_JPEG), media(id, TINY_JPEG), media(id, other)],
        new Date(),
      ),
    ).toEqual(['ok', 'duplicate', { storedSha256: sha256Hex(TINY_JPEG) }]);
    const before = files(root);
    expect(await storeMediaBatch(db, store, [media(id, other)], new Date())).toEqual([
      { storedSha256: sha256Hex(TINY_JPEG) },
    ]);
    expect(files(root)).toEqual(before);
  });
});
