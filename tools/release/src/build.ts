import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sha256File } from './archive.js';
import { PLATFORM, packStaged, stageProgram, type BuildInfo } from './bundle.js';
import { ReleaseError } from './errors.js';
import type { ProgramSpec } from './programs.js';

const SEMVER = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/;

export interface Artifact {
  readonly name: string;
  readonly file: string;
  readonly size: number;
  readonly sha256: string;
}

/** `release.json` next to the artifacts: what the TUF publisher signs and what a human checks. */
export interface ReleaseIndex {
  readonly version: string;
  readonly minUpgradeFrom: string;
  readonly commit: string;
  readonly commitTime: string;
  readonly dirty: boolean;
  readonly platform: string;
  readonly artifacts: readonly Artifact[];
}

function git(repoRoot: string, args: string[]): string {
  return execFileSync('git', args, { cwd: repoRoot, encoding: 'utf8' }).trim();
}

/** Version, commit and commit time; a changed work tree is refused unless `allowDirty` (then marked dirty). */
export function buildInfo(
  repoRoot: string,
  opts: { version?: string; minUpgradeFrom?: string; allowDirty?: boolean },
): BuildInfo {
  const root = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as {
    version?: string;
    vigil?: { minUpgradeFrom?: string };
  };
  const version = opts.version ?? root.version;
  const minUpgradeFrom = opts.minUpgradeFrom ?? root.vigil?.minUpgradeFrom ?? '0.0.0';
  for (const [what, v] of [
    ['version', version],
    ['minimum upgrade-from version', minUpgradeFrom],
  ] as const) {
    if (!v || !SEMVER.test(v))
      throw new ReleaseError('VERSION_INVALID', `${what} ${String(v)} is not MAJOR.MINOR.PATCH[-pre]`);
  }
  const dirty = git(repoRoot, ['status', '--porcelain']) !== '';
  if (dirty && !opts.allowDirty) {
    throw new ReleaseError(
      'TREE_DIRTY',
      'the work tree has changes that are not committed: commit them (a release is built from a commit), or pass --allow-dirty for a local test build',
    );
  }
  return {
    version: version!,
    minUpgradeFrom,
    commit: git(repoRoot, ['rev-parse', 'HEAD']) + (dirty ? '-dirty' : ''),
    commitTime: Number(git(repoRoot, ['log', '-1', '--format=%ct'])),
    dirty,
  };
}

export function bundleFileName(name: string, version: string): string {
  return `${name}-${version}-${PLATFORM}.tar.gz`;
}

/** Builds one program's bundle into `outDir`; the staging directory is kept only when `keepStage` is given. */
export async function buildBundle(
  repoRoot: string,
  spec: ProgramSpec,
  info: BuildInfo,
  outDir: string,
  keepStage?: string,
): Promise<Artifact> {
  const stage = keepStage ?? mkdtempSync(join(tmpdir(), `${spec.name}-stage-`));
  try {
    rmSync(stage, { recursive: true, force: true });
    mkdirSync(stage, { recursive: true });
    await stageProgram(repoRoot, spec, info, stage);
    mkdirSync(outDir, { recursive: true });
    const file = join(outDir, bundleFileName(spec.name, info.version));
    await packStaged(stage, info, file);
    return {
      name: spec.name,
      file: bundleFileName(spec.name, info.version),
      size: statSync(file).size,
      sha256: sha256File(file),
    };
  } finally {
    if (!keepStage) rmSync(stage, { recursive: true, force: true });
  }
}

/** Writes release.json and SHA256SUMS for the artifacts in `outDir` (sorted by file name). */
export function writeReleaseIndex(
  outDir: string,
  info: BuildInfo,
  artifacts: readonly Artifact[],
): ReleaseIndex {
  const sorted = [...artifacts].sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  const index: ReleaseIndex = {
    version: info.version,
    minUpgradeFrom: info.minUpgradeFrom,
    commit: info.commit,
    commitTime: new Date(info.commitTime * 1000).toISOString(),
    dirty: info.dirty,
    platform: PLATFORM,
    artifacts: sorted,
  };
  writeFileSync(join(outDir, 'release.json'), `${JSON.stringify(index, null, 2)}\n`);
  writeFileSync(join(outDir, 'SHA256SUMS'), sorted.map((a) => `${a.sha256}  ${a.file}\n`).join(''));
  return index;
}
