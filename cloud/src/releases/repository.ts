import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { link, lstat, mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ReleaseError } from './errors.js';
import { parseRepoPath } from './layout.js';

/**
 * The TUF repository on a filesystem (`releases.dir`): `metadata/`, `targets/` and `incoming/` (uploaded bundles
 * not published yet, by SHA-256). Every write is a temporary file, fsync, rename and a directory fsync, so a
 * crash leaves the old file or the new one. Files are only ever added (consistent snapshots): a device
 * half-way through an update keeps reading the versions it started with.
 */
export class FsReleaseRepository {
  constructor(readonly dir: string) {}

  async init(): Promise<void> {
    for (const sub of ['metadata', 'targets', 'incoming'])
      await mkdir(join(this.dir, sub), { recursive: true, mode: 0o750 });
  }

  /** The bytes of a metadata file (`metadata/...`), or null. */
  async readMetadata(name: string): Promise<Buffer | null> {
    return readFile(join(this.dir, 'metadata', name)).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return null;
      throw err;
    });
  }

  /** The highest N of the `N.<role>.json` files, 0 when there is none. */
  async latestVersion(role: 'root' | 'snapshot' | 'targets'): Promise<number> {
    const names = await readdir(join(this.dir, 'metadata')).catch(() => [] as string[]);
    let max = 0;
    const re = new RegExp(`^([1-9]\\d{0,8})\\.${role}\\.json$`);
    for (const n of names) {
      const m = re.exec(n);
      if (m) max = Math.max(max, Number(m[1]));
    }
    return max;
  }

  async writeMetadata(name: string, data: Buffer): Promise<void> {
    await writeAtomic(join(this.dir, 'metadata', name), data);
  }

  /**
   * Streams an uploaded bundle into `incoming/<sha256>`, counting and hashing it; only complete bytes that hash
   * to `sha256` are kept.
   */
  async stage(sha256: string, body: Readable, maxBytes: number): Promise<{ size: number }> {
    const tmp = join(this.dir, 'incoming', `.upload-${randomUUID()}.tmp`);
    const hash = createHash('sha256');
    let size = 0;
    try {
      await pipeline(
        body,
        async function* (source: AsyncIterable<Buffer>) {
          for await (const chunk of source) {
            size += chunk.length;
            if (size > maxBytes)
              throw new ReleaseError('PAYLOAD_TOO_LARGE', `the bundle is larger than ${maxBytes} bytes`, {
                reason: 'oversized',
              });
            hash.update(chunk);
            yield chunk;
          }
        },
        createWriteStream(tmp, { mode: 0o640 }),
      );
      const actual = hash.digest('hex');
      if (actual !== sha256)
        throw new ReleaseError('VALIDATION_FAILED', `the uploaded bytes hash to ${actual}, not ${sha256}`, {
          reason: 'hash_mismatch',
        });
      await fsyncPath(tmp);
      await rename(tmp, join(this.dir, 'incoming', sha256));
      return { size };
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /** Where a staged (uploaded, not yet published) bundle is. */
  incomingPath(sha256: string): string {
    return join(this.dir, 'incoming', sha256);
  }

  /** Deletes a staged bundle that was refused (a published one keeps its bytes: targets/ is a hard link). */
  async discardIncoming(sha256: string): Promise<void> {
    await rm(this.incomingPath(sha256), { force: true });
  }

  /** Size of a regular file at `path` under the repository, or null (links and directories count as absent). */
  private async regularSize(path: string): Promise<number | null> {
    try {
      const st = await lstat(join(this.dir, path));
      return st.isFile() ? st.size : null;
    } catch {
      return null;
    }
  }

  /** Whether the bundle `sha256` is staged or published under `name`, with exactly `length` bytes. */
  async hasBundle(sha256: string, name: string, length: number): Promise<boolean> {
    const size =
      (await this.regularSize(`targets/${sha256}.${name}`)) ?? (await this.regularSize(`incoming/${sha256}`));
    return size === length;
  }

  /** Makes a staged bundle the target file `targets/<sha256>.<name>` (a hard link: the bytes are not copied). */
  async promote(sha256: string, name: string): Promise<void> {
    const target = join(this.dir, 'targets', `${sha256}.${name}`);
    if ((await this.regularSize(`targets/${sha256}.${name}`)) !== null) return;
    await link(join(this.dir, 'incoming', sha256), target);
    await fsyncPath(dirname(target));
  }

  /** The file behind a repository path a client asked for, or null for anything the layout does not name. */
  async locate(path: string): Promise<{ path: string; size: number } | null> {
    if (parseRepoPath(path) === null) return null;
    const size = await this.regularSize(path);
    return size === null ? null : { path: join(this.dir, path), size };
  }
}

/** fsync of a file or a directory (a rename is durable once its directory is synced). */
async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function writeAtomic(path: string, data: Buffer): Promise<void> {
  const tmp = `${path}.${randomUUID()}.tmp`;
  const fh = await open(tmp, 'w', 0o640);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  await fsyncPath(dirname(path));
}
