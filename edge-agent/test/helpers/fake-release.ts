import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeFiles, packStaged, walkStaged, type BundleManifest } from '@vigil/release';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'updater');
export const SUPERVISOR = join(fixtures, 'supervisor.mjs');

export type FakeMode = 'good' | 'crash' | 'unhealthy';

/**
 * A minimal agent release in bundle format 1, built with the release build's own archive code (manifest
 * first, GNU tar, owners 0, fixed mtimes, `gzip -n`): bin/vigil-agent (the same launcher shape as a real
 * bundle, on the Node.js of PATH), lib/vigil-agent/main.mjs (the fake agent) and its behaviour.
 */
export async function buildFakeRelease(
  work: string,
  version: string,
  mode: FakeMode,
  opts: { padding?: number } = {},
): Promise<{ bundle: string; staged: string }> {
  const stage = join(work, `stage-${version}`);
  mkdirSync(join(stage, 'bin'), { recursive: true });
  mkdirSync(join(stage, 'lib', 'vigil-agent'), { recursive: true });
  writeFileSync(
    join(stage, 'bin', 'vigil-agent'),
    '#!/bin/sh\n# vigil-agent (test release)\nhere=$(dirname "$(readlink -f "$0")")\nexec node "$here/../lib/vigil-agent/main.mjs" "$@"\n',
  );
  chmodSync(join(stage, 'bin', 'vigil-agent'), 0o755);
  copyFileSync(join(fixtures, 'fake-agent.mjs'), join(stage, 'lib', 'vigil-agent', 'main.mjs'));
  writeFileSync(join(stage, 'lib', 'vigil-agent', 'behaviour.json'), JSON.stringify({ mode }));
  // Random: incompressible, so the bundle itself is that large.
  if (opts.padding) writeFileSync(join(stage, 'lib', 'vigil-agent', 'pad.bin'), randomBytes(opts.padding));
  for (const f of walkStaged(stage).files) chmodSync(join(stage, f), f.startsWith('bin/') ? 0o755 : 0o644);
  const info = { version, minUpgradeFrom: '0.1.0', commit: 'test', commitTime: 1_700_000_000, dirty: false };
  const manifest: BundleManifest = {
    format: 1,
    name: 'vigil-agent',
    version,
    minUpgradeFrom: info.minUpgradeFrom,
    commit: info.commit,
    commitTime: new Date(info.commitTime * 1000).toISOString(),
    dirty: false,
    platform: 'linux-x64',
    entrypoint: 'bin/vigil-agent',
    node: { version: process.versions.node, abi: process.versions.modules, bundled: false },
    dependencies: [],
    files: describeFiles(stage, walkStaged(stage).files),
  };
  writeFileSync(join(stage, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  const bundle = join(work, `vigil-agent-${version}-linux-x64.tar.gz`);
  await packStaged(stage, info, bundle);
  return { bundle, staged: stage };
}

/** A release "installed by the package" (like /opt/vigil): a copy of a staged release. */
export function installPackaged(staged: string, dir: string): string {
  cpSync(staged, dir, { recursive: true });
  return dir;
}
