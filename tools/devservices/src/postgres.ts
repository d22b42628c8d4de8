import { execFile as execFileCb } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from './ports.js';
import type { ProcessRegistry } from './processes.js';

const execFile = promisify(execFileCb);

/** The newest PostgreSQL server binaries on this machine (Debian keeps them under /usr/lib/postgresql). */
export function findPostgresBinDir(): string | undefined {
  if (process.env.PG_BIN_DIR) return process.env.PG_BIN_DIR;
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], 'bin') : undefined;
}

/** True when a PostgreSQL server answers at `url` within `timeoutMs`. */
export async function canConnect(url: string, timeoutMs = 1_500): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs });
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

export interface PostgresClusterOptions {
  dir: string;
  port?: number;
  registry?: ProcessRegistry;
}

/**
 * A private PostgreSQL cluster made with the system's binaries: initdb on first start (trust auth on
 * loopback and a socket inside `dir`), pg_ctl to start and stop. Runs as the `postgres` user when we are
 * root, because PostgreSQL refuses to run as root.
 */
export class PostgresCluster {
  port = 0;
  private frozen: number[] = [];
  private readonly binDir: string;

  constructor(private readonly opts: PostgresClusterOptions) {
    const binDir = findPostgresBinDir();
    if (!binDir) {
      throw new Error(
        'PostgreSQL server binaries not found under /usr/lib/postgresql: install them (apt-get install postgresql) ' +
          'or set DATABASE_URL to an existing server',
      );
    }
    this.binDir = binDir;
  }

  get dataDir(): string {
    return join(this.opts.dir, 'data');
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  async start(): Promise<this> {
    this.port = this.port || this.opts.port || (await freePort());
    mkdirSync(this.opts.dir, { recursive: true });
    if (process.getuid?.() === 0) {
      chownSync(this.opts.dir, ...postgresIds());
      allowTraverse(dirname(this.opts.dir));
    }
    if (!existsSync(join(this.dataDir, 'PG_VERSION'))) {
      await this.run('initdb', [
        '-D',
        this.dataDir,
        '-U',
        'postgres',
        '--auth=trust',
        '-E',
        'UTF8',
        '--locale=C.UTF-8',
      ]);
    }
    const options = `-p ${this.port} -k ${this.opts.dir} -c listen_addresses=127.0.0.1 -c fsync=on`;
    await this.run('pg_ctl', [
      '-D',
      this.dataDir,
      '-o',
      options,
      '-l',
      join(this.opts.dir, 'postgres.log'),
      '-w',
      '-t',
      '30',
      'start',
    ]);
    const pid = this.postmasterPid();
    if (pid) this.opts.registry?.recordDaemon(pid, `postgres ${this.dataDir}`);
    return this;
  }

  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    this.thaw(); // a frozen postmaster would never answer pg_ctl
    const pid = this.postmasterPid();
    if (!pid) return;
    await this.run('pg_ctl', ['-D', this.dataDir, '-m', mode, '-w', 'stop']).catch(() => undefined);
    this.opts.registry?.forgetDaemon(pid);
  }

  /** Crash-stop (like a power cut for the server process), for fault tests. */
  async kill(): Promise<void> {
    await this.stop('immediate');
  }

  /**
   * A streaming replica of this (running) cluster in `dir`: pg_basebackup over loopback with -R (standby.signal
   * and primary_conninfo written for it), then started on its own port. initdb's trust rules allow replication
   * connections from 127.0.0.1.
   */
  async startReplica(opts: {
    dir: string;
    port?: number;
    registry?: ProcessRegistry;
  }): Promise<PostgresCluster> {
    const replica = new PostgresCluster({ ...opts });
    mkdirSync(opts.dir, { recursive: true });
    if (process.getuid?.() === 0) {
      chownSync(opts.dir, ...postgresIds());
      allowTraverse(dirname(opts.dir));
    }
    if (!existsSync(join(replica.dataDir, 'PG_VERSION'))) {
      await this.run('pg_basebackup', [
        '-h',
        '127.0.0.1',
        '-p',
        String(this.port),
        '-U',
        'postgres',
        '-D',
        replica.dataDir,
        '-R',
        '-X',
        'stream',
        '-c',
        'fast',
      ]);
    }
    return replica.start();
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /**
   * Freezes this cluster (SIGSTOP to its postmaster and every process it forked: a hung, not a dead, server),
   * for fault tests; returns how many processes were stopped. Only processes of this data dir's postmaster.
   */
  freeze(): number {
    const pid = this.postmasterPid();
    if (!pid) return 0;
    this.frozen = [pid, ...childPids(pid)];
    for (const p of this.frozen) signal(p, 'SIGSTOP');
    return this.frozen.length;
  }

  /** Resumes what freeze() stopped (SIGCONT); a no-op when nothing is frozen. */
  thaw(): void {
    for (const p of this.frozen) signal(p, 'SIGCONT');
    this.frozen = [];
  }

  get isFrozen(): boolean {
    return this.frozen.length > 0;
  }

  /** The postmaster's pid (its backends are its children), undefined when it is not running. */
  get pid(): number | undefined {
    return this.postmasterPid();
  }

  logs(): string {
    const file = join(this.opts.dir, 'postgres.log');
    return existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(-200).join('\n') : '';
  }

  private postmasterPid(): number | undefined {
    const file = join(this.dataDir, 'postmaster.pid');
    if (!existsSync(file)) return undefined;
    const pid = Number.parseInt(readFileSync(file, 'utf8').split('\n')[0] ?? '', 10);
    return Number.isInteger(pid) ? pid : undefined;
  }

  private async run(tool: string, args: string[]): Promise<void> {
    const binary = join(this.binDir, tool);
    const asRoot = process.getuid?.() === 0;
    try {
      if (asRoot) await execFile('runuser', ['-u', 'postgres', '--', binary, ...args], { cwd: '/' });
      else await execFile(binary, args);
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`${tool} failed: ${e.stderr || e.message}\n${this.logs()}`, { cause: err });
    }
  }
}

/** Pids whose parent is `ppid` (from /proc: PostgreSQL backends are direct children of the postmaster). */
function childPids(ppid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may hold spaces and parentheses, so parse after the last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === ppid) out.push(Number(name));
    } catch {
      // the process ended meanwhile
    }
  }
  return out;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/**
 * The postgres user must be able to reach its data dir: add search (x) permission for others on each
 * ancestor that lacks it (e.g. a 0700 mkdtemp parent). Search only: nothing becomes listable or readable.
 */
function allowTraverse(dir: string): void {
  for (let d = dir; d !== dirname(d); d = dirname(d)) {
    const mode = statSync(d).mode & 0o7777;
    if ((mode & 0o001) === 0) chmodSync(d, mode | 0o001);
  }
}

function postgresIds(): [number, number] {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  const parts = line?.split(':');
  if (!parts?.[2] || !parts[3])
    throw new Error('running as root needs a "postgres" system user (apt-get install postgresql)');
  return [Number(parts[2]), Number(parts[3])];
}

/** Replace the database name in a connection URL. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/** Creates a fresh, uniquely named database on the server at `adminUrl`; returns its URL and a dropper. */
export async function createDatabase(
  adminUrl: string,
  prefix = 'vigil_test',
): Promise<{ name: string; url: string; drop: () => Promise<void> }> {
  const name = `${prefix}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}" TEMPLATE template0 ENCODING 'UTF8'`);
  } finally {
    await admin.end();
  }
  return {
    name,
    url: withDatabase(adminUrl, name),
    drop: async () => {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}
