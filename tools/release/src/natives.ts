import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  realpathSync,
  statSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { ReleaseError } from './errors.js';

/**
 * A dependency that cannot be bundled (a native addon, or a package that finds its files next to itself) and
 * is copied, with its runtime dependency closure, into the release's `node_modules`.
 */
export interface NativeDependency {
  readonly name: string;
  /** Runtime dependencies to leave out: used only by an install script (downloads, prebuilt fetchers). */
  readonly installOnly?: readonly string[];
  /** Keep a file (path relative to the package root, '/'-separated)? Default: everything but docs and types. */
  readonly keep?: (path: string) => boolean;
}

/** Docs, TypeScript (declarations, and sources some packages ship next to their JS), source maps, dotfiles (.npmignore) and command-line scripts (`bin/`: the
 *  agent imports its dependencies, it never runs their CLIs) are not needed at run time. */
export function defaultKeep(path: string): boolean {
  if (/(^|\/)\./.test(path) || path.startsWith('bin/')) return false;
  return !/(\.[cm]?ts|\.map|\.md|\.markdown)$/i.test(path) || /license/i.test(path);
}

/** Node's resolution from a directory: the first `node_modules/<name>` walking up, by its real path. */
export function resolvePackageDir(name: string, fromDir: string): string | undefined {
  let dir = fromDir;
  for (;;) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return realpathSync(candidate);
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

interface PackageJson {
  name: string;
  version: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

function readPackageJson(dir: string): PackageJson {
  return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as PackageJson;
}

/** Files under `dir`, '/'-separated, sorted; symbolic links are followed (pnpm links them, we copy them). */
export function listTree(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    const abs = rel ? join(dir, rel) : dir;
    for (const entry of readdirSync(abs).sort()) {
      const child = rel ? `${rel}/${entry}` : entry;
      if (statSync(join(dir, child)).isDirectory()) walk(child);
      else out.push(child);
    }
  };
  walk('');
  return out;
}

/** Copies a file with a normalized mode (umask must not leak): 0644, or 0755 when `executable`. */
export function copyNormalized(from: string, to: string, executable = false): void {
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(from, to);
  chmodSync(to, executable ? 0o755 : 0o644);
}

/**
 * Copies each native dependency and its runtime closure into `<outDir>/node_modules/<name>` (flat, as npm
 * would lay them out). Two versions of one name would need nesting; none of ours do, so that is refused.
 * Returns `name@version` of every package copied, sorted.
 */
export function copyNativeDependencies(
  natives: readonly NativeDependency[],
  fromDir: string,
  outDir: string,
): string[] {
  const copied = new Map<string, { version: string; src: string }>();
  const visit = (name: string, from: string, spec: NativeDependency | undefined, optional: boolean): void => {
    const src = resolvePackageDir(name, from);
    if (!src) {
      if (optional) return; // an optional dependency for another platform
      throw new ReleaseError(
        'DEPENDENCY_MISSING',
        `${name} (needed from ${from}) is not installed: run pnpm install`,
      );
    }
    const pkg = readPackageJson(src);
    const seen = copied.get(name);
    if (seen) {
      if (seen.src === src) return;
      throw new ReleaseError(
        'DEPENDENCY_CONFLICT',
        `${name} is needed at ${seen.version} and ${pkg.version}: the flat node_modules cannot hold both`,
      );
    }
    copied.set(name, { version: pkg.version, src });
    const keep = spec?.keep ?? defaultKeep;
    // Nothing in node_modules is executed as a program (addons and libraries are dlopen()ed): all 0644.
    for (const file of listTree(src)) {
      if (file.startsWith('node_modules/') || !keep(file)) continue;
      copyNormalized(join(src, file), join(outDir, 'node_modules', ...name.split('/'), ...file.split('/')));
    }
    const skip = new Set(spec?.installOnly ?? []);
    for (const dep of Object.keys(pkg.dependencies ?? {}).sort()) {
      if (!skip.has(dep)) visit(dep, src, undefined, false);
    }
    for (const dep of Object.keys(pkg.optionalDependencies ?? {}).sort()) {
      if (!skip.has(dep) && !copied.has(dep)) visit(dep, src, undefined, true);
    }
  };
  for (const spec of natives) visit(spec.name, fromDir, spec, false);
  return [...copied.entries()].map(([name, { version }]) => `${name}@${version}`).sort();
}
