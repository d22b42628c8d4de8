import { mkdtempSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LogTail } from './log-tail.js';
import { freePort } from './ports.js';
import { ProcessRegistry } from './processes.js';
import { ServerProcess } from './server-process.js';

export interface RedisServerOptions {
  /** Fixed port; default: a free one (kept across restarts). */
  port?: number;
  /** Working dir (`--dir`); default: a fresh temp dir removed on dispose. */
  dir?: string;
  /** Default: env REDIS_SERVER_BIN, else `redis-server` on the PATH. */
  binary?: string;
  registry?: ProcessRegistry;
  readyTimeoutMs?: number;
  /** Extra command-line arguments appended verbatim (e.g. `['--maxmemory', '16mb']`). */
  extraArgs?: readonly string[];
  onLog?: (line: string) => void;
}

/**
 * A real redis-server on loopback for tests, ready when `start()` resolves: no persistence (`--save ''`,
 * no AOF), so `restart()` keeps the port but starts empty. The process is registered in the
 * ProcessRegistry, so a crashed test worker's server is reaped.
 */
export class RedisServer extends ServerProcess<{ port: number; dir: string }> {
  readonly logs: LogTail;
  private readonly registry: ProcessRegistry;

  constructor(private readonly opts: RedisServerOptions = {}) {
    super();
    this.registry = opts.registry ?? new ProcessRegistry();
    this.logs = new LogTail(1000, opts.onLog);
  }

  get port(): number {
    return this.context().port;
  }

  get dir(): string {
    return this.context().dir;
  }

  /** `redis://127.0.0.1:<port>`. */
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** The server's pid while it runs (e.g. to SIGSTOP it in a fault test: a hung, not a dead, Redis). */
  override get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  async start(): Promise<this> {
    if (!this.ctx) {
      const dir = this.opts.dir ?? mkdtempSync(join(tmpdir(), 'vigil-redis-'));
      this.ownsDir = this.opts.dir === undefined;
      this.ctx = { port: this.opts.port ?? (await freePort()), dir };
    }
    await this.launch();
    return this;
  }

  /** Sends PING over a plain socket; true when the server answers `+PONG`. */
  ping(timeoutMs = 1_000): Promise<boolean> {
    return pingRedis(this.port, timeoutMs);
  }

  private context(): { port: number; dir: string } {
    if (!this.ctx) throw new Error('redis-server is not started: call start() first');
    return this.ctx;
  }

  protected async launch(): Promise<void> {
    const ctx = this.context();
    const binary = this.opts.binary ?? process.env.REDIS_SERVER_BIN ?? 'redis-server';
    const args = [
      '--port',
      String(ctx.port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      ctx.dir,
      ...(this.opts.extraArgs ?? []),
    ];
    const child = this.registry.spawn(binary, args, { cwd: ctx.dir });
    this.child = child;
    this.logs.attach(child.stdout);
    this.logs.attach(child.stderr);
    const timeoutMs = this.opts.readyTimeoutMs ?? 10_000;
    const ready = await new Promise<string | null>((resolve) => {
      let settled = false;
      const timer = setTimeout(() => {
        // The log line may have been missed (another redis build, another wording): ask the server.
        void pingRedis(ctx.port, 1_000).then((ok) => done(ok ? null : `not ready after ${timeoutMs} ms`));
      }, timeoutMs);
      const onData = (chunk: Buffer | string): void => {
        if (String(chunk).includes('Ready to accept connections')) done(null);
      };
      const done = (error: string | null): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        resolve(error);
      };
      child.stdout?.on('data', onData);
      child.once('error', (err) =>
        done(
          (err as NodeJS.ErrnoException).code === 'ENOENT'
            ? `${binary} not found: install it (apt-get install redis-server) or set REDIS_SERVER_BIN`
            : err.message,
        ),
      );
      child.once('exit', (code) => done(`exited with code ${code} before it was ready`));
    });
    if (ready !== null) {
      await this.stop();
      throw new Error(
        `redis-server on port ${ctx.port} ${ready}\n--- args ---\n${args.join(' ')}\n--- log ---\n${this.logs.text()}`,
      );
    }
  }
}

/** PING a Redis on 127.0.0.1:`port` over a plain socket (no client library); true on `+PONG`. */
export function pingRedis(port: number, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let reply = '';
    const finish = (ok: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d: Buffer) => {
      reply += d.toString('latin1');
      if (reply.includes('\r\n')) finish(reply.startsWith('+PONG'));
    });
    socket.once('error', () => finish(false));
    socket.once('close', () => finish(false));
  });
}
