import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Tracks every child process a test or the dev stack starts so that none outlives its owner.
 *
 * Children are spawned as process-group leaders (detached) and killed as a group. Each live child is
 * also recorded as a pid file under `runDir` (env VIGIL_PROC_DIR): when a worker is killed outright
 * (test timeout, crash), the owner of the directory (vitest's global setup) reaps what is left.
 */
export class ProcessRegistry {
  private readonly live = new Map<number, ChildProcess>();
  private exitHookInstalled = false;

  constructor(private readonly runDir: string | undefined = process.env.VIGIL_PROC_DIR) {
    if (runDir) mkdirSync(runDir, { recursive: true });
  }

  spawn(command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options, detached: true });
    this.track(child, `${command} ${args.join(' ')}`);
    return child;
  }

  /** Track a child spawned elsewhere (it must be a group leader, i.e. spawned with detached: true). */
  track(child: ChildProcess, description = 'child'): void {
    const pid = child.pid;
    if (pid === undefined) return; // spawn failed; the 'error' event carries the reason
    this.live.set(pid, child);
    if (this.runDir) writeFileSync(join(this.runDir, String(pid)), description);
    child.once('exit', () => this.forget(pid));
    this.installExitHook();
  }

  /** Record a daemon that is not our child (a postmaster started by pg_ctl) so the reaper can find it. */
  recordDaemon(pid: number, description: string): void {
    if (this.runDir) writeFileSync(join(this.runDir, `${pid}.daemon`), description);
  }

  forgetDaemon(pid: number): void {
    if (this.runDir) rmSync(join(this.runDir, `${pid}.daemon`), { force: true });
  }

  killAll(): void {
    for (const pid of this.live.keys()) killGroup(pid, 'SIGKILL');
  }

  private forget(pid: number): void {
    this.live.delete(pid);
    if (this.runDir) rmSync(join(this.runDir, String(pid)), { force: true });
  }

  private installExitHook(): void {
    if (this.exitHookInstalled) return;
    this.exitHookInstalled = true;
    // 'exit' handlers must be synchronous: process.kill is.
    process.once('exit', () => this.killAll());
  }
}

export function killGroup(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    try {
      process.kill(pid, signal);
      return true;
    } catch {
      return false;
    }
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Kill every process recorded under `runDir` (left behind by crashed workers); returns what was reaped. */
export function reapRunDir(runDir: string): string[] {
  const reaped: string[] = [];
  let entries: string[];
  try {
    entries = readdirSync(runDir);
  } catch {
    return reaped;
  }
  for (const name of entries) {
    const pid = Number.parseInt(name, 10);
    if (!Number.isInteger(pid) || pid <= 1) continue;
    const file = join(runDir, name);
    const description = readFileSync(file, 'utf8');
    if (isAlive(pid)) {
      // Daemons (postmaster) are not group leaders of their own; signal the pid itself.
      // A frozen one (a fault test's SIGSTOP) acts on SIGQUIT only once continued.
      if (name.endsWith('.daemon')) {
        process.kill(pid, 'SIGCONT');
        process.kill(pid, 'SIGQUIT');
      } else killGroup(pid, 'SIGKILL');
      reaped.push(`${pid} ${description}`);
    }
    rmSync(file, { force: true });
  }
  return reaped;
}

/** Waits for a child to exit; resolves with its code/signal, or null when the timeout passes first. */
export function waitForExit(
  child: ChildProcess,
  timeoutMs: number,
): Promise<{ code: number | null; signal: NodeJS.Signals | null } | null> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(null);
    }, timeoutMs);
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      clearTimeout(timer);
      resolve({ code, signal });
    };
    child.once('exit', onExit);
  });
}

/** SIGTERM the group, then SIGKILL after `graceMs`; resolves once the child has exited. */
export async function stopChild(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  killGroup(child.pid, 'SIGCONT'); // a frozen (SIGSTOPped) process cannot act on SIGTERM
  killGroup(child.pid, 'SIGTERM');
  if (await waitForExit(child, graceMs)) return;
  killGroup(child.pid, 'SIGKILL');
  await waitForExit(child, 5_000);
}
