import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { stopChild, waitForExit } from './processes.js';

/**
 * The lifecycle every launched test server shares (nats-server, redis-server): one child process at a time,
 * a working directory it may own, and stop / kill -9 / restart-on-the-same-port / dispose. Subclasses start
 * the process in `launch()` and set `child` and `ctx`.
 */
export abstract class ServerProcess<Ctx extends { dir: string }> {
  protected child: ChildProcess | undefined;
  protected ownsDir = false;
  protected ctx: Ctx | undefined;

  protected abstract launch(): Promise<void>;

  /** The pid of the running process (undefined when stopped), for resource figures from /proc. */
  get pid(): number | undefined {
    const c = this.child;
    return c && c.exitCode === null && c.signalCode === null ? c.pid : undefined;
  }

  /** SIGTERM, then SIGKILL after a grace period. */
  async stop(): Promise<void> {
    if (this.child) await stopChild(this.child);
    this.child = undefined;
  }

  /** Kill -9 (no graceful shutdown), for fault tests. */
  async kill(): Promise<void> {
    if (!this.child?.pid) return;
    this.child.kill('SIGKILL');
    await waitForExit(this.child, 5_000);
    this.child = undefined;
  }

  /** Stop, then start again on the same port and directory. */
  async restart(): Promise<void> {
    await this.stop();
    await this.launch();
  }

  async dispose(): Promise<void> {
    await this.stop();
    if (this.ownsDir && this.ctx) rmSync(this.ctx.dir, { recursive: true, force: true });
  }
}
