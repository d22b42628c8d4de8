import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  asset,
  capSchemaFile,
  freePort,
  natsConfig,
  printLogsOnFailure,
  registry,
  repoRoot,
  spawnCloud,
  useDatabase,
  useNats,
  usePki,
  type CloudProcess,
} from '@vigil/testkit';

// Real tools only: esbuild, tar, gzip, dpkg-deb, lintian, systemd-analyze, and dpkg itself, which installs into
// a directory (--root, maintainer scripts run chrootless with DPKG_ROOT), never into this machine.
// The agent is built three times (1.0.0 twice, for the byte comparison; 1.1.0 for the upgrade), once per run.

const exec = promisify(execFile);
const ROOT = repoRoot();
const work = mkdtempSync(join(tmpdir(), 'vigil-release-test-'));
const A = join(work, 'a');
const B = join(work, 'b');
const C = join(work, 'c');
const BUILD_TIMEOUT = 15 * 60_000;

interface ReleaseIndex {
  version: string;
  commit: string;
  commitTime: string;
  artifacts: { name: string; file: string; sha256: string; size: number }[];
}

async function release(args: string[]): Promise<void> {
  await exec(
    process.execPath,
    [
      '--conditions=@vigil/source',
      '--import',
      'tsx',
      'tools/release/src/main.ts',
      'build',
      '--allow-dirty',
      ...args,
    ],
    { cwd: ROOT, maxBuffer: 16 * 1024 * 1024, timeout: BUILD_TIMEOUT },
  );
}

const index = (dir: string): ReleaseIndex =>
  JSON.parse(readFileSync(join(dir, 'release.json'), 'utf8')) as ReleaseIndex;
const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');
// Launchers run with a clean NODE_OPTIONS: nothing of vitest's or tsx's may leak into "runs without tsx".
const cleanEnv = (): NodeJS.ProcessEnv => ({
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  HOME: work,
  LANG: 'C.UTF-8',
});

async function unpack(tarGz: string, into: string): Promise<string> {
  mkdirSync(into, { recursive: true });
  await exec('tar', ['-xzf', tarGz, '-C', into]);
  return into;
}

beforeAll(async () => {
  await release(['--version', '1.0.0', '--out', A]);
  await release(['--version', '1.0.0', '--out', B]);
  await release(['--version', '1.1.0', '--only', 'vigil-agent', '--out', C]);
}, 3 * BUILD_TIMEOUT);

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('release bundles', () => {
  it('the same commit builds to the same bytes (every bundle, the .deb and the index)', () => {
    const a = index(A);
    expect(a.artifacts.map((x) => x.file).sort()).toEqual([
      'vigil-1.0.0-linux-x64.tar.gz',
      'vigil-agent-1.0.0-linux-x64.tar.gz',
      'vigil-agent_1.0.0_amd64.deb',
      'vigil-cloud-1.0.0-linux-x64.tar.gz',
    ]);
    for (const artifact of a.artifacts) {
      expect(sha256(join(A, artifact.file)), artifact.file).toBe(artifact.sha256);
      expect(sha256(join(B, artifact.file)), artifact.file).toBe(artifact.sha256);
    }
    expect(readFileSync(join(B, 'release.json'), 'utf8')).toBe(readFileSync(join(A, 'release.json'), 'utf8'));
    expect(readFileSync(join(A, 'SHA256SUMS'), 'utf8')).toContain(`  vigil-agent_1.0.0_amd64.deb\n`);
  });

  it('a bundle is manifest.json first, then root-owned entries at the commit time, every digest right', async () => {
    const tarGz = join(A, 'vigil-agent-1.0.0-linux-x64.tar.gz');
    const { stdout } = await exec('tar', ['--full-time', '--numeric-owner', '-tvzf', tarGz], {
      maxBuffer: 64 * 1024 * 1024,
    });
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toMatch(/ manifest\.json$/);
    const commitTime = index(A).commitTime.replace('T', ' ').replace('.000Z', '');
    for (const line of lines) {
      expect(line, line).toMatch(/^[-d]rw[-x]r-[-x]r-[-x] 0\/0 /); // no links, no odd modes, uid/gid 0
    }
    const dir = await unpack(tarGz, join(work, 'digests'));
    const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as {
      name: string;
      version: string;
      minUpgradeFrom: string;
      commit: string;
      node: { version: string; abi: string; bundled: boolean };
      files: { path: string; size: number; sha256: string; mode: string }[];
    };
    expect(manifest).toMatchObject({
      name: 'vigil-agent',
      version: '1.0.0',
      minUpgradeFrom: '0.1.0',
      commit: index(A).commit,
      node: { version: process.versions.node, abi: process.versions.modules, bundled: true },
    });
    const tarFiles = lines.filter((l) => l.startsWith('-')).map((l) => l.split(' ').pop()!);
    expect(manifest.files.map((f) => f.path).sort()).toEqual(
      tarFiles.filter((f) => f !== 'manifest.json').sort(),
    );
    for (const f of manifest.files) expect(sha256(join(dir, f.path)), f.path).toBe(f.sha256);
    // The commit time (local time zone of `tar -tv`), same on every entry.
    const times = new Set(lines.map((l) => l.split(/\s+/).slice(3, 5).join(' ')));
    expect(times.size).toBe(1);
    expect(commitTime).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    // Compiled JavaScript and the production addons only: no TypeScript, no tsx, no dev tools.
    expect(existsSync(join(dir, 'node_modules', 'tsx'))).toBe(false);
    expect(existsSync(join(dir, 'node_modules', 'typescript'))).toBe(false);
    expect(readdirSync(join(dir, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6'))).toEqual(['linux']);
    expect(manifest.files.some((f) => f.path.endsWith('.ts'))).toBe(false);
  }, 120_000);

  it('each program runs from its bundle: --version names the release and the commit', async () => {
    const commit = index(A).commit;
    for (const name of ['vigil-agent', 'vigil-cloud', 'vigil']) {
      const dir = await unpack(join(A, `${name}-1.0.0-linux-x64.tar.gz`), join(work, 'run', name));
      const { stdout } = await exec(join(dir, 'bin', name), ['--version'], { env: cleanEnv() });
      expect(stdout.trim()).toBe(`${name} 1.0.0 (${commit})`);
    }
    const cloud = join(work, 'run', 'vigil-cloud', 'bin', 'vigil-cloud');
    expect((await exec(cloud, ['--help'], { env: cleanEnv() })).stdout).toContain(
      'Usage: vigil-cloud --config',
    );
    // A bad config is refused with the documented exit code, so the bundle reached the config loader.
    const bad = join(work, 'bad-cloud.json');
    writeFileSync(bad, '{"nope": 1}');
    const refused = await exec(cloud, ['--config', bad], { env: cleanEnv() }).catch(
      (e: { code: number }) => e,
    );
    expect(refused).toMatchObject({ code: 78 });
  }, 180_000);

  // Files the cloud reads relative to its own module (`new URL('...', import.meta.url)`) must sit at the same
  // place relative to the bundled lib/vigil-cloud/main.mjs, or the shipped cloud fails where the source does not.
  // The unpacked vigil-cloud bundle (each test that needs it may run alone: -t).
  const cloudBundle = async (): Promise<string> => {
    const dir = join(work, 'run', 'vigil-cloud');
    if (!existsSync(join(dir, 'bin', 'vigil-cloud')))
      await unpack(join(A, 'vigil-cloud-1.0.0-linux-x64.tar.gz'), dir);
    return dir;
  };

  it('every file the cloud source reads relative to its module is in the bundle', async () => {
    const lib = join(await cloudBundle(), 'lib', 'vigil-cloud');
    const found: string[] = [];
    const walk = (dir: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        if (e.isDirectory()) walk(join(dir, e.name));
        else if (e.name.endsWith('.ts')) {
          const text = readFileSync(join(dir, e.name), 'utf8');
          for (const m of text.matchAll(/new URL\(\s*[`'"](\.{1,2}\/[^`'"$]*)/g)) found.push(m[1]!);
        }
      }
    };
    walk(join(ROOT, 'cloud', 'src'));
    // cedar's policies, the console's static files, the EIDO schema (at least these three today).
    expect(found.length).toBeGreaterThanOrEqual(3);
    for (const rel of found) expect(existsSync(join(lib, rel)), rel).toBe(true);
  });

  describe('the bundled cloud', () => {
    const pki = usePki({ services: ['cloud'] });
    const nats = useNats({
      config: (ctx) =>
        natsConfig({
          tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
        })(ctx),
    });
    const dbUrl = useDatabase();
    let cloud: CloudProcess | undefined;
    printLogsOnFailure('bundled cloud', () => cloud?.output() ?? '');
    afterAll(async () => cloud?.stop());

    it('starts with every role on real PostgreSQL and NATS: console assets, alert delivery, API', async () => {
      const keys = join(work, 'cloud-keys');
      mkdirSync(keys, { recursive: true, mode: 0o700 });
      const ecJwk = (): Record<string, unknown> => ({
        ...(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({
          format: 'jwk',
        }) as Record<string, unknown>),
        alg: 'ES256',
        use: 'sig',
      });
      const api = ecJwk();
      const { d: _d, ...apiPublic } = api;
      writeFileSync(join(keys, 'jwks.json'), JSON.stringify({ keys: [{ ...apiPublic, kid: 'api' }] }));
      writeFileSync(join(keys, 'config.jwk.json'), JSON.stringify({ ...ecJwk(), kid: 'cfg' }), {
        mode: 0o600,
      });
      // The CAP schema is a shared standard beside the project (../shared), like the assets.
      const cap = existsSync(capSchemaFile()) ? capSchemaFile() : undefined;
      if (!cap) console.warn(`${capSchemaFile()} not found: the bundled cloud runs without alert delivery`);
      const c = pki().services.cloud!;
      const port = await freePort();
      cloud = spawnCloud(
        work,
        {
          http: { host: '127.0.0.1', port },
          database: { url: dbUrl() },
          nats: {
            servers: [`tls://localhost:${nats().port}`],
            tls: { caFile: pki().caCert, certFile: c.cert, keyFile: c.key },
          },
          auth: { issuer: 'release-test', audience: 'release-test', jwksFile: join(keys, 'jwks.json') },
          configSigning: { privateJwkFile: join(keys, 'config.jwk.json') },
          // The console with the loopback development login (no identity provider in this test).
          console: {
            enabled: true,
            cookieSecure: false,
            devLogin: { enabled: true, tenant: 'acme', origin: `http://127.0.0.1:${port}` },
          },
          // With a CAP schema the alerts start their delivery, which loads the EIDO schema at start.
          ...(cap ? { alerts: { capSchemaFile: cap } } : {}),
          media: { dir: join(work, 'cloud-media') },
          tracing: { enabled: false },
        },
        {
          root: work,
          registry,
          name: 'bundled',
          command: join(await cloudBundle(), 'bin', 'vigil-cloud'),
          env: cleanEnv(),
        },
      );
      await cloud.waitForLog('cloud HTTP listening', 120_000);
      if (cap) expect(cloud.output()).not.toContain('alert delivery not running here');
      await expect
        .poll(async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status, { timeout: 60_000 })
        .toBe(200);
      // The console's assets, served under their content hash (console/static.ts): the bundle's copies are the
      // repository's files, byte for byte.
      for (const name of ['console.js', 'console.css']) {
        const body = readFileSync(join(ROOT, 'cloud', 'src', 'console', 'static', name));
        const [base, ext] = name.split('.');
        const hash = createHash('sha256').update(body).digest('hex').slice(0, 16);
        const res = await fetch(`http://127.0.0.1:${port}/console/static/${base}.${hash}.${ext}`);
        expect(res.status, name).toBe(200);
        expect(Buffer.from(await res.arrayBuffer()).equals(body), name).toBe(true);
      }
      // And a page links them.
      const page = await fetch(`http://127.0.0.1:${port}/console/dev-login`).then((r) => r.text());
      expect(page.match(/\/console\/static\/console\.[0-9a-f]{16}\.(js|css)/g)?.length).toBe(2);
      // The API refuses an unauthenticated call with problem+json (the auth stack is in the bundle too).
      const refused = await fetch(`http://127.0.0.1:${port}/v1/events`);
      expect(refused.status).toBe(401);
      expect(refused.headers.get('content-type')).toContain('application/problem+json');
    }, 240_000);
  });

  const model = asset('models/yolox_nano.onnx');
  const clip = asset('videos/one-by-one-person-detection.mp4');
  let agent: ChildProcess | undefined;
  let agentLog = '';
  printLogsOnFailure('bundled agent', () => agentLog);
  afterAll(() => agent?.kill('SIGKILL'));

  it.skipIf(!model || !clip)(
    'the bundled agent starts and infers with its own runtime: ffmpeg, onnxruntime, SQLite outbox',
    async () => {
      const dir = join(work, 'run', 'vigil-agent');
      const port = await freePort();
      const config = join(work, 'agent.json');
      writeFileSync(
        config,
        JSON.stringify({
          device: { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-release' },
          dataDir: join(work, 'agent-state'),
          http: { host: '127.0.0.1', port },
          remoteConfig: { enabled: false },
          models: [{ name: 'yolox', type: 'yolox', path: model }],
          cameras: [{ id: 'cam1', url: clip, detect: { model: 'yolox', labels: ['person'] } }],
        }),
      );
      agent = spawn(join(dir, 'bin', 'vigil-agent'), ['--config', config], { env: cleanEnv() });
      agent.stdout!.on('data', (d: Buffer) => (agentLog += d.toString()));
      agent.stderr!.on('data', (d: Buffer) => (agentLog += d.toString()));
      // Inferences, not frames: frames count even when the motion gate skips the detector, and the detector
      // runs in worker threads whose module (detect-worker.mjs) the bundle must carry beside main.mjs.
      const inferences = async (): Promise<number> => {
        const res = await fetch(`http://127.0.0.1:${port}/metrics`).catch(() => undefined);
        if (!res?.ok) return 0;
        const m = /^vigil_agent_inference_seconds_count\{[^}]*\} (\d+)/m.exec(await res.text());
        return m ? Number(m[1]) : 0;
      };
      await expect.poll(inferences, { timeout: 120_000, interval: 500 }).toBeGreaterThan(0);
      expect(existsSync(join(work, 'agent-state', 'outbox.db'))).toBe(true);
      const exited = new Promise<number | null>((resolve) => agent!.once('exit', (code) => resolve(code)));
      agent.kill('SIGTERM');
      expect(await exited).toBe(0);
    },
    180_000,
  );
});

describe('Debian package', () => {
  const deb = join(A, 'vigil-agent_1.0.0_amd64.deb');
  const debV2 = join(C, 'vigil-agent_1.1.0_amd64.deb');

  it('dpkg-deb --info and --contents: fields, conffile, files under /opt/vigil, root-owned', async () => {
    const field = async (name: string): Promise<string> =>
      (await exec('dpkg-deb', ['--field', deb, name])).stdout.trim();
    expect(await field('Package')).toBe('vigil-agent');
    expect(await field('Version')).toBe('1.0.0');
    expect(await field('Architecture')).toBe('amd64');
    expect(await field('Depends')).toMatch(/(^|, )ffmpeg(,|$)/);
    expect(await field('Depends')).not.toMatch(/nodejs/); // it ships its runtime
    expect((await exec('dpkg-deb', ['--info', deb, 'conffiles'])).stdout.trim()).toBe(
      '/etc/vigil/agent.json\n/etc/vigil/updater.json',
    );
    const { stdout } = await exec('dpkg-deb', ['--contents', deb], { maxBuffer: 64 * 1024 * 1024 });
    const entries = stdout.trim().split('\n');
    for (const line of entries) expect(line, line).toMatch(/ root\/root /);
    const paths = entries.map((l) => l.split(/\s+/)[5]);
    for (const p of [
      './opt/vigil/manifest.json',
      './opt/vigil/bin/vigil-agent',
      './opt/vigil/runtime/node',
      './opt/vigil/lib/vigil-agent/main.mjs',
      './opt/vigil/node_modules/better-sqlite3/build/Release/better_sqlite3.node',
      './etc/vigil/agent.json',
      './lib/systemd/system/vigil-agent.service',
      './usr/lib/sysusers.d/vigil-agent.conf',
      './usr/share/doc/vigil-agent/copyright',
      './usr/bin/vigil-agent',
      './opt/vigil/bin/vigil-updater',
      './opt/vigil/lib/vigil-agent/updater.mjs',
      './etc/vigil/updater.json',
      './lib/systemd/system/vigil-updater.service',
      './usr/share/polkit-1/rules.d/50-vigil-updater.rules',
      './usr/bin/vigil-updater',
    ]) {
      expect(paths, p).toContain(p);
    }
    const parents = ['./', './etc/', './lib/', './opt/', './usr/'];
    const outside = paths.filter((p) => !/^\.\/(opt\/vigil|etc\/vigil|lib\/systemd|usr)\//.test(p!));
    expect(outside.filter((p) => !parents.includes(p!))).toEqual([]);
  }, 120_000);

  it(
    'lintian passes (errors and warnings; each override is explained in tools/release/debian/lintian-overrides)',
    async () => {
      const res = await exec('lintian', ['--fail-on', 'error,warning', '--no-tag-display-limit', deb], {
        maxBuffer: 16 * 1024 * 1024,
        timeout: 10 * 60_000,
      }).catch((e: { code: number; stdout: string; stderr: string }) => e);
      expect(res.stdout + res.stderr).not.toMatch(/^[EW]: /m);
      expect('code' in res ? res.code : 0).toBe(0);
    },
    11 * 60_000,
  );

  async function exposure(unit: string): Promise<number> {
    const res = await exec('systemd-analyze', ['security', '--offline=true', unit]).catch(
      (e: { stdout: string }) => e,
    );
    const m = /Overall exposure level for \S+: (\d+\.\d+)/.exec(res.stdout);
    expect(m, res.stdout).not.toBeNull();
    return Number(m![1]);
  }

  it('systemd-analyze security rates the packaged units 2.5 or better (the old unit: worse)', async () => {
    const dir = join(work, 'units');
    mkdirSync(dir, { recursive: true });
    for (const unit of ['vigil-agent.service', 'vigil-updater.service']) {
      const packaged = join(dir, unit);
      copyFileSync(join(ROOT, 'tools/release/debian', unit), packaged);
      expect(await exposure(packaged)).toBeLessThanOrEqual(2.5);
    }
    // The measurement can fail: a unit with only the basics rates far worse.
    const basic = join(dir, 'basic.service');
    writeFileSync(basic, '[Service]\nExecStart=/bin/true\nUser=nobody\nNoNewPrivileges=yes\n');
    expect(await exposure(basic)).toBeGreaterThan(2.5);
  });

  describe('install, upgrade, remove, purge (dpkg --root into a directory)', () => {
    const T = join(work, 'root');
    const hostPasswd = readFileSync('/etc/passwd', 'utf8');
    const dpkg = (...args: string[]) =>
      exec(
        'dpkg',
        [
          `--root=${T}`,
          `--log=${join(T, 'dpkg.log')}`,
          '--force-script-chrootless',
          '--force-depends',
          ...args,
        ],
        { maxBuffer: 16 * 1024 * 1024, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } },
      );
    const status = async (): Promise<string> =>
      (
        await exec('dpkg-query', [
          `--admindir=${join(T, 'var/lib/dpkg')}`,
          '-W',
          '-f=${Status} ${Version}',
          'vigil-agent',
        ]).catch((e: { stdout: string; stderr: string }) => ({ stdout: e.stderr }))
      ).stdout.trim();
    const vigilUid = (): string | undefined =>
      /^vigil:x:(\d+):/m.exec(readFileSync(join(T, 'etc/passwd'), 'utf8'))?.[1];

    beforeAll(() => {
      for (const d of ['var/lib/dpkg/info', 'var/lib/dpkg/updates', 'var/lib/dpkg/triggers', 'etc']) {
        mkdirSync(join(T, d), { recursive: true });
      }
      writeFileSync(join(T, 'var/lib/dpkg/status'), '');
      writeFileSync(join(T, 'var/lib/dpkg/available'), '');
      writeFileSync(join(T, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
      writeFileSync(join(T, 'etc/group'), 'root:x:0:\n');
    });

    it('install: files, the vigil user, its state directory; the unit verifies', async () => {
      await dpkg('--install', deb);
      expect(await status()).toBe('install ok installed 1.0.0');
      const uid = vigilUid();
      expect(uid).toBeDefined();
      const state = statSync(join(T, 'var/lib/vigil'));
      expect(state.uid).toBe(Number(uid));
      expect(state.mode & 0o777).toBe(0o750);
      expect(statSync(join(T, 'etc/vigil/agent.json')).mode & 0o777).toBe(0o640);
      const { stdout } = await exec(join(T, 'opt/vigil/bin/vigil-agent'), ['--version'], { env: cleanEnv() });
      expect(stdout).toMatch(/^vigil-agent 1\.0\.0 /);
      const updater = await exec(join(T, 'opt/vigil/bin/vigil-updater'), ['--version'], { env: cleanEnv() });
      expect(updater.stdout).toMatch(/^vigil-updater 1\.0\.0 /);
      // The agent's unit starts from releases/current: the packaged release until vigil-updater installs one.
      expect(readlinkSync(join(T, 'var/lib/vigil-updater/releases/current'))).toBe('/opt/vigil');
      expect(statSync(join(T, 'var/lib/vigil/update')).uid).toBe(Number(uid));
      // verify resolves the unit's dependencies and ExecStart inside the root: give it the host's targets.
      const units = join(T, 'lib/systemd/system');
      for (const f of readdirSync('/lib/systemd/system')) {
        if (/\.(target|slice|socket)$/.test(f) && !existsSync(join(units, f))) {
          copyFileSync(join('/lib/systemd/system', f), join(units, f));
        }
      }
      await exec('systemd-analyze', [
        'verify',
        `--root=${T}`,
        '/lib/systemd/system/vigil-agent.service',
        '/lib/systemd/system/vigil-updater.service',
      ]);
      // Nothing reached the host.
      expect(readFileSync('/etc/passwd', 'utf8')).toBe(hostPasswd);
      expect(existsSync('/var/lib/dpkg/info/vigil-agent.list')).toBe(false);
    });

    it('upgrade 1.0.0 -> 1.1.0 keeps the edited config, the state and the user', async () => {
      const uid = vigilUid();
      const edited =
        '{\n  "dataDir": "/var/lib/vigil",\n  "cameras": [],\n  "log": { "level": "debug" }\n}\n';
      writeFileSync(join(T, 'etc/vigil/agent.json'), edited);
      writeFileSync(join(T, 'var/lib/vigil/outbox.db'), 'events not yet sent');
      await dpkg('--install', debV2);
      expect(await status()).toBe('install ok installed 1.1.0');
      const { stdout } = await exec(join(T, 'opt/vigil/bin/vigil-agent'), ['--version'], { env: cleanEnv() });
      expect(stdout).toMatch(/^vigil-agent 1\.1\.0 /);
      expect(readFileSync(join(T, 'etc/vigil/agent.json'), 'utf8')).toBe(edited);
      expect(readFileSync(join(T, 'var/lib/vigil/outbox.db'), 'utf8')).toBe('events not yet sent');
      expect(vigilUid()).toBe(uid);
    });

    it('remove keeps config and state; purge deletes them', async () => {
      await dpkg('--remove', 'vigil-agent');
      expect(await status()).toBe('deinstall ok config-files 1.1.0');
      expect(existsSync(join(T, 'opt/vigil/bin/vigil-agent'))).toBe(false);
      expect(existsSync(join(T, 'usr/bin/vigil-agent'))).toBe(false);
      expect(existsSync(join(T, 'etc/vigil/agent.json'))).toBe(true);
      expect(existsSync(join(T, 'var/lib/vigil/outbox.db'))).toBe(true);
      await dpkg('--purge', 'vigil-agent');
      expect(await status()).toMatch(/no packages found|not-installed/);
      expect(existsSync(join(T, 'etc/vigil'))).toBe(false);
      expect(existsSync(join(T, 'var/lib/vigil'))).toBe(false);
      expect(existsSync(join(T, 'var/lib/vigil-updater'))).toBe(false);
      expect(existsSync(join(T, 'opt/vigil'))).toBe(false);
    });
  });
});
