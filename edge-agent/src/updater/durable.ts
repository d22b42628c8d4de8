import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeSync,
} from 'node:fs';
import { dirname, join } from 'node:path';

// Crash-safe file operations of the updater. A rename is atomic, but only durable once the bytes were
// fsynced before it and the directory holding the new entry after it.

export function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** tmp + fsync + rename + directory fsync: a reader sees the old file or the new one, also after power loss. */
export function writeFileAtomic(path: string, data: string, mode = 0o640): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o750 });
  const tmp = join(dir, `.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', mode);
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
  fsyncPath(dir);
}

export function writeJsonAtomic(path: string, value: unknown): void {
  writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`);
}

/** The file's JSON, undefined when absent. */
export function readJsonIfExists(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return JSON.parse(text) as unknown;
}

/**
 * Points the symlink `link` at `target` atomically: a new link under a temporary name, renamed over the old
 * one (rename replaces a symlink in one step; there is no moment without `link`), then the directory fsync.
 */
export function swapSymlink(link: string, target: string): void {
  const dir = dirname(link);
  const tmp = join(dir, `.current-${randomBytes(6).toString('hex')}`);
  symlinkSync(target, tmp);
  renameSync(tmp, link);
  fsyncPath(dir);
}

export function readLinkIfExists(link: string): string | undefined {
  try {
    return readlinkSync(link);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
