import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ReleaseError } from './errors.js';

export interface FileEntry {
  /** '/'-separated path inside the bundle. */
  readonly path: string;
  readonly size: number;
  readonly sha256: string;
  /** '0755' or '0644': the only modes a bundle carries. */
  readonly mode: string;
}

/**
 * Walks a staged bundle: regular files and directories only. A link, device or fifo is refused, because the
 * updater refuses them too (a link inside a bundle could point an unpack outside its directory).
 * Returns directories and files, each sorted by byte order of the path.
 */
export function walkStaged(
  root: string,
  opts: { allowLinks?: boolean } = {},
): { dirs: string[]; files: string[] } {
  const dirs: string[] = [];
  const files: string[] = [];
  const walk = (rel: string): void => {
    for (const entry of readdirSync(rel ? join(root, rel) : root).sort()) {
      const child = rel ? `${rel}/${entry}` : entry;
      const st = lstatSync(join(root, child));
      if (st.isDirectory()) {
        dirs.push(child);
        walk(child);
      } else if (st.isFile() || (opts.allowLinks && st.isSymbolicLink())) files.push(child);
      else
        throw new ReleaseError('BUNDLE_ENTRY', `${child}: only regular files and directories may be bundled`);
    }
  };
  walk('');
  return { dirs: dirs.sort(), files: files.sort() };
}

export function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

export function describeFiles(root: string, files: readonly string[]): FileEntry[] {
  return files.map((path) => {
    const abs = join(root, path);
    const st = lstatSync(abs);
    return { path, size: st.size, sha256: sha256File(abs), mode: st.mode & 0o111 ? '0755' : '0644' };
  });
}

/** Runs a tool to completion; its stderr goes into the error when it fails. */
export function run(
  cmd: string,
  args: string[],
  opts: { input?: string; cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      // stdin only when there is input: a tool that exits without reading it would fail our write (EPIPE).
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'ignore', 'pipe'],
      cwd: opts.cwd,
      env: opts.env ?? process.env,
    });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) =>
      reject(new ReleaseError('TOOL_MISSING', `${cmd}: ${err.message}`, { cause: err })),
    );
    child.on('close', (code) => {
      if (code === 0) resolve();
      else
        reject(new ReleaseError('TOOL_FAILED', `${cmd} ${args.join(' ')} exited ${code}: ${stderr.trim()}`));
    });
    if (opts.input !== undefined && child.stdin) {
      // tar reads its whole file list; if it dies first, its exit status is the error that matters.
      child.stdin.on('error', () => undefined);
      child.stdin.end(opts.input);
    }
  });
}

/**
 * Writes `<out>` (a .tar.gz) from the staged directory, reproducibly: entries in the order given (manifest
 * first, so a reader can check it before anything else), GNU format (no pax headers with pids or atimes),
 * owner and group 0 by number, every mtime the commit time, modes as staged (normalized before), and
 * `gzip -n` (no name or timestamp in the gzip header).
 */
export async function writeTarGz(
  root: string,
  entries: readonly string[],
  mtime: number,
  out: string,
): Promise<void> {
  const tarFile = `${out}.tar`;
  await run(
    'tar',
    [
      '--create',
      '--format=gnu',
      '-C',
      root,
      '-f',
      tarFile,
      '--numeric-owner',
      '--owner=0',
      '--group=0',
      `--mtime=@${mtime}`,
      '--no-recursion',
      '--null',
      '--files-from=-',
    ],
    { input: entries.map((e) => `${e}\0`).join('') },
  );
  await run('gzip', ['-n', '-6', '-f', tarFile]);
  await run('mv', ['-f', `${tarFile}.gz`, out]);
}
