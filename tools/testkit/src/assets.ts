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

/** The shared test assets (real models and clips): VIGIL_ASSETS_DIR, default `<repo>/../shared/assets`. */
export function assetsDir(): string {
  return resolve(process.env.VIGIL_ASSETS_DIR ?? join(repoRoot(), '..', 'shared', 'assets'));
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
