import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { buildBundle, buildInfo, writeReleaseIndex, type Artifact } from './build.js';
import { buildDeb, readReleaseRoot } from './deb.js';
import { ReleaseError } from './errors.js';
import { PROGRAMS, programByName } from './programs.js';

const REPO_ROOT = resolve(fileURLToPath(new URL('../../..', import.meta.url)));

const program = new Command('release')
  .description('Build the release artifacts of this commit (see tools/release/README.md).')
  .exitOverride();
program
  .command('build', { isDefault: true })
  .description('bundle vigil-agent, vigil-cloud and vigil (and the agent .deb) into --out')
  .option('--out <dir>', 'output directory', 'dist/release')
  .option('--only <names>', 'comma-separated subset: vigil-agent,vigil-cloud,vigil')
  .option('--version <semver>', "release version (default: the root package.json's version)")
  .option(
    '--min-upgrade-from <semver>',
    'oldest version that may upgrade to this one (default: package.json vigil.minUpgradeFrom)',
  )
  .option('--no-deb', 'skip the Debian package of the agent')
  .option(
    '--release-root <file>',
    'the signed TUF root the .deb installs as /usr/share/vigil-agent/release-root.json (root/1.root.json of the release keys; env VIGIL_RELEASE_ROOT)',
  )
  .option(
    '--allow-dirty',
    'build from uncommitted changes (marked dirty in every manifest: never publish it)',
    false,
  )
  .action(
    async (opts: {
      out: string;
      only?: string;
      version?: string;
      minUpgradeFrom?: string;
      deb: boolean;
      allowDirty: boolean;
      releaseRoot?: string;
    }) => {
      const info = buildInfo(REPO_ROOT, opts);
      const releaseRootOpt = opts.releaseRoot ?? (process.env.VIGIL_RELEASE_ROOT || undefined);
      const releaseRoot = releaseRootOpt === undefined ? undefined : resolve(releaseRootOpt);
      // Checked before the (slow) bundles: a wrong root file fails the build at once.
      if (releaseRoot !== undefined) readReleaseRoot(releaseRoot);
      const names = opts.only ? opts.only.split(',').map((s) => s.trim()) : PROGRAMS.map((p) => p.name);
      const outDir = resolve(REPO_ROOT, opts.out);
      const artifacts: Artifact[] = [];
      for (const name of names) {
        const spec = programByName(name);
        if (!spec)
          throw new ReleaseError(
            'USAGE',
            `unknown program ${name}: one of ${PROGRAMS.map((p) => p.name).join(', ')}`,
          );
        const started = Date.now();
        const artifact = await buildBundle(REPO_ROOT, spec, info, outDir);
        artifacts.push(artifact);
        console.log(
          `${artifact.file}  ${(artifact.size / 1e6).toFixed(1)} MB  sha256 ${artifact.sha256}  (${Math.round((Date.now() - started) / 1000)} s)`,
        );
        if (name === 'vigil-agent' && opts.deb) {
          const deb = await buildDeb(REPO_ROOT, resolve(outDir, artifact.file), info, outDir, {
            releaseRoot,
          });
          artifacts.push(deb);
          console.log(`${deb.file}  ${(deb.size / 1e6).toFixed(1)} MB  sha256 ${deb.sha256}`);
          console.log(
            releaseRoot === undefined
              ? '  no --release-root: the package ships no release root (each gateway needs /etc/vigil/release-root.json)'
              : `  release root ${releaseRoot} installed as /usr/share/vigil-agent/release-root.json`,
          );
        }
      }
      writeReleaseIndex(outDir, info, artifacts);
      console.log(
        `${info.version} from ${info.commit}${info.dirty ? ' (DIRTY: not for publishing)' : ''}: ${outDir}/release.json`,
      );
    },
  );

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  console.error(`release: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(err instanceof ReleaseError && err.code === 'USAGE' ? 2 : 1);
});
