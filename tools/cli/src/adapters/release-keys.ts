import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Metadata, MetadataKind, type Root } from '@tufjs/models';
import { parseTufKeyFile, type TufKeyFile } from '@vigil/cloud';
import { CliError } from '../errors.js';

/*
 * The release keys directory, kept OFFLINE by the operator (an encrypted removable disk, not a server):
 *   root.key.json     the root key: signs root metadata only (init, rotate)
 *   targets.key.json  signs targets metadata (publish)
 *   online.key.json   the cloud's key for timestamp and snapshot: install it as releases.onlineKeyFile, then
 *                     delete it here
 *   root/<N>.root.json  every signed root version (what `root push` uploads)
 *   retired/          root keys replaced by `root rotate` (keep them until every device trusts the new root)
 */

export const KEY_FILES = {
  root: 'root.key.json',
  targets: 'targets.key.json',
  online: 'online.key.json',
} as const;

/** Refuses a keys directory inside a git work tree: release keys must never be committed. */
export function refuseInsideRepository(dir: string): void {
  let d = resolve(dir);
  for (;;) {
    if (existsSync(join(d, '.git')))
      throw new CliError(
        `${dir} is inside the git work tree ${d}: release keys must never be committed. Use a directory on ` +
          'offline storage (e.g. /media/vigil-keys)',
      );
    const up = dirname(d);
    if (up === d) return;
    d = up;
  }
}

export function writeKey(dir: string, name: string, key: TufKeyFile): void {
  const path = join(dir, name);
  writeFileSync(path, `${JSON.stringify(key, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  chmodSync(path, 0o600);
}

export function readKey(dir: string, name: string): TufKeyFile {
  const path = join(dir, name);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new CliError(
      `${path} not found: pass the keys directory \`vigil release root init\` created (--keys-dir)`,
    );
  }
  return parseTufKeyFile(text, path);
}

export function retireKey(dir: string, name: string, key: TufKeyFile): void {
  mkdirSync(join(dir, 'retired'), { recursive: true, mode: 0o700 });
  renameSync(join(dir, name), join(dir, 'retired', `${key.keyid.slice(0, 16)}.${name}`));
}

/** Versions of the signed roots in the keys directory, ascending. */
export function rootVersions(dir: string): number[] {
  const names = existsSync(join(dir, 'root')) ? readdirSync(join(dir, 'root')) : [];
  return names
    .map((n) => /^([1-9]\d*)\.root\.json$/.exec(n)?.[1])
    .filter((v): v is string => v !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
}

export function readRoot(dir: string, version: number): Metadata<Root> {
  const path = join(dir, 'root', `${version}.root.json`);
  return Metadata.fromJSON(MetadataKind.Root, JSON.parse(readFileSync(path, 'utf8')) as never);
}

export function latestRoot(dir: string): Metadata<Root> {
  const v = rootVersions(dir).at(-1);
  if (v === undefined)
    throw new CliError(`${dir}/root holds no root metadata: run \`vigil release root init\``);
  return readRoot(dir, v);
}

export function writeRoot(dir: string, root: Metadata<Root>): string {
  mkdirSync(join(dir, 'root'), { recursive: true, mode: 0o700 });
  const path = join(dir, 'root', `${root.signed.version}.root.json`);
  writeFileSync(path, `${JSON.stringify(root.toJSON(), null, 2)}\n`, { mode: 0o644, flag: 'wx' });
  return path;
}
