// The cloud as a real child process (cloud/src/main.ts with a config file), for crash tests and the fault tool:
// kill -9 it, or let a failpoint (VIGIL_FAILPOINTS, cloud/src/lib/failpoint.ts) kill it at an exact point, then
// start it again. Shared by cloud/test/support/cloud-process.ts and tools/devstack/src/fault.
import type { ChildProcess } from 'node:child_process';
import { createWriteStream, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ProcessRegistry } from './processes.js';
import { stopChild, waitForExit } from './processes.js';

export interface CloudProcess {
  child: ChildProcess;
  /** The config file it was started with. */
  configFile: string;
  /** The tail of what it wrote on stdout and stderr so far (JSON log lines; at most ~4 MB kept). */
  output(): string;
  /** Resolves when the log shows `msg` (e.g. 'ingest consuming EVENTS'); rejects if it exits first. */
  waitForLog(msg: string, timeoutMs?: number): Promise<void>;
  /** Resolves with how it ended (rejects after timeoutMs). */
  exited(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** True until it has exited. */
  running(): boolean;
  /** SIGTERM (clean stop), SIGKILL after a grace period. */
  stop(): Promise<void>;
  /** kill -9 (no shutdown at all); resolves once it has exited. */
  kill(): Promise<void>;
}

export interface SpawnCloudOptions {
  /** The repository root (the cloud runs from source: cloud/src/main.ts through tsx). */
  root: string;
  registry: ProcessRegistry;
  /** Crash points to arm (VIGIL_FAILPOINTS). */
  failpoints?: string[];
  /** Part of the config file's name, to tell several processes apart. */
  name?: string;
  /** Also append everything it writes to this file (evidence that outlives the process). */
  logFile?: string;
  /** `--role` flags (override the config's `roles`). */
  roles?: string[];
  /** Run this executable (a release bundle's `bin/vigil-cloud`) instead of cloud/src/main.ts from source. */
  command?: string;
  /** Environment of the process (default: this process's own). */
  env?: NodeJS.ProcessEnv;
}

/** Writes `config` to `<dir>/cloud-<name>-<time>.json` and starts the cloud on it. */
export function spawnCloud(
  dir: string,
  config: Record<string, unknown>,
  opts: SpawnCloudOptions,
): CloudProcess {
  const configFile = join(dir, `cloud-${opts.name ?? 'main'}-${Date.now()}.json`);
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  const env: NodeJS.ProcessEnv = {
    ...(opts.env ?? process.env),
    VIGIL_FAILPOINTS: (opts.failpoints ?? []).join(','),
  };
  delete env.DATABASE_URL;
  delete env.VIGIL_CLOUD_CONFIG;
  delete env.VIGIL_CLOUD_ROLES;
  const args = ['--config', configFile, ...(opts.roles ?? []).flatMap((r) => ['--role', r])];
  const child = opts.command
    ? opts.registry.spawn(opts.command, args, { cwd: opts.root, env })
    : opts.registry.spawn(
        process.execPath,
        ['--conditions=@vigil/source', '--import', 'tsx', 'cloud/src/main.ts', ...args],
        { cwd: opts.root, env },
      );
  const file = opts.logFile ? createWriteStream(opts.logFile, { flags: 'a' }) : undefined;
  let out = '';
  const waiters = new Set<() => void>();
  const onData = (d: Buffer): void => {
    file?.write(d);
    out += d.toString('utf8');
    if (out.length > 4_000_000) out = out.slice(-2_000_000);
    for (const w of waiters) w();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  child.once('close', () => file?.end());
  const running = (): boolean => child.exitCode === null && child.signalCode === null;
  return {
    child,
    configFile,
    output: () => out,
    running,
    waitForLog(msg, timeoutMs = 60_000) {
      const needle = `"msg":${JSON.stringify(msg)}`;
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (out.includes(needle)) done(resolve);
          else if (!running())
            done(() => reject(new Error(`cloud exited before logging "${msg}":\n${out.slice(-4000)}`)));
        };
        const timer = setTimeout(
          () => done(() => reject(new Error(`cloud never logged "${msg}":\n${out.slice(-4000)}`))),
          timeoutMs,
        );
        const done = (f: () => void): void => {
          clearTimeout(timer);
          waiters.delete(check);
          child.off('exit', check);
          f();
        };
        waiters.add(check);
        child.on('exit', check);
        check();
      });
    },
    async exited(timeoutMs = 60_000) {
      const r = await waitForExit(child, timeoutMs);
      if (!r) throw new Error(`cloud still running after ${timeoutMs} ms:\n${out.slice(-4000)}`);
      return r;
    },
    stop: () => stopChild(child, 15_000),
    async kill() {
      if (!running()) return;
      child.kill('SIGKILL');
      await waitForExit(child, 10_000);
    },
  };
}
