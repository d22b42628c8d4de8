import { closeSync, fchmodSync, fsyncSync, openSync, writeSync } from 'node:fs';

// The two fsyncs the identity store's crash safety rests on: a renamed file or directory is only durable once
// its bytes and the directory entry pointing at it have reached the disk.

/** Writes a file durably with its final mode set on the open descriptor (umask does not apply). */
export function writeDurable(path: string, data: string, mode: number): void {
  const fd = openSync(path, 'wx', mode);
  try {
    fchmodSync(fd, mode);
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** fsync a directory, so that the renames in it survive power loss. */
export function syncDir(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
