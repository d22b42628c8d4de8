import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/**
 * Installs a .deb into `root` with `dpkg --root`, maintainer scripts run chrootless (they honour DPKG_ROOT),
 * never into this machine: an empty dpkg database and a passwd/group holding only root are made first. How the
 * package tests stand in for a gateway. Dependencies are not installed (`--force-depends`): the host has them.
 */
export async function dpkgInstallInto(
  root: string,
  deb: string,
  opts: { unsafeIo?: boolean } = {},
): Promise<void> {
  for (const d of ['var/lib/dpkg/info', 'var/lib/dpkg/updates', 'var/lib/dpkg/triggers', 'etc'])
    mkdirSync(join(root, d), { recursive: true });
  const seed = (file: string, text: string): void => {
    try {
      writeFileSync(join(root, file), text, { flag: 'wx' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  };
  seed('var/lib/dpkg/status', '');
  seed('var/lib/dpkg/available', '');
  seed('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\n');
  seed('etc/group', 'root:x:0:\n');
  await exec(
    'dpkg',
    [
      `--root=${root}`,
      `--log=${join(root, 'dpkg.log')}`,
      '--force-script-chrootless',
      '--force-depends',
      // No fsync per file: a throwaway root (the agent package is ~250 MB in ~1,000 files).
      ...(opts.unsafeIo ? ['--force-unsafe-io'] : []),
      '--install',
      deb,
    ],
    { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, maxBuffer: 16 * 1024 * 1024 },
  );
}

/** uid, gid and home of `user` in `<root>/etc/passwd` (what the package's sysusers.d entry made). */
export function userInRoot(root: string, user: string): { uid: number; gid: number; home: string } {
  const line = readFileSync(join(root, 'etc', 'passwd'), 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${user}:`));
  if (!line) throw new Error(`no user ${user} in ${root}/etc/passwd`);
  const [, , uid, gid, , home] = line.split(':');
  return { uid: Number(uid), gid: Number(gid), home: home ?? '/' };
}
