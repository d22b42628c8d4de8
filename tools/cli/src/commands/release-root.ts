import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Metadata, Root } from '@tufjs/models';
import { generateTufKey, tufPublicKeyOf, tufSignWith, TUF_SPEC_VERSION } from '@vigil/cloud';
import type { Command } from 'commander';
import { ApiError } from '../adapters/api.js';
import {
  KEY_FILES,
  latestRoot,
  readKey,
  readRoot,
  refuseInsideRepository,
  retireKey,
  rootVersions,
  writeKey,
  writeRoot,
} from '../adapters/release-keys.js';
import { CliError } from '../errors.js';
import { apiClient, globals, int, withAuth, type AuthOptions, type CliContext } from './common.js';

const DAY = 86_400_000;

/** TUF expiry: whole seconds, UTC. */
export const expiresIn = (now: Date, days: number): string =>
  new Date(Math.floor(now.getTime() / 1000) * 1000 + days * DAY).toISOString().replace('.000Z', 'Z');

const OFFLINE_WARNING =
  'WARNING: %DIR% now holds the release ROOT and TARGETS private keys. Whoever holds them can ship code to every ' +
  'gateway. Keep the directory offline (encrypted removable storage, in a safe), make a second copy, never ' +
  'commit or upload it.';

interface RootOptions {
  keysDir: string;
  expiresDays: number;
}

/** `vigil release root init|rotate|push`: the offline root of trust of agent releases. */
export function registerReleaseRoot(release: Command, ctx: CliContext): void {
  const { io } = ctx;
  const now = (): Date => ctx.now?.() ?? new Date();
  const root = release
    .command('root')
    .description('the offline TUF root key of agent releases (init, rotate, push to the cloud)');

  root
    .command('init')
    .description('create the root, targets and online keys and the first root metadata (offline)')
    .requiredOption(
      '--keys-dir <dir>',
      'new directory for the keys (offline storage; refused inside a git tree)',
    )
    .option('--expires-days <n>', 'root metadata lifetime in days (rotate before it ends)', int(1, 3650), 365)
    .action((o: RootOptions) => {
      refuseInsideRepository(o.keysDir);
      mkdirSync(o.keysDir, { recursive: true, mode: 0o700 });
      if (rootVersions(o.keysDir).length > 0)
        throw new CliError(`${o.keysDir} already holds a root: use \`vigil release root rotate\``);
      const keys = { root: generateTufKey(), targets: generateTufKey(), online: generateTufKey() };
      const signed = new Root({
        version: 1,
        specVersion: TUF_SPEC_VERSION,
        expires: expiresIn(now(), o.expiresDays),
        consistentSnapshot: true,
      });
      signed.addKey(tufPublicKeyOf(keys.root), 'root');
      signed.addKey(tufPublicKeyOf(keys.targets), 'targets');
      signed.addKey(tufPublicKeyOf(keys.online), 'snapshot');
      signed.addKey(tufPublicKeyOf(keys.online), 'timestamp');
      const md = new Metadata(signed);
      tufSignWith(md, keys.root);
      for (const [role, key] of Object.entries(keys))
        writeKey(o.keysDir, KEY_FILES[role as keyof typeof KEY_FILES], key);
      const path = writeRoot(o.keysDir, md);
      io.out(`root version 1 written to ${path} (expires ${signed.expires})`);
      io.err(OFFLINE_WARNING.replace('%DIR%', o.keysDir));
      io.err(
        `Next: install ${join(o.keysDir, KEY_FILES.online)} on the cloud as releases.onlineKeyFile and delete it ` +
          `here, then \`vigil release root push --keys-dir ${o.keysDir}\`.`,
      );
    });

  root
    .command('rotate')
    .description(
      'replace the root key (and optionally the targets or online key): root N+1 signed by the old and new root keys',
    )
    .requiredOption('--keys-dir <dir>', 'the keys directory `root init` created')
    .option('--targets', 'also replace the targets key', false)
    .option(
      '--online',
      'also replace the online key (install the new online.key.json on the cloud first)',
      false,
    )
    .option('--expires-days <n>', 'root metadata lifetime in days', int(1, 3650), 365)
    .action((o: RootOptions & { targets: boolean; online: boolean }) => {
      refuseInsideRepository(o.keysDir);
      const current = latestRoot(o.keysDir);
      const oldRootKey = readKey(o.keysDir, KEY_FILES.root);
      if (!current.signed.roles.root?.keyIDs.includes(oldRootKey.keyid))
        throw new CliError(`${KEY_FILES.root} is not the key of root version ${current.signed.version}`);
      const newRootKey = generateTufKey();
      const targetsKey = o.targets ? generateTufKey() : readKey(o.keysDir, KEY_FILES.targets);
      const onlineIds = current.signed.roles.timestamp?.keyIDs ?? [];
      const onlineKey = o.online ? generateTufKey() : undefined;
      const signed = new Root({
        version: current.signed.version + 1,
        specVersion: TUF_SPEC_VERSION,
        expires: expiresIn(now(), o.expiresDays),
        consistentSnapshot: true,
      });
      signed.addKey(tufPublicKeyOf(newRootKey), 'root');
      signed.addKey(tufPublicKeyOf(targetsKey), 'targets');
      if (onlineKey) {
        signed.addKey(tufPublicKeyOf(onlineKey), 'snapshot');
        signed.addKey(tufPublicKeyOf(onlineKey), 'timestamp');
      } else
        for (const id of onlineIds) {
          const key = current.signed.keys[id];
          if (!key) throw new CliError(`root version ${current.signed.version} lists no key ${id}`);
          signed.addKey(key, 'snapshot');
          signed.addKey(key, 'timestamp');
        }
      const md = new Metadata(signed);
      // Devices accept root N+1 only when root N's keys and N+1's own keys signed it (TUF 5.3.4).
      tufSignWith(md, oldRootKey);
      tufSignWith(md, newRootKey);
      const path = writeRoot(o.keysDir, md);
      retireKey(o.keysDir, KEY_FILES.root, oldRootKey);
      writeKey(o.keysDir, KEY_FILES.root, newRootKey);
      if (o.targets) {
        retireKey(o.keysDir, KEY_FILES.targets, readKey(o.keysDir, KEY_FILES.targets));
        writeKey(o.keysDir, KEY_FILES.targets, targetsKey);
      }
      if (onlineKey) writeKey(o.keysDir, KEY_FILES.online, onlineKey);
      io.out(`root version ${signed.version} written to ${path} (expires ${signed.expires})`);
      io.err(
        `The old root key is in ${join(o.keysDir, 'retired')}. ${OFFLINE_WARNING.replace('%DIR%', o.keysDir)}`,
      );
      io.err(
        (onlineKey
          ? `Install the new ${join(o.keysDir, KEY_FILES.online)} on the cloud (releases.onlineKeyFile) first, then `
          : 'Next: ') +
          `\`vigil release root push --keys-dir ${o.keysDir}\`` +
          (o.targets
            ? ', and publish again: the targets metadata must be signed by the new targets key.'
            : '.'),
      );
    });

  withAuth(
    root
      .command('push')
      .description('upload the root versions the cloud does not have yet (PUT /v1/releases/metadata/root)')
      .requiredOption('--keys-dir <dir>', 'the keys directory (only its root/ metadata is read)'),
    'admin',
    'releases:publish',
  ).action(async (o: AuthOptions & { keysDir: string }, cmd: Command) => {
    const g = globals(cmd);
    const client = await apiClient(ctx, g, o);
    let pushed = 0;
    for (const version of rootVersions(o.keysDir)) {
      const there = await client
        .download(`/v1/releases/repository/metadata/${version}.root.json`)
        .then(() => true)
        .catch((err: unknown) => {
          if (err instanceof ApiError && err.status === 404) return false;
          throw err;
        });
      if (there) continue;
      await client.call('PUT', '/v1/releases/metadata/root', readRoot(o.keysDir, version).toJSON());
      io.out(`root version ${version} pushed`);
      pushed++;
    }
    if (pushed === 0) io.err('the cloud already has every root version');
  });
}
