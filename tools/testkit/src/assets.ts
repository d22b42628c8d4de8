import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: the nearest ancestor of this file holding pnpm-workspace.yaml. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'pnpm-workspace.yaml'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('pnpm-workspace.yaml not found above testkit');
    dir = parent;
  }
  return dir;
}

/**
 * The shared folder every developer and CI run has beside the project's root (assets/, standards/): see
 * findSharedDir. Code finds shared files through this, never by counting `../` from its own path (that breaks
 * in a checkout at another depth, e.g. a git worktree).
 */
export function sharedDir(): string {
  return findSharedDir(repoRoot());
}

/**
 * `<root>/../shared`, or else the nearest `shared` beside a further ancestor of `root` (a worktree kept below
 * the main checkout's parent, e.g. /work/wt/x with /work/shared). Only a folder holding `assets` or `standards`
 * counts, so an unrelated `shared` is not taken. None found: `<root>/../shared` (absent; callers say so).
 */
export function findSharedDir(root: string): string {
  const beside = join(dirname(root), 'shared');
  for (let dir = dirname(root); ; dir = dirname(dir)) {
    const candidate = join(dir, 'shared');
    if (existsSync(join(candidate, 'assets')) || existsSync(join(candidate, 'standards'))) return candidate;
    if (dirname(dir) === dir) return beside;
  }
}

/** The shared test assets (real models and clips): VIGIL_ASSETS_DIR, default `<shared>/assets`. */
export function assetsDir(): string {
  return resolve(process.env.VIGIL_ASSETS_DIR ?? join(sharedDir(), 'assets'));
}

/** OASIS's CAP 1.2 schema in the shared standards (never copied into the repository). */
export function capSchemaFile(): string {
  return join(sharedDir(), 'standards', 'cap', 'CAP-v1.2.xsd');
}

/** Path of one asset, or undefined (with a note on stderr saying why tests skip) when it is absent. */
export function asset(relativePath: string): string | undefined {
  const path = join(assetsDir(), relativePath);
  if (existsSync(path)) return path;
  console.warn(
    `[testkit] asset ${relativePath} not found in ${assetsDir()} (set VIGIL_ASSETS_DIR): skipping the tests that need it`,
  );
  return undefined;
}
