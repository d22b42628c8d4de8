// The package ships the release root it was built with (issue 14: no hand-installed trust anchor). Fast: a
// tiny bundle in format 1 (not the real agent: what is checked here is the package around it), the real
// dpkg-deb, and dpkg installing into a directory (--root, maintainer scripts chrootless), never into this machine.
import { execFile } from 'node:child_process';
import { generateKeyPairSync, type JsonWebKey } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { dpkgInstallInto, repoRoot } from '@vigil/testkit';
import {
  buildDeb,
  describeFiles,
  packStaged,
  PACKAGED_ROOT_PATH,
  readReleaseRoot,
  walkStaged,
  type BuildInfo,
} from '../src/index.js';

const exec = promisify(execFile);
const ROOT = repoRoot();
const work = mkdtempSync(join(tmpdir(), 'vigil-deb-root-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const info: BuildInfo = {
  version: '1.0.0',
  minUpgradeFrom: '0.1.0',
  commit: 'test',
  commitTime: 1_700_000_000,
  dirty: false,
};
/** Signed TUF root metadata as `vigil release root init` writes it (shape only; dpkg does not verify it). */
const rootJson = JSON.stringify({
  signed: {
    _type: 'root',
    spec_version: '1.0.31',
    version: 1,
    expires: '2030-01-01T00:00:00Z',
    keys: { ab12: { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: 'cafe' } } },
    roles: { root: { keyids: ['ab12'], threshold: 1 } },
    consistent_snapshot: true,
  },
  signatures: [{ keyid: 'ab12', sig: 'beef' }],
});

async function tinyBundle(): Promise<string> {
  const stage = join(work, 'stage');
  mkdirSync(join(stage, 'bin'), { recursive: true });
  for (const cmd of ['vigil-agent', 'vigil-updater']) {
    writeFileSync(join(stage, 'bin', cmd), `#!/bin/sh\necho "${cmd} 1.0.0 (test)"\n`);
    chmodSync(join(stage, 'bin', cmd), 0o755);
  }
  const files = walkStaged(stage).files;
  writeFileSync(
    join(stage, 'manifest.json'),
    JSON.stringify({ format: 1, name: 'vigil-agent', version: '1.0.0', files: describeFiles(stage, files) }),
  );
  const bundle = join(work, 'vigil-agent-1.0.0-linux-x64.tar.gz');
  await packStaged(stage, info, bundle);
  return bundle;
}

describe('the release root in the agent package', () => {
  it('refuses a file that is not signed root metadata, or that holds a private key, naming the problem', () => {
    const f = (name: string, text: string): string => {
      writeFileSync(join(work, name), text);
      return join(work, name);
    };
    expect(readReleaseRoot(f('root.json', rootJson)).toString()).toBe(rootJson);
    expect(() => readReleaseRoot(join(work, 'absent.json'))).toThrow(/cannot read the release root/);
    expect(() => readReleaseRoot(f('text.json', 'not json'))).toThrow(/not JSON/);
    expect(() =>
      readReleaseRoot(f('targets.json', JSON.stringify({ signed: { _type: 'targets' }, signatures: [{}] }))),
    ).toThrow(/not signed TUF root metadata/);
    expect(() =>
      readReleaseRoot(f('unsigned.json', JSON.stringify({ ...JSON.parse(rootJson), signatures: [] }))),
    ).toThrow(/not signed TUF root metadata/);
    // A key file given by mistake (the release keys' JSON, a PEM, a JWK): never shipped. Throwaway keys made
    // here, so that no key material is kept in the repository.
    const k = throwawayKey();
    for (const [name, text] of [
      ['key.json', k.tufJson],
      ['key.pem', k.pem],
      ['jwk.json', JSON.stringify(k.jwk)],
    ] as const)
      expect(() => readReleaseRoot(f(name, text)), name).toThrow(/private key material/);
  });

  it('the release build refuses a key file as --release-root at once, before building anything', async () => {
    writeFileSync(join(work, 'root.key.json'), throwawayKey().tufJson);
    const out = join(work, 'refused-out');
    const res = await exec(
      process.execPath,
      [
        '--conditions=@vigil/source',
        '--import',
        'tsx',
        'tools/release/src/main.ts',
        'build',
        '--allow-dirty',
        '--only',
        'vigil-agent',
        '--out',
        out,
        '--release-root',
        join(work, 'root.key.json'),
      ],
      { cwd: ROOT, timeout: 60_000 },
    ).catch((e: { code: number; stderr: string }) => e);
    expect('code' in res ? res.code : 0).toBe(1);
    expect('stderr' in res ? res.stderr : '').toMatch(/private key material/);
    expect(existsSync(out)).toBe(false);
  }, 90_000);

  it('installs the root given at build time at /usr/share/vigil-agent/release-root.json, which updater.json names after the administrator file', async () => {
    const bundle = await tinyBundle();
    writeFileSync(join(work, '1.root.json'), rootJson);
    const withRoot = await buildDeb(ROOT, bundle, info, join(work, 'with'), {
      releaseRoot: join(work, '1.root.json'),
    });
    const without = await buildDeb(ROOT, bundle, info, join(work, 'without'));
    const contents = async (deb: string): Promise<string> =>
      (await exec('dpkg-deb', ['--contents', deb])).stdout;
    expect(await contents(join(work, 'without', without.file))).not.toMatch(/release-root\.json/);
    const listing = await contents(join(work, 'with', withRoot.file));
    expect(listing).toMatch(new RegExp(`-rw-r--r-- root/root .* \\./${PACKAGED_ROOT_PATH}\\n`));
    // Not a conffile: the package's anchor moves with the package; the administrator's is /etc/vigil's.
    expect((await exec('dpkg-deb', ['--info', join(work, 'with', withRoot.file), 'conffiles'])).stdout).toBe(
      '/etc/vigil/agent.json\n/etc/vigil/updater.json\n',
    );

    // dpkg --root: the files land, the maintainer scripts run, nothing touches this machine.
    const T = join(work, 'root');
    await dpkgInstallInto(T, join(work, 'with', withRoot.file));
    expect(readFileSync(join(T, PACKAGED_ROOT_PATH), 'utf8')).toBe(rootJson);
    const updater = JSON.parse(readFileSync(join(T, 'etc/vigil/updater.json'), 'utf8')) as {
      repository: { trustedRootFile: string; packagedRootFile: string };
    };
    expect(updater.repository).toMatchObject({
      trustedRootFile: '/etc/vigil/release-root.json',
      packagedRootFile: `/${PACKAGED_ROOT_PATH}`,
    });
    expect(existsSync(join(T, 'etc/vigil/release-root.json'))).toBe(false);
    expect(existsSync('/var/lib/dpkg/info/vigil-agent.list')).toBe(false);
  }, 120_000);
});

/** A fresh Ed25519 key in the three shapes a release key file can have (TUF keys JSON, PKCS#8 PEM, JWK). */
function throwawayKey(): { tufJson: string; pem: string; jwk: JsonWebKey } {
  const { privateKey } = generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' });
  const hex = (b64url: string | undefined): string => Buffer.from(b64url ?? '', 'base64url').toString('hex');
  return {
    tufJson: JSON.stringify({ keytype: 'ed25519', keyval: { public: hex(jwk.x), private: hex(jwk.d) } }),
    pem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    jwk,
  };
}
