// Issue 14 "Must show", end to end with real processes and only systemd stood in for: three gateways, each a
// directory the v1 agent package (`vigil-agent_1.0.0_amd64.deb`, built by the release tooling with the fleet's
// release root) is installed into with `dpkg --root` (its maintainer scripts make the vigil user, /var/lib/vigil,
// /var/lib/vigil-updater/releases/current -> /opt/vigil), enrolled as the vigil user with the package's
// `vigil-agent enroll`, then run from the installed layout: the agent and the updater are started from the
// package's own unit files (vigil-agent.service, vigil-updater.service) by a stand-in for systemd
// (fixtures/systemd-unit.mjs: ExecStart, User=vigil, WorkingDirectory, Restart=always, RestartSec; PID 1 here is
// not systemd, and the host's system must not be touched). The updater fetches signed releases from the real
// cloud over mutual TLS (DeviceService.FetchRelease with the agent's enrolled identity); 2.0.0 and a bad 3.0.0
// are real agent bundles `vigil release publish`ed. The cameras are a clip through ffmpeg and YOLOX, so events
// flow the whole time: every event an agent logs is counted in PostgreSQL, none lost, none unexplained.
//   1. A staged rollout 1.0.0 -> 2.0.0 (canary, then the rest): every agent runs 2.0.0, committed.
//   2. A bad 3.0.0 (its bundle lacks better-sqlite3: the agent crashes at start): each canary's updater
//      switches back to 2.0.0 by itself within the bake time, the rollout aborts and rolls back, no device
//      stays on 3.0.0, and the device outside the canary is never asked for it.
// What is adapted to the directory standing in for `/` (each change in Gateway.install): absolute paths in
// agent.json, updater.json (and the updater's path defaults) and the `current` link the package points at
// /opt/vigil; the test-only settings (ports, fast heartbeats and polls, a 30 s bake) and updater.json's
// restart.command: `systemctl restart vigil-agent.service` becomes a SIGHUP to the unit's stand-in, waiting, as
// systemctl does, for the new process.
// Slow: the bundles and the package are built once per file (VIGIL_E2E_RELEASE_CACHE=<dir> keeps them, with the
// release keys the package trusts, between runs).
import { execFile, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { sql } from 'kysely';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '@vigil/cli';
import {
  ensureDevConfigSigningKey,
  ensureDevSigningKey,
  ensureNatsAuthority,
  mintDevToken,
  parseCloudConfig,
  startCloud,
  type CloudApp,
  type NatsAuthorityFiles,
} from '@vigil/cloud';
import {
  buildDeb,
  buildInfo,
  debFileName,
  describeFiles,
  packStaged,
  programByName,
  stageProgram,
  walkStaged,
  type BuildInfo,
  type BundleManifest,
} from '@vigil/release';
import {
  asset,
  dpkgInstallInto,
  freePort,
  natsConfig,
  registry,
  stopChild,
  useDatabase,
  useNats,
  usePki,
  userInRoot,
} from '@vigil/testkit';

const execFileP = promisify(execFile);
const REPO = fileURLToPath(new URL('../../..', import.meta.url));
const SYSTEMD_UNIT = fileURLToPath(new URL('./fixtures/systemd-unit.mjs', import.meta.url));
// People walk in and out one by one (139 s, looped): tracks start and end all the time, so events keep coming.
const CLIP = asset('videos/one-by-one-person-detection.mp4');
const MODEL = asset('models/yolox_nano.onnx');
const V1 = '1.0.0';
const V2 = '2.0.0';
const V3 = '3.0.0';
const IDS = ['gw-a', 'gw-b', 'gw-c'];
/** The updater's bake: long enough for a loaded machine to start ffmpeg and the model; short for the test. */
const BAKE_SECONDS = 30;
const silent = pino({ level: 'silent' });

interface Releases {
  /** The 1.0.0 agent package, carrying the release root of the test's keys. */
  v1Deb: string;
  v2Bundle: string;
  v3Bundle: string;
}

/**
 * 1.0.0 as the .deb (bundle first, then the package built from it, as `pnpm release:build` does), 2.0.0 and
 * 3.0.0 as signed-to-be bundles. 3.0.0 is a broken build: better-sqlite3 left out of its node_modules (its
 * manifest lists what is there, so the updater installs it as a valid bundle); the agent then dies at start.
 */
async function buildReleases(dir: string, releaseRoot: string): Promise<Releases> {
  const out: Releases = {
    v1Deb: join(dir, debFileName(V1)),
    v2Bundle: join(dir, `vigil-agent-${V2}-linux-x64.tar.gz`),
    v3Bundle: join(dir, `vigil-agent-${V3}-linux-x64.tar.gz`),
  };
  if ([out.v1Deb, out.v2Bundle, out.v3Bundle].every((f) => existsSync(f))) return out;
  const spec = programByName('vigil-agent')!;
  // The work tree under test may hold uncommitted changes (a developer's run). `vigil release publish` refuses
  // a build marked dirty (tools/cli/test/release.test.ts): the bundles this test publishes to its own
  // throwaway cloud are marked clean; their commit still says `-dirty`.
  const info = (version: string, minUpgradeFrom: string): BuildInfo => ({
    ...buildInfo(REPO, { version, minUpgradeFrom, allowDirty: true }),
    dirty: false,
  });
  const i1 = info(V1, '0.1.0');
  const i2 = info(V2, V1);
  const i3 = info(V3, V2);
  const stage = (v: string): string => {
    const s = join(dir, `stage-${v}`);
    rmSync(s, { recursive: true, force: true });
    mkdirSync(s, { recursive: true });
    return s;
  };
  const t0 = Date.now();
  await stageProgram(REPO, spec, i1, stage(V1));
  await stageProgram(REPO, spec, i2, stage(V2));
  const s3 = stage(V3);
  const m3 = await stageProgram(REPO, spec, i3, s3);
  rmSync(join(s3, 'node_modules', 'better-sqlite3'), { recursive: true, force: true });
  const files = walkStaged(s3).files.filter((f) => f !== 'manifest.json');
  const broken: BundleManifest = {
    ...m3,
    dependencies: m3.dependencies.filter((d) => !d.startsWith('better-sqlite3@')),
    files: describeFiles(s3, files),
  };
  writeFileSync(join(s3, 'manifest.json'), `${JSON.stringify(broken, null, 2)}\n`);
  const v1Bundle = join(dir, `vigil-agent-${V1}-linux-x64.tar.gz`);
  // The gzips side by side (~150 MB each): the slow part.
  await Promise.all([
    packStaged(join(dir, `stage-${V1}`), i1, v1Bundle).then(() =>
      buildDeb(REPO, v1Bundle, i1, dir, { releaseRoot }),
    ),
    packStaged(join(dir, `stage-${V2}`), i2, out.v2Bundle),
    packStaged(s3, i3, out.v3Bundle),
  ]);
  for (const v of [V1, V2, V3]) rmSync(join(dir, `stage-${v}`), { recursive: true, force: true });
  console.log(`[updater-e2e] releases built in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return out;
}

/** What the tests read of the API's answers (rollouts, their devices): every field they touch, typed. */
interface Answer {
  id: string;
  state: string;
  abort_reason: string | null;
  totals: Record<string, number>;
  waves: Array<{ devices: number }>;
  items: unknown[];
}

/** Polls `cond` until true (beforeAll cannot use expect.poll); the error carries `why()`. */
async function until(
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  why: () => string,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`not within ${timeoutMs} ms:\n${why()}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** What the test saw of one updater state: status.json as polled, with when. */
interface Seen {
  at: number;
  state: string;
  current: string;
  target: string | null;
  reason: string | null;
}

/** One gateway: a directory standing in for its `/`, the agent package installed into it with dpkg. */
class Gateway {
  readonly dataDir: string;
  readonly updaterDir: string;
  readonly releases: string;
  readonly optVigil: string;
  readonly agentConfig: string;
  readonly updaterConfig: string;
  /** Where the stand-in for systemd writes the agent's and the updater's pids (directories vigil may write). */
  readonly agentPidFile: string;
  readonly updaterPidFile: string;
  port = 0;
  vigil = { uid: 0, gid: 0, home: '/' };
  agentUnit: ChildProcess | undefined;
  updaterUnit: ChildProcess | undefined;
  /** Every distinct status.json and request.json seen, in order. */
  readonly statuses: Seen[] = [];
  readonly requests: Array<{ at: number; version: string }> = [];
  /** Event ids the agent processes logged (track started/ended), and what they reported as not logged. */
  readonly logged = new Set<string>();
  notLogged = 0;
  agentOutput = '';
  updaterOutput = '';
  private partial = '';

  constructor(
    readonly id: string,
    /** Stands in for the gateway's `/`. */
    readonly root: string,
  ) {
    this.dataDir = this.at('/var/lib/vigil');
    this.updaterDir = this.at('/var/lib/vigil-updater');
    this.releases = join(this.updaterDir, 'releases');
    this.optVigil = this.at('/opt/vigil');
    this.agentConfig = this.at('/etc/vigil/agent.json');
    this.updaterConfig = this.at('/etc/vigil/updater.json');
    this.agentPidFile = this.at('/run/vigil-agent-unit/pid');
    this.updaterPidFile = this.at('/run/vigil-updater-unit/pid');
  }

  /** A gateway's absolute path, inside this gateway's directory. */
  at(path: string): string {
    return isAbsolute(path) ? join(this.root, path) : path;
  }

  /**
   * `apt install ./vigil-agent_1.0.0_amd64.deb` (dpkg --root), then what README "Install on a gateway" has the
   * administrator do: the fleet CA at /etc/vigil/fleet-ca.pem (readable by vigil), the agent's settings in
   * /etc/vigil/agent.json. Then the adaptations to a directory instead of `/` (see the file's header).
   */
  async install(deb: string, caFile: string): Promise<void> {
    mkdirSync(this.root, { recursive: true, mode: 0o755 });
    await dpkgInstallInto(this.root, deb, { unsafeIo: true });
    this.vigil = userInRoot(this.root, 'vigil');
    // postinst points current at /opt/vigil: inside this directory, that is <root>/opt/vigil (swapped as
    // postinst swaps it: a new link renamed over the old one).
    const current = join(this.releases, 'current');
    expect(readlinkSync(current)).toBe('/opt/vigil');
    symlinkSync(this.optVigil, `${current}.adapt`);
    renameSync(`${current}.adapt`, current);
    copyFileSync(caFile, this.at('/etc/vigil/fleet-ca.pem'));
    chmodSync(this.at('/etc/vigil/fleet-ca.pem'), 0o644);
    this.port = await freePort();
    // The conffile as packaged, its paths inside this directory, plus the test's settings. Written in place:
    // postinst's 0640 root:vigil stays.
    const packaged = JSON.parse(readFileSync(this.agentConfig, 'utf8')) as { dataDir: string };
    writeFileSync(
      this.agentConfig,
      JSON.stringify({
        ...packaged,
        dataDir: this.at(packaged.dataDir),
        http: { port: this.port },
        heartbeatSeconds: 1,
        remoteConfig: { pollSeconds: 1, healthTimeoutSeconds: 30 },
        log: { level: 'info' },
      }),
    );
    for (const f of [this.agentPidFile, this.updaterPidFile]) {
      mkdirSync(join(f, '..'), { recursive: true });
      chownSync(join(f, '..'), this.vigil.uid, this.vigil.gid);
    }
  }

  /** The process environment systemd or `sudo -u vigil` gives: the vigil user's, not the test's. */
  private asVigil(): { uid: number; gid: number; env: NodeJS.ProcessEnv } {
    return {
      uid: this.vigil.uid,
      gid: this.vigil.gid,
      env: {
        PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        HOME: this.at(this.vigil.home),
        USER: 'vigil',
        LOGNAME: 'vigil',
      },
    };
  }

  /** `sudo -u vigil VIGIL_ENROLL_TOKEN=… vigil-agent enroll … --ca-file /etc/vigil/fleet-ca.pem --config …`. */
  async enroll(grpc: string, token: string): Promise<void> {
    const as = this.asVigil();
    const { stdout } = await execFileP(
      // /usr/bin/vigil-agent is an absolute link to /opt/vigil/bin/vigil-agent: its target, inside the root.
      this.at(readlinkSync(this.at('/usr/bin/vigil-agent'))),
      [
        'enroll',
        '--cloud',
        grpc,
        '--ca-file',
        this.at('/etc/vigil/fleet-ca.pem'),
        '--device-id',
        this.id,
        '--config',
        this.agentConfig,
      ],
      { ...as, env: { ...as.env, VIGIL_ENROLL_TOKEN: token } },
    );
    expect(stdout).toMatch(/enrolled/i);
  }

  /** The model file the config names, where the agent keeps models (<dataDir>/models/<sha256>), vigil's. */
  placeModel(model: string, sha256: string): void {
    mkdirSync(join(this.dataDir, 'models'), { recursive: true });
    copyFileSync(model, join(this.dataDir, 'models', sha256));
    for (const p of [join(this.dataDir, 'models'), join(this.dataDir, 'models', sha256)])
      chownSync(p, this.vigil.uid, this.vigil.gid);
  }

  /** `systemctl start <unit>` of the installed unit file, through the stand-in for systemd. */
  private startUnit(unit: string, pidFile?: string): ChildProcess {
    return registry.spawn(process.execPath, [SYSTEMD_UNIT, this.root, `lib/systemd/system/${unit}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: pidFile ? { SUPERVISOR_PID_FILE: pidFile } : {},
    });
  }

  /** `systemctl start vigil-agent`: ExecStart=/var/lib/vigil-updater/releases/current/bin/vigil-agent. */
  startAgent(): void {
    this.agentUnit = this.startUnit('vigil-agent.service', this.agentPidFile);
    this.agentUnit.stdout!.on('data', (d: Buffer) => this.agentLines(d.toString()));
    this.agentUnit.stderr!.on('data', (d: Buffer) => {
      this.agentOutput = (this.agentOutput + d.toString()).slice(-100_000);
    });
  }

  private agentLines(chunk: string): void {
    this.agentOutput = (this.agentOutput + chunk).slice(-100_000);
    const lines = (this.partial + chunk).split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      let rec: { msg?: string; eventId?: string; notLogged?: { starts: number; ends: number } };
      try {
        rec = JSON.parse(line) as typeof rec;
      } catch {
        continue;
      }
      if ((rec.msg === 'track started' || rec.msg === 'track ended') && rec.eventId)
        this.logged.add(rec.eventId);
      if (rec.notLogged) this.notLogged += rec.notLogged.starts + rec.notLogged.ends;
    }
  }

  /**
   * `systemctl enable --now vigil-updater`: ExecStart=/opt/vigil/bin/vigil-updater --config
   * /etc/vigil/updater.json, the conffile as packaged with its paths (and the path defaults it relies on,
   * edge-agent/src/updater/config.ts) inside this directory, plus the test's settings.
   */
  startUpdater(): void {
    const packaged = JSON.parse(readFileSync(this.updaterConfig, 'utf8')) as {
      repository: { kind: string; trustedRootFile: string; packagedRootFile: string };
    };
    expect(existsSync(this.at(packaged.repository.packagedRootFile))).toBe(true);
    // The administrator's root is not installed: the package's is the one trusted.
    expect(existsSync(this.at(packaged.repository.trustedRootFile))).toBe(false);
    writeFileSync(
      this.updaterConfig,
      JSON.stringify({
        ...packaged,
        stateDir: this.at('/var/lib/vigil'),
        dataDir: this.at('/var/lib/vigil-updater'),
        packagedRelease: this.at('/opt/vigil'),
        repository: {
          ...packaged.repository,
          trustedRootFile: this.at(packaged.repository.trustedRootFile),
          packagedRootFile: this.at(packaged.repository.packagedRootFile),
        },
        pollSeconds: 0.5,
        // What `systemctl restart vigil-agent.service` does: returns once the old process is gone and the new
        // one started (the stand-in writes the new pid), so that the bake does not count the old agent's
        // shutdown. The updater runs as vigil, and so does the agent's stand-in: the signal is allowed, as the
        // polkit rule allows vigil this one restart.
        restart: {
          command: [
            '/bin/sh',
            '-c',
            'f="$1"; old=$(cat "$f"); kill -HUP "$2"; n=0; while [ "$(cat "$f")" = "$old" ]; do n=$((n+1)); [ $n -gt 1200 ] && exit 1; sleep 0.1; done',
            'restart',
            this.agentPidFile,
            String(this.agentUnit!.pid),
          ],
          timeoutSeconds: 150,
        },
        health: {
          url: `http://127.0.0.1:${this.port}/healthz`,
          bakeSeconds: BAKE_SECONDS,
          probeSeconds: 0.5,
          failAfterProbes: 3,
        },
        http: { port: 0 },
        log: { level: 'info' },
      }),
    );
    this.updaterUnit = this.startUnit('vigil-updater.service', this.updaterPidFile);
    const add = (d: Buffer): void => {
      this.updaterOutput = (this.updaterOutput + d.toString()).slice(-100_000);
    };
    this.updaterUnit.stdout!.on('data', add);
    this.updaterUnit.stderr!.on('data', add);
  }

  /** Records status.json and request.json when they change (called every 200 ms). */
  sample(): void {
    const read = (f: string): Record<string, unknown> | undefined => {
      try {
        return JSON.parse(readFileSync(join(this.dataDir, 'update', f), 'utf8')) as Record<string, unknown>;
      } catch {
        return undefined;
      }
    };
    const s = read('status.json');
    const last = this.statuses[this.statuses.length - 1];
    if (s && (s.state !== last?.state || s.target !== last?.target || s.current !== last?.current))
      this.statuses.push({
        at: Date.now(),
        state: String(s.state),
        current: String(s.current),
        target: (s.target as string | null) ?? null,
        reason: (s.reason as string | null) ?? null,
      });
    const r = read('request.json');
    const lastReq = this.requests[this.requests.length - 1];
    if (r && r.version !== lastReq?.version)
      this.requests.push({ at: Date.now(), version: String(r.version) });
  }

  async health(): Promise<{ version?: string; checks?: Record<string, { ok: boolean }> } | undefined> {
    try {
      const res = await fetch(`http://127.0.0.1:${this.port}/healthz`, { signal: AbortSignal.timeout(2000) });
      return (await res.json()) as { version?: string; checks?: Record<string, { ok: boolean }> };
    } catch {
      return undefined;
    }
  }

  async healthyOn(version: string): Promise<boolean> {
    const h = await this.health();
    return h?.version === version && Object.values(h.checks ?? {}).every((c) => c.ok);
  }

  /** The running program of a unit: its executable (the launcher execs the release's Node) and user. */
  running(unit: 'agent' | 'updater'): { exe: string; uid: number } {
    const pid = readFileSync(unit === 'agent' ? this.agentPidFile : this.updaterPidFile, 'utf8').trim();
    const uid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return { exe: readlinkSync(`/proc/${pid}/exe`), uid: Number(uid) };
  }

  currentLink(): string {
    return readlinkSync(join(this.releases, 'current'));
  }

  async stop(): Promise<void> {
    if (this.updaterUnit) await stopChild(this.updaterUnit);
    if (this.agentUnit) await stopChild(this.agentUnit);
  }
}

describe.skipIf(!CLIP || !MODEL)(
  'installed from the 1.0.0 .deb, the real updater, the real cloud, real agent bundles: 1.0.0 -> 2.0.0, bad 3.0.0',
  () => {
    // Real path: the processes' executables are compared with paths in here.
    const work = realpathSync(mkdtempSync(join(tmpdir(), 'vigil-updater-e2e-')));
    // The gateways' directories are in here, and their programs run as the vigil user.
    chmodSync(work, 0o755);
    afterAll(() => rmSync(work, { recursive: true, force: true }));
    const cacheDir = process.env.VIGIL_E2E_RELEASE_CACHE;
    // Kept with the cached package, which ships their root (root init refuses a directory inside the work tree).
    const keysDir = join(cacheDir ?? work, 'release-keys');
    const pki = usePki({ services: ['cloud'] });
    let auth: NatsAuthorityFiles;
    let releases: Releases;
    beforeAll(async () => {
      if (!existsSync(join(keysDir, 'root', '1.root.json'))) {
        rmSync(keysDir, { recursive: true, force: true });
        const lines: string[] = [];
        const code = await runCli(['release', 'root', 'init', '--keys-dir', keysDir], {
          io: { out: (t) => lines.push(t), err: (t) => lines.push(t) },
        });
        expect(code, lines.join('\n')).toBe(0);
      }
      const dir = cacheDir ?? join(work, 'build');
      mkdirSync(dir, { recursive: true });
      // The package ships the fleet's release root, as `pnpm release:build --release-root` makes it.
      releases = await buildReleases(dir, join(keysDir, 'root', '1.root.json'));
      auth = await ensureNatsAuthority(join(work, 'nats-auth'));
      // Building the three agent bundles and the 1.0.0 .deb took 423 s at load ~20 on 2 cores (one bundle alone:
      // 50 s at load 7).
    }, 600_000);
    const nats = useNats({
      config: (ctx) =>
        natsConfig({
          tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
          jetstream: true,
          extra: readFileSync(auth.serverConfigFile, 'utf8'),
        })(ctx),
    });
    const dbUrl = useDatabase();
    let cloud: CloudApp;
    const gateways: Gateway[] = [];
    let sampler: NodeJS.Timeout | undefined;

    const cli = async (...args: string[]): Promise<{ code: number; out: string }> => {
      const out: string[] = [];
      const code = await runCli(
        ['--api', `http://127.0.0.1:${cloud.httpPort}`, '--pki', pki().dir, ...args],
        {
          io: { out: (t) => out.push(t), err: (t) => out.push(t) },
        },
      );
      return { code, out: out.join('\n') };
    };
    const token = (role: string): Promise<string> =>
      mintDevToken({
        key: ensureDevSigningKey(pki().dir),
        issuer: 'vigil-dev',
        audience: 'vigil-api',
        tenant: 'acme',
        roles: [role],
        sub: `${role}@acme`,
        ttlSeconds: 900,
      });
    const api = async (
      method: string,
      path: string,
      body?: unknown,
    ): Promise<{ status: number; json: Answer }> => {
      const res = await fetch(`http://127.0.0.1:${cloud.httpPort}${path}`, {
        method,
        headers: { authorization: `Bearer ${await token('admin')}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.status, json: (await res.json().catch(() => null)) as Answer };
    };
    const publish = async (bundle: string, version: string, minVersion: string): Promise<void> => {
      const r = await cli(
        'release',
        'publish',
        bundle,
        '--agent-version',
        version,
        '--channel',
        'stable',
        '--min-version',
        minVersion,
        '--keys-dir',
        keysDir,
        '--tenant',
        'vigil',
        '--role',
        'admin',
      );
      expect(r.code, r.out).toBe(0);
    };
    /** Ids of the device's events in PostgreSQL that occurred (device clock) in [since, before). */
    const eventsOf = async (
      deviceId: string,
      since = new Date(0),
      before = new Date(8.64e15),
    ): Promise<string[]> =>
      (
        await sql<{ event_id: string }>`select event_id::text from events
        where tenant_id = 'acme' and device_id = ${deviceId}
          and occurred_at >= ${since} and occurred_at < ${before}`.execute(cloud.db)
      ).rows.map((r) => r.event_id);

    beforeAll(async () => {
      const svc = pki().services.cloud!;
      cloud = await startCloud(
        parseCloudConfig({
          http: { port: 0 },
          database: { url: dbUrl() },
          nats: {
            servers: [`tls://localhost:${nats().port}`],
            tls: { caFile: pki().caCert, certFile: svc.cert, keyFile: svc.key },
            auth: { authorityFile: auth.authorityFile },
          },
          identity: {
            caCertFile: pki().caCert,
            caKeyFile: pki().caKey,
            certificateTtlSeconds: 3600,
            minRenewIntervalSeconds: 0,
          },
          grpc: {
            enabled: true,
            port: 0,
            tls: { certFile: pki().cloudApi.cert, keyFile: pki().cloudApi.key },
          },
          auth: { jwksFile: ensureDevSigningKey(pki().dir).jwksFile },
          configSigning: {
            privateJwkFile: (await ensureDevConfigSigningKey(join(work, 'config-key'))).privateJwkFile,
          },
          releases: {
            dir: join(work, 'repository'),
            onlineKeyFile: join(keysDir, 'online.key.json'),
            publisherTenant: 'vigil',
          },
          log: { level: 'silent' },
        }),
        { logger: silent },
      );
      const push = await cli(
        'release',
        'root',
        'push',
        '--keys-dir',
        keysDir,
        '--tenant',
        'vigil',
        '--role',
        'admin',
      );
      expect(push.code, push.out).toBe(0);
      await publish(releases.v2Bundle, V2, V1);
      await publish(releases.v3Bundle, V3, V2);

      // The tenant's config: one camera on the clip with YOLOX, snapshots off (events are what is counted).
      const sha256 = createHash('sha256').update(readFileSync(MODEL!)).digest('hex');
      expect(
        (
          await api('PUT', '/v1/configs/tenant/acme', {
            models: [{ name: 'det', type: 'yolox', sha256, uri: 'file://yolox_nano.onnx' }],
            cameras: [
              {
                id: 'walk',
                url: CLIP!,
                detectFps: 5,
                width: 320,
                height: 180,
                modelName: 'det',
                labels: ['person'],
              },
            ],
            privacy: { disableSnapshots: true },
          })
        ).status,
      ).toBe(200);

      const installer = await token('installer');
      const t0 = Date.now();
      const installed = IDS.map((id) => new Gateway(id, join(work, id)));
      // Unpacking ~250 MB three times, side by side.
      await Promise.all(installed.map((g) => g.install(releases.v1Deb, pki().caCert)));
      console.log(
        `[updater-e2e] 1.0.0 .deb installed ${IDS.length}x in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
      );
      for (const g of installed) {
        const minted = await fetch(`http://127.0.0.1:${cloud.httpPort}/v1/enrollment-tokens`, {
          method: 'POST',
          headers: { authorization: `Bearer ${installer}`, 'content-type': 'application/json' },
          body: JSON.stringify({ site_id: 'hq', ttl_seconds: 600 }),
        });
        await g.enroll(`localhost:${cloud.grpcPort!}`, ((await minted.json()) as { token: string }).token);
        g.placeModel(MODEL!, sha256);
        gateways.push(g);
      }
      for (const g of gateways) g.startAgent();
      sampler = setInterval(() => gateways.forEach((g) => g.sample()), 200);
      // Each device runs the tenant's config (cameras streaming, the model inferring) before anything else.
      await until(
        async () =>
          (await cloud.registry.listDevices('acme')).filter((d) => d.agent_version === V1).length ===
          IDS.length,
        60_000,
        () => gateways.map((g) => g.agentOutput.slice(-1500)).join('\n'),
      );
      for (const g of gateways)
        expect((await api('POST', `/v1/devices/${g.id}/config/issue`)).status).toBe(201);
      for (const g of gateways) {
        await until(
          () => g.healthyOn(V1),
          120_000,
          () => g.agentOutput.slice(-3000),
        );
        g.startUpdater();
      }
      await until(
        () => gateways.every((g) => g.statuses.some((s) => s.state === 'idle' && s.current === V1)),
        60_000,
        () => gateways.map((g) => g.updaterOutput.slice(-1500)).join('\n'),
      );
      // What runs is the installed package, as the vigil user: the agent from releases/current (/opt/vigil),
      // the updater from /opt/vigil.
      for (const g of gateways) {
        const packagedNode = join(g.optVigil, 'runtime', 'node');
        expect(g.running('agent'), g.id).toEqual({ exe: packagedNode, uid: g.vigil.uid });
        expect(g.running('updater'), g.id).toEqual({ exe: packagedNode, uid: g.vigil.uid });
      }
      // Events flow before any rollout.
      for (const g of gateways)
        await until(
          async () => (await eventsOf(g.id)).length > 0,
          90_000,
          () => g.agentOutput.slice(-2000),
        );
    }, 360_000);
    afterAll(async () => {
      clearInterval(sampler);
      for (const g of gateways) await g.stop();
      await cloud?.stop();
    });

    const rollout = async (id: string): Promise<Answer> => (await api('GET', `/v1/rollouts/${id}`)).json;
    const waitFor = async (id: string, states: string[], timeout: number): Promise<Answer> => {
      await expect
        .poll(async () => (await rollout(id)).state, { timeout, interval: 500 })
        .toSatisfy((s: string) => states.includes(s));
      return rollout(id);
    };

    /**
     * None lost: every event an agent logged before `cutoff` is in PostgreSQL (once: event ids are unique there),
     * and every event PostgreSQL holds for the device was logged by one of its agent processes.
     */
    async function expectNoneLost(): Promise<void> {
      const logged = gateways.map((g) => new Set(g.logged));
      await expect
        .poll(
          async () => {
            let missing = 0;
            for (const [k, g] of gateways.entries()) {
              const stored = new Set(await eventsOf(g.id));
              for (const id of logged[k]!) if (!stored.has(id)) missing++;
            }
            return missing;
          },
          { timeout: 60_000, interval: 1000 },
        )
        .toBe(0);
      const stored = await Promise.all(gateways.map((g) => eventsOf(g.id)));
      // Log lines travel through two pipes: give the last ones a moment before checking the other way round.
      await new Promise((r) => setTimeout(r, 2_000));
      for (const [k, g] of gateways.entries()) {
        expect(g.notLogged, `${g.id}: track lines were summarised, so the ids cannot be compared`).toBe(0);
        const unexplained = stored[k]!.filter((id) => !g.logged.has(id));
        expect(unexplained, g.id).toEqual([]);
        expect(new Set(stored[k]).size).toBe(stored[k]!.length);
      }
      console.log(
        `[updater-e2e] events logged by the agents / stored in PostgreSQL: ${gateways.map((g, k) => `${g.id} ${logged[k]!.size}/${stored[k]!.length}`).join(', ')}`,
      );
    }

    it('a staged rollout 1.0.0 -> 2.0.0: each updater fetches 2.0.0 from the cloud, verifies, switches, bakes and commits; events never stop', async () => {
      const t0 = new Date();
      const r = await cli(
        'rollout',
        'create',
        '--agent-version',
        V2,
        '--channel',
        'stable',
        '--canary',
        '1',
        '--waves',
        '100',
        '--window',
        '480',
        '--min-reported',
        '1',
        '--failure-ratio',
        '0.3',
        '--applied-ratio',
        '1',
        '--tenant',
        'acme',
        '--role',
        'admin',
        '--json',
      );
      expect(r.code, r.out).toBe(0);
      const id = (JSON.parse(r.out) as { id: string }).id;
      const done = await waitFor(id, ['completed', 'aborted', 'rolling_back', 'rolled_back'], 600_000);
      const t1 = new Date();
      expect(
        done.state,
        JSON.stringify(done) + gateways.map((g) => g.updaterOutput.slice(-2000)).join('\n'),
      ).toBe('completed');
      expect(done.totals.applied).toBe(IDS.length);
      expect(done.waves.map((w: { devices: number }) => w.devices)).toEqual([1, 2]);
      console.log(
        `[updater-e2e] ${IDS.length} agents 1.0.0 -> 2.0.0 in ${((+t1 - +t0) / 1000).toFixed(1)} s`,
      );

      for (const g of gateways) {
        // The updater went through every step, and the agent now running is the 2.0.0 bundle, healthy.
        const states = g.statuses.filter((s) => s.target === V2).map((s) => s.state);
        expect(states, g.id).toContain('committed');
        expect(states.indexOf('downloading'), g.id).toBeLessThan(states.indexOf('committed'));
        expect(g.currentLink(), g.id).toBe(V2);
        expect(await g.healthyOn(V2), g.id).toBe(true);
        expect(readFileSync(join(g.releases, V2, 'manifest.json'), 'utf8')).toMatch(/"version": "2\.0\.0"/);
        // The agent process is 2.0.0's own runtime, still as vigil; the updater still the package's.
        expect(g.running('agent'), g.id).toEqual({
          exe: join(g.releases, V2, 'runtime', 'node'),
          uid: g.vigil.uid,
        });
        expect(g.running('updater').exe, g.id).toBe(join(g.optVigil, 'runtime', 'node'));
      }
      // The registry has the heartbeat's version and update state; the rollout view reads the agent version.
      await expect
        .poll(
          async () =>
            (await cloud.registry.listDevices('acme')).every(
              (d) => d.agent_version === V2 && d.update_state === 'committed',
            ),
          { timeout: 15_000 },
        )
        .toBe(true);
      const devices = (await api('GET', `/v1/rollouts/${id}/devices`)).json.items as Array<{
        status: string;
        agent: { version: string; previous_version: string; update_state: string } | null;
      }>;
      for (const d of devices) {
        expect(d.status).toBe('applied');
        expect(d.agent).toMatchObject({ version: V2, previous_version: V1, update_state: 'committed' });
      }

      // Events throughout: before the rollout, while it ran, and from every 2.0.0 agent after it.
      for (const g of gateways) {
        // From the 2.0.0 agent: events that occurred after its updater committed it.
        const committedAt = g.statuses.find((s) => s.target === V2 && s.state === 'committed')!.at;
        await expect
          .poll(async () => (await eventsOf(g.id, new Date(committedAt))).length, {
            timeout: 60_000,
            message: `${g.id}: no event after its commit\n${g.agentOutput.slice(-2000)}`,
          })
          .toBeGreaterThan(0);
        expect(
          (await eventsOf(g.id, t0, t1)).length,
          `${g.id}: events while the rollout ran`,
        ).toBeGreaterThan(0);
      }
      await expectNoneLost();
    }, 900_000);

    it('a bad 3.0.0 (crashes at start): each canary switches back to 2.0.0 within the bake, the rollout aborts, no device stays on 3.0.0', async () => {
      const r = await cli(
        'rollout',
        'create',
        '--agent-version',
        V3,
        '--canary',
        '2',
        '--waves',
        '100',
        '--window',
        '480',
        '--min-reported',
        '1',
        '--failure-ratio',
        '0.1',
        '--tenant',
        'acme',
        '--role',
        'admin',
        '--json',
      );
      expect(r.code, r.out).toBe(0);
      const id = (JSON.parse(r.out) as { id: string }).id;
      const ended = await waitFor(id, ['rolled_back', 'completed'], 600_000);
      expect(ended.state, JSON.stringify(ended)).toBe('rolled_back');
      expect(ended.abort_reason).toMatch(/failure ratio|gate failed/);

      const devices = (await api('GET', `/v1/rollouts/${id}/devices`)).json.items as Array<{
        device_id: string;
        wave: number | null;
        status: string;
        reason: string | null;
        agent: {
          version: string;
          previous_version: string;
          update_state: string;
          update_target: string;
        } | null;
      }>;
      const canaries = devices.filter((d) => d.wave === 0);
      expect(canaries).toHaveLength(2);
      expect(devices.filter((d) => d.wave !== null)).toHaveLength(2);
      // The device's own reason reaches the rollout (the first canary to fail it; a canary still baking when the
      // rollout aborted is restored instead).
      expect(
        canaries.some((d) => /rolled_back: .*never healthy/.test(d.reason ?? '')),
        JSON.stringify(canaries),
      ).toBe(true);
      for (const d of canaries) {
        expect(d.status).toBe('rolled_back');
        // The view reads what the device runs (its heartbeat), not only its config.
        expect(d.agent).toMatchObject({
          version: V2,
          previous_version: V2,
          update_state: 'rolled_back',
          update_target: V3,
        });
      }
      const canaryIds = new Set(canaries.map((d) => d.device_id));
      for (const g of gateways) {
        if (canaryIds.has(g.id)) {
          // The updater's own rollback: installed 3.0.0, switched, the agent never became healthy, switched back
          // within the bake time (plus a restart), with the reason.
          const mine = g.statuses.filter((s) => s.target === V3);
          const baking = mine.find((s) => s.state === 'baking' || s.state === 'switching');
          const back = mine.find((s) => s.state === 'rolled_back');
          expect(baking, `${g.id}: ${JSON.stringify(g.statuses)}`).toBeDefined();
          expect(back, `${g.id}: ${JSON.stringify(g.statuses)}`).toBeDefined();
          expect(back!.current).toBe(V2);
          expect(back!.reason).toMatch(/never healthy/);
          const took = (back!.at - baking!.at) / 1000;
          console.log(`[updater-e2e] ${g.id}: back on 2.0.0 ${took.toFixed(1)} s after switching to 3.0.0`);
          expect(took).toBeLessThanOrEqual(BAKE_SECONDS + 15);
          // What was installed and run is the broken build: complete by its manifest, without better-sqlite3.
          // (Its crash message is not asserted: at load 30 the v3 process may not finish loading within the
          // bake before the updater switches back, which is the point.)
          expect(JSON.parse(readFileSync(join(g.releases, V3, 'manifest.json'), 'utf8'))).toMatchObject({
            version: V3,
          });
          expect(existsSync(join(g.releases, V3, 'node_modules', 'better-sqlite3')), g.id).toBe(false);
          expect(existsSync(join(g.releases, V3, 'node_modules', 'onnxruntime-node')), g.id).toBe(true);
          console.log(
            `[updater-e2e] ${g.id}: 3.0.0 ${/Cannot find package 'better-sqlite3'/.test(g.agentOutput) ? 'crashed at start (better-sqlite3 missing)' : 'never got to answer'}`,
          );
        } else {
          expect(
            g.requests.map((q) => q.version),
            g.id,
          ).not.toContain(V3);
          expect(
            g.statuses.filter((s) => s.target === V3),
            g.id,
          ).toEqual([]);
        }
        expect(g.currentLink(), g.id).toBe(V2);
        await expect.poll(() => g.healthyOn(V2), { timeout: 30_000 }).toBe(true);
      }
      expect((await cloud.registry.listDevices('acme')).map((d) => d.agent_version)).toEqual(
        IDS.map(() => V2),
      );
      // The canaries' events, kept in the outbox through the crash loop, and new ones after: none lost.
      for (const g of gateways) {
        const last = g.statuses[g.statuses.length - 1]!.at;
        await expect
          .poll(async () => (await eventsOf(g.id, new Date(last))).length, { timeout: 60_000 })
          .toBeGreaterThan(0);
      }
      await expectNoneLost();
    }, 900_000);
  },
);
