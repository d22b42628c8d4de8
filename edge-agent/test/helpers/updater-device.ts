import type { ChildProcess } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleEntry, programByName } from '@vigil/release';
import { freePort, registry, repoRoot, stopChild } from '@vigil/testkit';
import { expect } from 'vitest';
import type { UpdateStatus } from '../../src/updater/index.js';
import { installPackaged, SUPERVISOR } from './fake-release.js';

const agentDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const UPDATER_MAIN = join(agentDir, 'src', 'updater', 'main.ts');

/**
 * vigil-updater from source, built once into `<dir>/updater.mjs` as the release build makes the agent
 * bundle's lib/vigil-agent/updater.mjs (the same esbuild entry and options), stamped with the version it
 * reports from source. updater-process.test.ts starts the updater 27 times; one module of plain JavaScript
 * instead of the source through tsx's loader took the file from 49-59 s to 27-32 s of CPU and from 127-142 s
 * to 114-116 s (two back-to-back pairs at load 5-10).
 */
export async function buildUpdater(dir: string): Promise<string> {
  const spec = programByName('vigil-agent')!;
  const entry = spec.workers.find(([, file]) => file === 'updater.mjs')![0];
  const out = join(dir, 'updater.mjs');
  const info = { version: '0.1.0', minUpgradeFrom: '0.1.0', commit: 'source', commitTime: 0, dirty: false };
  await bundleEntry(repoRoot(), spec, info, entry, out);
  return out;
}

/**
 * One gateway for the updater tests, as the .deb lays it out: the packaged release (like /opt/vigil), the
 * updater's data directory with releases/current pointing at it, the agent's state directory with update/, a
 * supervisor playing systemd for the agent (restart on exit, SIGHUP = systemctl restart), and vigil-updater
 * itself as a real process (built by buildUpdater, or the source through tsx) whose restart command signals
 * the supervisor.
 */
export class UpdaterDevice {
  readonly stateDir: string;
  readonly dataDir: string;
  readonly releases: string;
  readonly configFile: string;
  readonly agentLog: string;
  agentPort = 0;
  supervisor: ChildProcess | undefined;
  updater: ChildProcess | undefined;
  output = '';

  constructor(
    readonly dir: string,
    private readonly packagedStage: string,
    private readonly repo: { dir: string; rootFile: string },
    /** vigil-updater built by buildUpdater; without it, the source runs through tsx. */
    private readonly updaterModule?: string,
  ) {
    this.stateDir = join(dir, 'state');
    this.dataDir = join(dir, 'updater');
    this.releases = join(this.dataDir, 'releases');
    this.configFile = join(dir, 'updater.json');
    this.agentLog = join(dir, 'agent-runs.log');
  }

  async setUp(config: Record<string, unknown> = {}): Promise<void> {
    const packaged = installPackaged(this.packagedStage, join(this.dir, 'opt-vigil'));
    mkdirSync(this.releases, { recursive: true });
    mkdirSync(join(this.stateDir, 'update'), { recursive: true });
    // What postinst does: the agent unit starts from releases/current, the packaged release at first.
    symlinkSync(packaged, join(this.releases, 'current'));
    this.agentPort = await freePort();
    this.supervisor = registry.spawn(process.execPath, [SUPERVISOR, join(this.releases, 'current')], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FAKE_AGENT_PORT: String(this.agentPort), FAKE_AGENT_LOG: this.agentLog },
    });
    this.collect(this.supervisor, 'agent');
    const { limits, health, ...rest } = config as { limits?: object; health?: object };
    writeFileSync(
      this.configFile,
      JSON.stringify({
        stateDir: this.stateDir,
        dataDir: this.dataDir,
        packagedRelease: packaged,
        repository: { kind: 'directory', dir: this.repo.dir, trustedRootFile: this.repo.rootFile },
        pollSeconds: 0.2,
        restart: { command: ['kill', '-HUP', String(this.supervisor.pid)], timeoutSeconds: 10 },
        health: {
          url: `http://127.0.0.1:${this.agentPort}/healthz`,
          bakeSeconds: 3,
          probeSeconds: 0.2,
          failAfterProbes: 3,
          ...health,
        },
        limits: { maxBundleBytes: 1024 * 1024, ...limits },
        http: { port: 0 },
        log: { level: 'info' },
        ...rest,
      }),
    );
    await expect.poll(() => this.agentVersion(), { timeout: 30_000 }).toBe('1.0.0');
  }

  private collect(child: ChildProcess, tag: string): void {
    const add = (d: Buffer): void => {
      this.output = `${this.output}[${tag}] ${d.toString()}`.slice(-200_000);
    };
    child.stdout?.on('data', add);
    child.stderr?.on('data', add);
  }

  /**
   * Starts vigil-updater: with VIGIL_UPDATER_BIN set to a release build's `bin/vigil-updater`, that program
   * (esbuild output on the bundled runtime); else the module buildUpdater made, on this Node; else the source
   * through tsx.
   */
  startUpdater(env: Record<string, string> = {}): ChildProcess {
    const bin = process.env.VIGIL_UPDATER_BIN;
    const [cmd, args] = bin
      ? [bin, ['--config', this.configFile]]
      : this.updaterModule
        ? [process.execPath, [this.updaterModule, '--config', this.configFile]]
        : [
            process.execPath,
            ['--conditions=@vigil/source', '--import', 'tsx', UPDATER_MAIN, '--config', this.configFile],
          ];
    const c = registry.spawn(cmd, args, {
      cwd: agentDir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    this.collect(c, 'updater');
    this.updater = c;
    return c;
  }

  /** What the agent writes: request.json, atomically (tmp + rename), as the contract says. */
  request(version: string, requestedAt = new Date().toISOString()): void {
    const file = join(this.stateDir, 'update', 'request.json');
    writeFileSync(
      `${file}.tmp`,
      JSON.stringify({ version, channel: 'stable', requestedAt, rolloutId: 'r-test' }),
    );
    renameSync(`${file}.tmp`, file);
  }

  status(): UpdateStatus | undefined {
    const file = join(this.stateDir, 'update', 'status.json');
    return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as UpdateStatus) : undefined;
  }

  async waitState(states: string[], timeout = 60_000): Promise<UpdateStatus> {
    await expect
      .poll(() => this.status()?.state, { timeout, interval: 100, message: this.output.slice(-4000) })
      .toSatisfy((s) => typeof s === 'string' && states.includes(s));
    return this.status()!;
  }

  /** The version of the agent process answering now, or undefined. */
  async agentVersion(): Promise<string | undefined> {
    try {
      const res = await fetch(`http://127.0.0.1:${this.agentPort}/healthz`, {
        signal: AbortSignal.timeout(2000),
      });
      return ((await res.json()) as { version?: string }).version;
    } catch {
      return undefined;
    }
  }

  currentTarget(): string {
    return readlinkSync(join(this.releases, 'current'));
  }

  /** The release `current` points at is complete: manifest.json and every file it lists, with its size. */
  currentIsComplete(): boolean {
    const ref = this.currentTarget();
    const dir = isAbsolute(ref) ? ref : join(this.releases, ref);
    const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as {
      files: { path: string; size: number }[];
    };
    return m.files.every(
      (f) => existsSync(join(dir, f.path)) && readFileSync(join(dir, f.path)).length === f.size,
    );
  }

  currentVersion(): string {
    const ref = this.currentTarget();
    const dir = isAbsolute(ref) ? ref : join(this.releases, ref);
    return (JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { version: string }).version;
  }

  async metric(name: string, labels: string): Promise<number> {
    const port = await this.updaterHttpPort();
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const m = new RegExp(`^${name}${labels.replace(/[{}]/g, '\\$&')} (\\d+)`, 'm').exec(text);
    return m ? Number(m[1]) : 0;
  }

  /** The port the (last started) updater logged; a plain loop, so that it may run inside expect.poll. */
  private async updaterHttpPort(): Promise<number> {
    for (let i = 0; i < 300 && !/"http":(\d+)/.test(this.output); i++)
      await new Promise((r) => setTimeout(r, 100));
    const all = [...this.output.matchAll(/"http":(\d+)/g)];
    if (all.length === 0) throw new Error('vigil-updater did not log its http port');
    return Number(all[all.length - 1]![1]);
  }

  async stop(): Promise<void> {
    if (this.updater) await stopChild(this.updater);
    if (this.supervisor) await stopChild(this.supervisor);
  }
}
