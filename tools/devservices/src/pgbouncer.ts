import { chownSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LogTail } from './log-tail.js';
import { freePort } from './ports.js';
import { ProcessRegistry } from './processes.js';
import { ServerProcess } from './server-process.js';

export interface PgBouncerOptions {
  /** The PostgreSQL server pgbouncer forwards to, e.g. postgres://postgres@127.0.0.1:5432/postgres (trust). */
  upstreamUrl: string;
  /** Server connections per (database, user): small values force many clients to share a few connections. */
  poolSize?: number;
  poolMode?: 'transaction' | 'session';
  port?: number;
  /** Default: env PGBOUNCER_BIN, else /usr/sbin/pgbouncer (Debian), else `pgbouncer` on the PATH. */
  binary?: string;
  registry?: ProcessRegistry;
  readyTimeoutMs?: number;
  onLog?: (line: string) => void;
}

function defaultBinary(): string {
  if (process.env.PGBOUNCER_BIN) return process.env.PGBOUNCER_BIN;
  // Debian installs it in /usr/sbin, which a non-root PATH often lacks.
  return existsSync('/usr/sbin/pgbouncer') ? '/usr/sbin/pgbouncer' : 'pgbouncer';
}

/**
 * A real pgbouncer (Debian's 1.18) on a free loopback port in front of a PostgreSQL server, for tests and
 * `./dev`: every database name is forwarded as is (`*` fallback), trust auth (the local test server trusts
 * loopback), transaction pooling by default. pgbouncer refuses to run as root, so as root it drops to the
 * `postgres` user (-u), which must be able to read its directory.
 */
export class PgBouncer extends ServerProcess<{ port: number; dir: string }> {
  readonly logs: LogTail;
  private readonly registry: ProcessRegistry;

  constructor(private readonly opts: PgBouncerOptions) {
    super();
    this.registry = opts.registry ?? new ProcessRegistry();
    this.logs = new LogTail(1000, opts.onLog);
  }

  get port(): number {
    if (!this.ctx) throw new Error('pgbouncer is not started: call start() first');
    return this.ctx.port;
  }

  /** The URL of `database` through pgbouncer (same user as the upstream URL). */
  url(database: string): string {
    const u = new URL(this.opts.upstreamUrl);
    u.host = `127.0.0.1:${this.port}`;
    u.pathname = `/${database}`;
    return u.toString();
  }

  override get pid(): number | undefined {
    return this.child?.exitCode === null ? this.child.pid : undefined;
  }

  async start(): Promise<this> {
    if (!this.ctx) {
      const dir = mkdtempSync(join(tmpdir(), 'vigil-pgbouncer-'));
      this.ownsDir = true;
      this.ctx = { port: this.opts.port ?? (await freePort()), dir };
    }
    await this.launch();
    return this;
  }

  protected async launch(): Promise<void> {
    const { port, dir } = this.ctx!;
    const upstream = new URL(this.opts.upstreamUrl);
    const user = decodeURIComponent(upstream.username || 'postgres');
    const ini = join(dir, 'pgbouncer.ini');
    writeFileSync(
      ini,
      [
        '[databases]',
        `* = host=${upstream.hostname} port=${upstream.port || '5432'}`,
        '[pgbouncer]',
        'listen_addr = 127.0.0.1',
        `listen_port = ${port}`,
        'unix_socket_dir =',
        'auth_type = trust',
        `auth_file = ${join(dir, 'userlist.txt')}`,
        `pool_mode = ${this.opts.poolMode ?? 'transaction'}`,
        `default_pool_size = ${this.opts.poolSize ?? 20}`,
        'max_client_conn = 1000',
        // node-postgres sends none of these, psql and others may.
        'ignore_startup_parameters = extra_float_digits,options',
        `admin_users = ${user}`,
        '',
      ].join('\n'),
    );
    writeFileSync(join(dir, 'userlist.txt'), `"${user}" ""\n`);
    const asRoot = process.getuid?.() === 0;
    if (asRoot) {
      const ids = postgresIds();
      for (const f of [dir, ini, join(dir, 'userlist.txt')]) chownSync(f, ...ids);
    }
    const binary = this.opts.binary ?? defaultBinary();
    const args = [...(asRoot ? ['-u', 'postgres'] : []), ini];
    const child = this.registry.spawn(binary, args, { cwd: dir });
    this.child = child;
    this.logs.attach(child.stdout);
    this.logs.attach(child.stderr);
    const error = await new Promise<string | null>((resolve) => {
      const deadline = Date.now() + (this.opts.readyTimeoutMs ?? 10_000);
      let settled = false;
      const done = (e: string | null): void => {
        if (!settled) {
          settled = true;
          resolve(e);
        }
      };
      child.once('error', (err) =>
        done(
          (err as NodeJS.ErrnoException).code === 'ENOENT'
            ? `${binary} not found: install it (apt-get install pgbouncer, or ./dev setup) or set PGBOUNCER_BIN`
            : err.message,
        ),
      );
      child.once('exit', (code) => done(`exited with code ${code} before it was ready`));
      // Ready when the port accepts a connection (the log wording differs between versions).
      const probe = (): void => {
        if (settled) return;
        if (Date.now() > deadline) return done('not listening in time');
        const s = connect({ host: '127.0.0.1', port });
        s.once('connect', () => {
          s.destroy();
          done(null);
        });
        s.once('error', () => {
          s.destroy();
          setTimeout(probe, 50);
        });
      };
      probe();
    });
    if (error !== null) {
      await this.stop();
      throw new Error(`pgbouncer on port ${port} ${error}\n--- log ---\n${this.logs.text()}`);
    }
  }
}

function postgresIds(): [number, number] {
  const parts = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'))
    ?.split(':');
  if (!parts?.[2] || !parts[3]) throw new Error('pgbouncer as root needs a "postgres" system user to run as');
  return [Number(parts[2]), Number(parts[3])];
}
