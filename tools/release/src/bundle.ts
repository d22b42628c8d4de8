import {
  copyFileSync,
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { describeFiles, run, walkStaged, writeTarGz, type FileEntry } from './archive.js';
import { ReleaseError } from './errors.js';
import { copyNativeDependencies, copyNormalized, listTree } from './natives.js';
import type { ProgramSpec } from './programs.js';

export const BUNDLE_FORMAT = 1;
export const PLATFORM = 'linux-x64';

/** What every artifact of one build shares. */
export interface BuildInfo {
  readonly version: string;
  readonly minUpgradeFrom: string;
  readonly commit: string;
  /** Unix seconds of the commit: every mtime in every artifact. */
  readonly commitTime: number;
  /** Built from a work tree with changes not in `commit`: never publish. */
  readonly dirty: boolean;
}

/** `manifest.json`, the first entry of every bundle (format documented in tools/release/README.md). */
export interface BundleManifest {
  readonly format: typeof BUNDLE_FORMAT;
  readonly name: string;
  readonly version: string;
  readonly minUpgradeFrom: string;
  readonly commit: string;
  readonly commitTime: string;
  readonly dirty: boolean;
  readonly platform: typeof PLATFORM;
  readonly entrypoint: string;
  readonly node: { readonly version: string; readonly abi: string; readonly bundled: boolean };
  readonly dependencies: readonly string[];
  readonly files: readonly FileEntry[];
}

function launcher(spec: ProgramSpec, command: string = spec.name, module = 'main.mjs'): string {
  const node = spec.runtime ? '"$here/../runtime/node"' : 'node';
  const why = spec.runtime
    ? 'the bundled Node runtime (the native addons are built for its ABI)'
    : 'the Node.js >= 20 on PATH';
  return `#!/bin/sh
# ${command}: runs lib/${spec.name}/${module} with ${why}. No tsx, no source.
here=$(dirname "$(readlink -f "$0")")
exec ${node} "$here/../lib/${spec.name}/${module}" "$@"
`;
}

/** Stages one program under `stageDir` (created empty by the caller). */
export async function stageProgram(
  repoRoot: string,
  spec: ProgramSpec,
  info: BuildInfo,
  stageDir: string,
): Promise<BundleManifest> {
  for (const [entry, file] of [[spec.entry, 'main.mjs'] as const, ...spec.workers])
    await bundleEntry(repoRoot, spec, info, entry, join(stageDir, 'lib', spec.name, file));

  const dependencies = copyNativeDependencies(spec.natives, join(repoRoot, spec.packageDir), stageDir);
  for (const [from, to] of spec.assets) {
    // A directory's whole tree, or one file.
    if (statSync(join(repoRoot, from)).isFile()) copyNormalized(join(repoRoot, from), join(stageDir, to));
    else
      for (const file of listTree(join(repoRoot, from)))
        copyNormalized(join(repoRoot, from, file), join(stageDir, to, file));
  }
  mkdirSync(join(stageDir, 'bin'), { recursive: true });
  writeFileSync(join(stageDir, 'bin', spec.name), launcher(spec), { mode: 0o755 });
  chmodSync(join(stageDir, 'bin', spec.name), 0o755);
  for (const [command, module] of spec.commands ?? []) {
    writeFileSync(join(stageDir, 'bin', command), launcher(spec, command, module), { mode: 0o755 });
    chmodSync(join(stageDir, 'bin', command), 0o755);
  }
  if (spec.runtime) {
    mkdirSync(join(stageDir, 'runtime'), { recursive: true });
    copyFileSync(process.execPath, join(stageDir, 'runtime', 'node'));
    chmodSync(join(stageDir, 'runtime', 'node'), 0o755);
    const license = [
      '/usr/share/doc/nodejs/copyright',
      join(process.execPath, '../../share/doc/node/LICENSE'),
    ].find(existsSync);
    if (license) copyNormalized(license, join(stageDir, 'runtime', 'LICENSE'));
  }

  const { files } = walkStaged(stageDir);
  // Debug symbols are dead weight on a gateway (the runtime is ~100 MB with them); stripping is deterministic.
  const elf = files.filter((f) => f.endsWith('.node') || f === 'runtime/node');
  if (elf.length > 0) await run('strip', ['--strip-unneeded', ...elf.map((f) => join(stageDir, f))]);
  const manifest: BundleManifest = {
    format: BUNDLE_FORMAT,
    name: spec.name,
    version: info.version,
    minUpgradeFrom: info.minUpgradeFrom,
    commit: info.commit,
    commitTime: new Date(info.commitTime * 1000).toISOString(),
    dirty: info.dirty,
    platform: PLATFORM,
    entrypoint: `bin/${spec.name}`,
    node: { version: process.versions.node, abi: process.versions.modules, bundled: spec.runtime },
    dependencies,
    files: describeFiles(stageDir, files),
  };
  writeFileSync(join(stageDir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o644 });
  return manifest;
}

/** Writes the staged program as `<outFile>` (.tar.gz): manifest.json first, then directories and files. */
export async function packStaged(stageDir: string, info: BuildInfo, outFile: string): Promise<void> {
  const { dirs, files } = walkStaged(stageDir);
  const rest = [...dirs, ...files.filter((f) => f !== 'manifest.json')].sort();
  await writeTarGz(stageDir, ['manifest.json', ...rest], info.commitTime, outFile);
}

export function readManifest(stageDir: string): BundleManifest {
  return JSON.parse(readFileSync(join(stageDir, 'manifest.json'), 'utf8')) as BundleManifest;
}

/**
 * One esbuild entry of a program, written to `outfile` as an ES module (tests build vigil-updater alone with
 * it, as the agent bundle's updater.mjs).
 */
export async function bundleEntry(
  repoRoot: string,
  spec: ProgramSpec,
  info: BuildInfo,
  entry: string,
  outfile: string,
): Promise<void> {
  const result = await build({
    absWorkingDir: repoRoot,
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    conditions: ['@vigil/source'],
    external: [...spec.natives.map((n) => n.name), ...spec.absent],
    define: { __VIGIL_RELEASE__: JSON.stringify({ version: info.version, commit: info.commit }) },
    // CommonJS dependencies inside an ES module bundle still call require() and use __dirname (fluent-ffmpeg
    // computes its presets directory at every command; the bundle's directory is the only meaningful one).
    banner: {
      js: [
        "import { createRequire as __vigilCreateRequire } from 'node:module';",
        "import { fileURLToPath as __vigilFileURLToPath } from 'node:url';",
        "import { dirname as __vigilDirname } from 'node:path';",
        'const require = __vigilCreateRequire(import.meta.url);',
        'const __filename = __vigilFileURLToPath(import.meta.url);',
        'const __dirname = __vigilDirname(__filename);',
      ].join('\n'),
    },
    legalComments: 'eof',
    logLevel: 'silent',
    sourcemap: false,
  }).catch((err: unknown) => {
    throw new ReleaseError(
      'BUNDLE_FAILED',
      `esbuild ${entry}: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  });
  if (result.errors.length > 0)
    throw new ReleaseError('BUNDLE_FAILED', `esbuild ${entry}: ${result.errors[0]?.text ?? ''}`);
  chmodSync(outfile, 0o644);
}
