import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { makeTempDir, snapshot } from './helpers.js';

const pkgDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const tmp = makeTempDir('cli');
afterAll(() => tmp.cleanup());

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI the way `pnpm certs` does: inside the package dir, INIT_CWD = where the user was. */
function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const baseEnv = { ...process.env };
    delete baseEnv.VIGIL_PKI_DIR;
    const child = spawn(
      process.execPath,
      ['--conditions=@vigil/source', '--import', 'tsx', 'src/cli.ts', ...args],
      {
        cwd: pkgDir,
        env: { ...baseEnv, INIT_CWD: tmp.dir, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function lines(out: string, action: string): string[] {
  return out.split('\n').filter((l) => l.startsWith(`${action} `));
}

describe('vigil-certs CLI', () => {
  it('init creates, a second init keeps everything, relative --dir is resolved against INIT_CWD', async () => {
    const first = await cli(['init', '--dir', 'pki-a']);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(lines(first.stdout, 'created')).toHaveLength(5);
    expect(first.stdout).toContain(join(tmp.dir, 'pki-a', 'ca.crt'));
    const before = snapshot(join(tmp.dir, 'pki-a'));

    const second = await cli(['init', '--dir', join(tmp.dir, 'pki-a')]);
    expect(second.code).toBe(0);
    expect(lines(second.stdout, 'created')).toEqual([]);
    expect(lines(second.stdout, 'kept').map((l) => l.split(/\s+/)[1])).toEqual([
      'ca',
      'nats-server',
      'cloud-api',
      'service',
      'device',
    ]);
    expect(second.stdout).toMatch(/0 created, 0 reissued, 5 kept/);
    const after = snapshot(join(tmp.dir, 'pki-a'));
    expect([...after.entries()]).toEqual([...before.entries()]);
  });

  it('device adds one device; show lists CN, SANs and expiry', async () => {
    const dev = await cli(['device', 'acme/cam-7', '--dir', 'pki-a']);
    expect(dev.code).toBe(0);
    expect(lines(dev.stdout, 'created')).toEqual([expect.stringContaining('device acme/cam-7')]);
    expect(lines(dev.stdout, 'kept')).toEqual([]); // only the device line is printed when the rest is kept
    const cert = new X509Certificate(readFileSync(join(tmp.dir, 'pki-a/devices/acme/cam-7.crt')));
    expect(cert.subject).toBe('CN=cam-7');

    const show = await cli(['show', '--dir', 'pki-a']);
    expect(show.code).toBe(0);
    const row = show.stdout.split('\n').find((l) => l.startsWith('devices/acme/cam-7.crt'));
    expect(row).toMatch(
      /cam-7\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+ok\s+URI:spiffe:\/\/vigil\/tenant\/acme\/device\/cam-7/,
    );
    expect(show.stdout).toMatch(/^ca\.crt\s+Vigil Dev CA\s+.*\s+ok\s+CA$/m);
  });

  it('honours VIGIL_PKI_DIR and validates arguments', async () => {
    const env = await cli(['init', '--device', 'a/b', '--service', 'ingest'], { VIGIL_PKI_DIR: 'pki-env' });
    expect(env.code).toBe(0);
    expect(env.stdout).toContain(join(tmp.dir, 'pki-env', 'devices', 'a', 'b.crt'));
    expect(env.stdout).toContain(join(tmp.dir, 'pki-env', 'services', 'ingest.crt'));
    expect(env.stdout).not.toContain('dev-001');

    const bad = await cli(['device', 'no-slash', '--dir', 'pki-env']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/expected <tenant>\/<device>/);
    const badId = await cli(['init', '--dir', 'pki-env', '--device', 'acme/bad id']);
    expect(badId.code).not.toBe(0);
    expect(badId.stderr).toMatch(/"bad id"/);
  });

  it('reports PKI errors with a clear message and a non-zero exit', async () => {
    const { rmSync } = await import('node:fs');
    rmSync(join(tmp.dir, 'pki-env', 'ca.key'));
    const r = await cli(['init', '--dir', 'pki-env']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ca\.key is missing.*\[CA_KEY_MISSING\]/s);
  });

  it('two concurrent inits on a fresh directory end with one CA that issued every cert', async () => {
    const [a, b] = await Promise.all([
      cli(['init', '--dir', 'pki-race']),
      cli(['init', '--dir', 'pki-race']),
    ]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    expect(lines(a.stdout, 'created').length + lines(b.stdout, 'created').length).toBe(5);
    const dir = join(tmp.dir, 'pki-race');
    const ca = new X509Certificate(readFileSync(join(dir, 'ca.crt')));
    for (const f of ['nats-server.crt', 'cloud-api.crt', 'services/cloud.crt', 'devices/dev/dev-001.crt']) {
      expect(new X509Certificate(readFileSync(join(dir, f))).verify(ca.publicKey), f).toBe(true);
    }
    expect([...snapshot(dir).keys()].some((k) => k.endsWith('.tmp') || k === '.lock')).toBe(false);
  });
});
