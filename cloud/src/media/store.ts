import { randomUUID } from 'node:crypto';
import { createReadStream, type ReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { VigilError } from '../lib/errors.js';

/**
 * Where media bytes live (DESIGN.md: "media in a MediaStore, filesystem by default, S3-compatible optional").
 * Keys are relative paths the store makes itself (`keyFor`), never client input, so a key cannot point outside
 * the root; `resolve` checks it anyway.
 */
export interface MediaStore {
  /** Stores `data` under `key` atomically and durably (the file is complete and fsynced, or absent). */
  put(key: string, data: Uint8Array): Promise<void>;
  /** `put` of several objects, at once; resolves once all are durable (a failure: any subset may be stored). */
  putMany(objects: ReadonlyArray<{ key: string; data: Uint8Array }>): Promise<void>;
  /** A stream of the bytes and their size, or null when the key holds nothing (deleted, never stored). */
  open(key: string): Promise<{ stream: ReadStream; size: number } | null>;
  /** Deletes the bytes; true when something was deleted, false when there was nothing. */
  delete(key: string): Promise<boolean>;
}

export class MediaStoreError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MEDIA_STORE_FAILED', message, true, options);
  }
}

async function syncDirectory(dir: string): Promise<void> {
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

const KEY_RE = /^[a-z0-9_-]+(\/[a-z0-9_.-]+)+$/i;

/**
 * `<tenant>/<yyyy>/<mm>/<dd>/<media id>-<sha256 prefix>.<ext>`: grouped by tenant (erasure of a tenant is one
 * directory) and by capture day (no directory grows without bound). The content hash in the name means that a
 * second object reusing a media id with other bytes lands in another file and can never overwrite the first.
 */
export function mediaKeyFor(m: {
  tenantId: string;
  mediaId: string;
  capturedAt: Date;
  contentType: string;
  sha256: string;
}): string {
  const iso = m.capturedAt.toISOString();
  const ext = m.contentType === 'image/jpeg' ? 'jpg' : 'bin';
  const day = `${iso.slice(0, 4)}/${iso.slice(5, 7)}/${iso.slice(8, 10)}`;
  return `${m.tenantId}/${day}/${m.mediaId}-${m.sha256.slice(0, 16)}.${ext}`;
}

/** The filesystem MediaStore: files 0600 in directories 0700 under `root`. */
export class FsMediaStore implements MediaStore {
  constructor(private readonly root: string) {}

  private resolve(key: string): string {
    if (!KEY_RE.test(key) || key.split('/').some((p) => p === '.' || p === '..'))
      throw new MediaStoreError(`invalid media key ${JSON.stringify(key)}`);
    const path = join(this.root, key);
    if (!path.startsWith(this.root.endsWith(sep) ? this.root : this.root + sep))
      throw new MediaStoreError(`media key ${JSON.stringify(key)} leaves the store`);
    return path;
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    await this.putMany([{ key, data }]);
  }

  /**
   * Each object as `put` does (temp file, write, fsync, rename into place), all at once; then every directory
   * they went into is fsynced once (the renames are durable when the directory entries are). One directory
   * fsync covers every rename into it that came before it, so a batch pays one per directory, not one per
   * object. Resolves once everything is durable; on failure some objects may be in place (like a crash would
   * leave them: the caller records none of them).
   */
  async putMany(objects: ReadonlyArray<{ key: string; data: Uint8Array }>): Promise<void> {
    const paths = objects.map((o) => this.resolve(o.key));
    const dirs = [...new Set(paths.map((p) => dirname(p)))];
    // Each directory once per batch, not once per object (a batch of one day's objects shares one).
    try {
      await Promise.all(dirs.map((d) => mkdir(d, { recursive: true, mode: 0o700 })));
    } catch (cause) {
      throw new MediaStoreError(`making media directories failed: ${(cause as Error).message}`, { cause });
    }
    await Promise.all(objects.map((o, i) => this.writeInPlace(o.key, paths[i]!, o.data)));
    try {
      await Promise.all(dirs.map(syncDirectory));
    } catch (cause) {
      throw new MediaStoreError(`syncing media directories failed: ${(cause as Error).message}`, { cause });
    }
  }

  /** Temp file, write, fsync, rename to `path` (not yet durable: its directory is not synced). */
  private async writeInPlace(key: string, path: string, data: Uint8Array): Promise<void> {
    const tmp = join(dirname(path), `.${randomUUID()}.tmp`);
    try {
      const fh = await open(tmp, 'wx', 0o600);
      try {
        // One write() per object as a rule (writeFile adds a read-back of options and chunking).
        for (let done = 0; done < data.length;)
          done += (await fh.write(data, done, data.length - done, done)).bytesWritten;
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, path);
    } catch (cause) {
      await rm(tmp, { force: true }).catch(() => undefined);
      throw new MediaStoreError(`storing media ${key} failed: ${(cause as Error).message}`, { cause });
    }
  }

  async open(key: string): Promise<{ stream: ReadStream; size: number } | null> {
    const path = this.resolve(key);
    try {
      const st = await stat(path);
      if (!st.isFile()) return null;
      return { stream: createReadStream(path), size: st.size };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new MediaStoreError(`reading media ${key} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  async delete(key: string): Promise<boolean> {
    const path = this.resolve(key);
    try {
      await rm(path);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw new MediaStoreError(`deleting media ${key} failed: ${(err as Error).message}`, { cause: err });
    }
  }
}
