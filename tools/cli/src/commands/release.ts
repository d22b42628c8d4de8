import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { Metadata, MetadataKind, TargetFile, Targets, type Snapshot, type Timestamp } from '@tufjs/models';
import { bundlePublishRefusal, tufSignWith, TUF_SPEC_VERSION } from '@vigil/cloud';
import { bundleName, CHANNEL_RE, compareSemver, SEMVER_RE } from '@vigil/proto';
import { InvalidArgumentError, type Command } from 'commander';
import { ApiError, type ApiClient } from '../adapters/api.js';
import { KEY_FILES, readKey, readRoot, rootVersions } from '../adapters/release-keys.js';
import { CliError } from '../errors.js';
import { apiClient, globals, int, withAuth, type AuthOptions, type CliContext } from './common.js';
import { expiresIn, registerReleaseRoot } from './release-root.js';

const semver =
  (what: string) =>
  (value: string): string => {
    if (!SEMVER_RE.test(value))
      throw new InvalidArgumentError(`${what} must be a semantic version such as 1.4.0`);
    return value;
  };
const channel = (value: string): string => {
  if (!CHANNEL_RE.test(value)) throw new InvalidArgumentError('expected lowercase letters, digits or "-"');
  return value;
};

interface PublishOptions extends AuthOptions {
  agentVersion: string;
  channel: string;
  minVersion: string;
  keysDir: string;
  expiresDays: number;
}

/** The cloud's current targets metadata (through timestamp and snapshot), or undefined before the first release. */
async function currentTargets(client: ApiClient): Promise<Metadata<Targets> | undefined> {
  const get = async (file: string): Promise<unknown> =>
    JSON.parse((await client.download(`/v1/releases/repository/metadata/${file}`)).bytes.toString('utf8'));
  let ts: Metadata<Timestamp>;
  try {
    ts = Metadata.fromJSON(MetadataKind.Timestamp, (await get('timestamp.json')) as never);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return undefined;
    throw err;
  }
  const snap: Metadata<Snapshot> = Metadata.fromJSON(
    MetadataKind.Snapshot,
    (await get(`${ts.signed.snapshotMeta.version}.snapshot.json`)) as never,
  );
  const version = snap.signed.meta['targets.json']?.version;
  if (version === undefined) return undefined;
  return Metadata.fromJSON(MetadataKind.Targets, (await get(`${version}.targets.json`)) as never);
}

function signedByOurTargetsKey(keysDir: string, targets: Metadata<Targets>): boolean {
  return rootVersions(keysDir).some((v) => {
    try {
      readRoot(keysDir, v).verifyDelegate('targets', targets);
      return true;
    } catch {
      return false;
    }
  });
}

/** `vigil release`: sign and publish agent release bundles (The Update Framework). */
export function register(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  const release = program
    .command('release')
    .description('agent releases: the offline root of trust, and signing and publishing bundles (TUF)');
  registerReleaseRoot(release, ctx);

  withAuth(
    release
      .command('publish')
      .description(
        'sign a bundle with the targets key and upload it (PUT /v1/releases/bundles, /metadata/targets)',
      )
      .argument('<bundle>', 'the release bundle, vigil-agent-<version>-linux-x64.tar.gz')
      // Not --version: that is the program's own flag (commander reads it anywhere on the command line).
      .requiredOption(
        '--agent-version <semver>',
        'the agent version in the bundle',
        semver('--agent-version'),
      )
      .requiredOption('--channel <name>', 'release channel devices follow (e.g. stable, beta)', channel)
      .requiredOption(
        '--min-version <semver>',
        'the oldest installed version that may upgrade to this one directly',
        semver('--min-version'),
      )
      .requiredOption(
        '--keys-dir <dir>',
        'the keys directory `vigil release root init` created (targets.key.json)',
      )
      .option(
        '--expires-days <n>',
        'targets metadata lifetime in days (publish again before it ends)',
        int(1, 730),
        365,
      )
      .addHelpText(
        'after',
        '\nExample:\n  pnpm vigil release publish dist/vigil-agent-1.4.0-linux-x64.tar.gz --agent-version 1.4.0 \\\n' +
          '    --channel stable --min-version 1.0.0 --keys-dir /media/vigil-keys --tenant vigil',
      ),
    'admin',
    'releases:publish',
  ).action(async (bundle: string, o: PublishOptions, cmd: Command) => {
    const g = globals(cmd);
    const name = basename(bundle);
    if (name !== bundleName(o.agentVersion))
      throw new CliError(
        `${name}: a bundle of version ${o.agentVersion} must be named ${bundleName(o.agentVersion)}`,
        2,
      );
    if (compareSemver(o.minVersion, o.agentVersion) > 0)
      throw new CliError(`--min-version ${o.minVersion} is newer than --agent-version ${o.agentVersion}`, 2);
    let bytes: Buffer;
    try {
      bytes = readFileSync(bundle);
    } catch (err) {
      throw new CliError(`cannot read ${bundle}: ${(err as Error).message}`, 2);
    }
    // Before anything is signed or sent (the cloud refuses it too, and counts it): a dirty build never ships.
    const refusal = await bundlePublishRefusal(bundle);
    if (refusal) throw new CliError(`${name} is refused: ${refusal.message}`);
    const key = readKey(o.keysDir, KEY_FILES.targets);
    const client = await apiClient(ctx, g, o);
    const current = await currentTargets(client);
    // What the cloud holds must be ours (signed by a targets key one of our roots lists: the previous one right
    // after a rotation) before it is signed again with a new entry.
    if (current && !signedByOurTargetsKey(o.keysDir, current))
      throw new CliError(
        'the targets metadata on the cloud is not signed by any targets key of this keys directory: wrong ' +
          '--keys-dir, or someone else publishes to this cloud',
      );
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const existing = current?.signed.targets[name];
    if (existing && existing.hashes.sha256 !== sha256)
      throw new CliError(
        `${name} is already published with other bytes: versions are immutable, publish a new one`,
      );
    const targets = new Targets({
      version: (current?.signed.version ?? 0) + 1,
      specVersion: TUF_SPEC_VERSION,
      expires: expiresIn(ctx.now?.() ?? new Date(), o.expiresDays),
      targets: { ...(current?.signed.targets ?? {}) },
    });
    targets.addTarget(
      new TargetFile({
        path: name,
        length: bytes.length,
        hashes: { sha256 },
        unrecognizedFields: {
          custom: { version: o.agentVersion, channel: o.channel, minVersion: o.minVersion },
        },
      }),
    );
    const md = new Metadata(targets);
    tufSignWith(md, key);
    await client.upload(`/v1/releases/bundles/${sha256}`, bytes);
    const { version } = await client.call<{ version: number }>(
      'PUT',
      '/v1/releases/metadata/targets',
      md.toJSON(),
    );
    const result = {
      name,
      version: o.agentVersion,
      channel: o.channel,
      min_version: o.minVersion,
      sha256,
      targets_version: version,
    };
    io.out(
      g.json
        ? JSON.stringify(result)
        : `published ${name} (${bytes.length} bytes, sha256 ${sha256.slice(0, 12)}) on channel ${o.channel}; targets version ${version}`,
    );
  });
}
