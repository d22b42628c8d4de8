import { existsSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The nearest ancestor of `start` (inclusive) that contains pnpm-workspace.yaml, or undefined. */
export function findRepoRoot(start: string): string | undefined {
  let dir = resolve(start);
  for (;;) {
    if (existsSync(join(dir, 'pnpm-workspace.yaml'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/**
 * Where the dev PKI lives by default: `$VIGIL_PKI_DIR` if set, else `<repo root>/.vigil/pki` (gitignored).
 * The repo root is searched from this package's location, then from the current directory.
 */
export function defaultPkiDir(env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): string {
  const fromEnv = env.VIGIL_PKI_DIR;
  if (fromEnv) return isAbsolute(fromEnv) ? fromEnv : resolve(cwd, fromEnv);
  const root = findRepoRoot(dirname(fileURLToPath(import.meta.url))) ?? findRepoRoot(cwd) ?? resolve(cwd);
  return join(root, '.vigil', 'pki');
}
