// The cloud as a real child process (cloud/src/main.ts with a config file), for crash tests: kill -9 it, or let
// a failpoint (VIGIL_FAILPOINTS, cloud/src/lib/failpoint.ts) kill it at an exact point, then start it again.
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { registry, repoRoot, stopChild, waitForExit } from '@vigil/testkit';

export interface CloudProcess {
  child: ChildProcess;
  /** Everything it wrote on stdout and stderr so far (JSON log lines). */
  output(): string;
  /** Resolves when the log shows `msg` (e.g. 'ingest consuming EVENTS'); rejects if it exits first. */
  waitForLog(msg: string, timeoutMs?: number): Promise<void>;
  /** Resolves with how it ended (rejects after timeoutMs). */
  exited(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM (clean stop), SIGKILL after a grace period. */
  stop(): Promise<void>;
}

/** Writes `config` to `<dir>/cloud-<n>.json` and starts the cloud on it; `failpoints` arms crash points. */
export function spawnCloud(
  dir: string,
  config: Record<string, unknown>,
  opts: { failpoints?: string[]; name?: string } = {},
): CloudProcess {
  const file = join(dir, `cloud-${opts.name ?? 'main'}-${Date.now()}.json`);
  writeFileSync(file, JSON.stringify(config, null, 2));
  const env: NodeJS.ProcessEnv = { ...process.env, VIGIL_FAILPOINTS: (opts.failpoints ?? []).join(',') };
  delete env.DATABASE_URL;
  delete env.VIGIL_CLOUD_CONFIG;
  const child = registry.spawn(
    process.execPath,
    ['--conditions=@vigil/source', '--import', 'tsx', 'cloud/src/main.ts', '--config', file],
    { cwd: repoRoot(), env },
  );
  let out = '';
  const waiters = new Set<() => void>();
  const onData = (d: Buffer): void => {
    out += d.toString('utf8');
    if (out.length > 4_000_000) out = out.slice(-2_000_000);
    for (const w of waiters) w();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  return {
    child,
    output: () => out,
    waitForLog(msg, timeoutMs = 60_000) {
      const needle = `"msg":${JSON.stringify(msg)}`;
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (out.includes(needle)) done(resolve);
          else if (child.exitCode !== null || child.signalCode !== null)
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
  };
}
