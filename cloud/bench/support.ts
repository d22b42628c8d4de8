// Shared harness of the cloud benchmarks (ingest, latency, media, webhooks and others): a development PKI, a
// real nats-server (mutual TLS + JetStream) in a temp dir, a fresh database on a real PostgreSQL, the real cloud
// as its own process (src/main.ts, as it runs in production), device connections and windowed JetStream
// publishing, CPU accounting from /proc, Prometheus text parsing and percentiles, and the head of each report.
// Progress goes to stderr; the benchmarks print JSON on stdout.
import { execFileSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  DiscardPolicy,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  jetstream,
  type JetStreamManager,
} from '@nats-io/jetstream';
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import { ensureDevPki, type DevPkiPaths } from '@vigil/certs';
import {
  canConnect,
  createDatabase,
  freePort,
  natsConfig,
  NatsServer,
  PostgresCluster,
  ProcessRegistry,
  stopChild,
} from '@vigil/testkit';
import { createDb, migrateToLatest } from '../src/index.js';
import type { Database } from '../src/storage/tables.js';

export const repoRoot = resolve(fileURLToPath(import.meta.url), '..', '..', '..');

export function log(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

export { stopChild };

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export const round = (x: number, digits = 2): number => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};

/** Runs a benchmark's main: exit 0 when it is done, else its error on stderr and exit 1. */
export function runMain(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      process.exit(1);
    },
  );
}

/** A UUIDv7 for the time `ms` (time-ordered, as agents make event and media ids). */
export { uuidV7 as uuidv7 } from '@vigil/testkit';

/** Options for the cloud process (startCloudProcess `proc`): with a directory, a V8 CPU profile written there. */
export function cpuProfile(dir: string | undefined): { nodeFlags?: readonly string[] } {
  return dir === undefined ? {} : { nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${dir}`] };
}

/** A ProcessRegistry that also remembers what it spawned (to read the CPU time of nats-server). */
class TrackingRegistry extends ProcessRegistry {
  readonly spawned: ChildProcess[] = [];
  override spawn(command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
    const child = super.spawn(command, args, options);
    this.spawned.push(child);
    return child;
  }
}

export interface BenchDevice {
  tenantId: string;
  siteId: string;
  deviceId: string;
}

export interface Stack {
  dir: string;
  pki: DevPkiPaths;
  nats: NatsServer;
  natsUrl: string;
  natsPid: number | undefined;
  /** The server the bench database lives on, and how it was found. */
  pgAdminUrl: string;
  pgSource: 'DATABASE_URL' | 'localhost:5432' | 'private cluster';
  databaseUrl: string;
  /** The bench's own pool on the bench database (count polls, truncates, the device registry). */
  db: Kysely<Database>;
  registry: TrackingRegistry;
  dispose(): Promise<void>;
}

export interface StackOptions {
  /**
   * Use this database (created when missing, migrated) and keep it at dispose(), so a large data set is loaded
   * once for many runs (api-load.bench.ts --database). Default: a fresh database, dropped at dispose().
   */
  keepDatabase?: string | undefined;
}

/** PKI + nats-server + a fresh (or the kept), migrated database. `dispose()` removes all of it but a kept one. */
export async function startStack(
  devices: readonly BenchDevice[],
  prefix: string,
  opts: StackOptions = {},
): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), `vigil-${prefix}-bench-`));
  const registry = new TrackingRegistry();
  const cleanups: Array<() => Promise<void>> = [];
  const dispose = async (): Promise<void> => {
    for (const c of cleanups.reverse())
      await c().catch((err: unknown) => log(`cleanup failed: ${String(err)}`));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const pki = ensureDevPki(join(dir, 'pki'), {
      devices: devices.map((d) => ({ tenantId: d.tenantId, deviceId: d.deviceId })),
      services: ['cloud', 'bench'],
    });
    const nats = new NatsServer({
      dir: join(dir, 'nats'),
      registry,
      config: natsConfig({
        tls: { caFile: pki.caCert, certFile: pki.natsServer.cert, keyFile: pki.natsServer.key },
      }),
    });
    await nats.start();
    cleanups.push(() => nats.stop());
    const natsPid = registry.spawned.at(-1)?.pid;

    let pgAdminUrl: string | undefined;
    let pgSource: Stack['pgSource'] = 'DATABASE_URL';
    if (process.env.DATABASE_URL && (await canConnect(process.env.DATABASE_URL))) {
      pgAdminUrl = process.env.DATABASE_URL;
    } else if (await canConnect('postgres://postgres@127.0.0.1:5432/postgres')) {
      pgAdminUrl = 'postgres://postgres@127.0.0.1:5432/postgres';
      pgSource = 'localhost:5432';
    } else {
      const cluster = await new PostgresCluster({ dir: join(dir, 'pg'), registry }).start();
      cleanups.push(() => cluster.stop('immediate'));
      pgAdminUrl = cluster.url;
      pgSource = 'private cluster';
    }
    const database =
      opts.keepDatabase === undefined
        ? await createDatabase(pgAdminUrl, `vigil_${prefix}_bench`)
        : await keptDatabase(pgAdminUrl, opts.keepDatabase);
    cleanups.push(() => database.drop());
    const db = createDb(database.url, 4);
    cleanups.push(() => db.destroy());
    await migrateToLatest(db as unknown as Kysely<unknown>);
    log(`stack up: nats-server ${nats.port}, database ${database.name} on ${pgSource}`);
    return {
      dir,
      pki,
      nats,
      natsUrl: `tls://localhost:${nats.port}`,
      natsPid,
      pgAdminUrl,
      pgSource,
      databaseUrl: database.url,
      db,
      registry,
      dispose,
    };
  } catch (err) {
    await dispose();
    throw err;
  }
}

/** An existing database of that name (created when missing); its drop() does nothing. */
async function keptDatabase(
  adminUrl: string,
  name: string,
): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name))
    throw new Error(`database name must match [a-z_][a-z0-9_]*: ${name}`);
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const found = await admin.query('select 1 from pg_database where datname = $1', [name]);
    if (found.rowCount === 0)
      await admin.query(`CREATE DATABASE "${name}" TEMPLATE template0 ENCODING 'UTF8'`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return { name, url: url.toString(), drop: () => Promise.resolve() };
}

/** A NATS connection with a device's (or a service's) own client certificate. */
export async function connectAs(
  stack: Stack,
  who: { device: BenchDevice } | { service: 'cloud' | 'bench' },
  name: string,
): Promise<NatsConnection> {
  const paths =
    'device' in who
      ? stack.pki.devices[`${who.device.tenantId}/${who.device.deviceId}`]
      : stack.pki.services[who.service];
  if (!paths) throw new Error(`no certificate for ${name}`);
  return connect({
    servers: [stack.natsUrl],
    name,
    tls: { caFile: stack.pki.caCert, certFile: paths.cert, keyFile: paths.key },
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
  });
}

export interface CloudProcess {
  child: ChildProcess;
  pid: number | undefined;
  httpPort: number;
  metricsText(): Promise<string>;
  logs(): string;
  stop(): Promise<void>;
}

/**
 * The real cloud (`src/main.ts --config`) as its own process, as in production: ingest role on, REST API off.
 * Resolves once /readyz answers 200 (startCloud has migrated, connected and started consuming).
 */
export async function startCloudProcess(
  stack: Stack,
  ingest: Record<string, unknown> = {},
  name = 'cloud',
  /** More top-level config sections (e.g. `media`). */
  extra: Record<string, unknown> = {},
  /** Node/V8 flags for the cloud process (e.g. `--no-maglev`), and a file that gets all its output. */
  proc: { nodeFlags?: readonly string[]; outputFile?: string | undefined } = {},
): Promise<CloudProcess> {
  const httpPort = await freePort();
  const svc = stack.pki.services.cloud!;
  const configFile = join(stack.dir, `${name}.json`);
  writeFileSync(
    configFile,
    JSON.stringify({
      http: { host: '127.0.0.1', port: httpPort },
      database: { url: stack.databaseUrl },
      nats: {
        servers: [stack.natsUrl],
        tls: { caFile: stack.pki.caCert, certFile: svc.cert, keyFile: svc.key },
      },
      api: { enabled: false },
      ingest,
      log: { level: 'warn' },
      ...extra,
    }),
  );
  // loadCloudConfig lets DATABASE_URL override database.url: the cloud must use the bench database.
  const { DATABASE_URL: _ignored, ...env } = process.env;
  const child = stack.registry.spawn(
    process.execPath,
    [
      ...(proc.nodeFlags ?? []),
      '--conditions=@vigil/source',
      '--import',
      'tsx',
      join(repoRoot, 'cloud/src/main.ts'),
      '--config',
      configFile,
    ],
    { cwd: repoRoot, env },
  );
  const lines: string[] = [];
  const keep = (chunk: Buffer | string): void => {
    for (const l of String(chunk).split('\n')) if (l.trim()) lines.push(l);
    if (lines.length > 500) lines.splice(0, lines.length - 500);
  };
  const out = proc.outputFile === undefined ? undefined : createWriteStream(proc.outputFile);
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  if (out) {
    child.stdout?.on('data', (c: Buffer) => out.write(c));
    child.stderr?.on('data', (c: Buffer) => out.write(c));
    child.on('exit', () => out.end());
  }
  const base = `http://127.0.0.1:${httpPort}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`the cloud exited during start-up:\n${lines.join('\n')}`);
    if (Date.now() > deadline) {
      await stopChild(child);
      throw new Error(`the cloud was not ready after 60 s:\n${lines.join('\n')}`);
    }
    try {
      const res = await fetch(`${base}/readyz`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  return {
    child,
    pid: child.pid,
    httpPort,
    metricsText: async () => (await fetch(`${base}/metrics`)).text(),
    logs: () => lines.join('\n'),
    stop: () => stopChild(child, 15_000),
  };
}

/** Deletes a stream; one that is not there is no error. */
export async function deleteStream(jsm: JetStreamManager, name: string): Promise<void> {
  try {
    await jsm.streams.delete(name);
  } catch (err) {
    if (!(err instanceof JetStreamApiError)) throw err;
  }
}

/**
 * A scratch stream (made anew) configured like EVENTS (streams.ts: eventsStreamConfig) on its own subjects: the
 * raw JetStream baseline the benches hold the cloud against.
 */
export async function eventsLikeStream(
  jsm: JetStreamManager,
  name: string,
  subjects: string[],
  duplicateWindowMs: number,
): Promise<void> {
  await deleteStream(jsm, name);
  await jsm.streams.add({
    name,
    subjects,
    storage: StorageType.File,
    retention: RetentionPolicy.Workqueue,
    discard: DiscardPolicy.New,
    // Smaller than EVENTS' 1 GiB: nats-server reserves max_bytes out of max_file_store (4 GB in natsConfig).
    max_bytes: 256 * 1024 * 1024,
    max_msgs: -1,
    max_age: 0,
    max_msg_size: 1024 * 1024,
    duplicate_window: nanos(duplicateWindowMs),
    num_replicas: 1,
  });
}

/**
 * JetStream-publishes every payload with msgID = its id, at most `window` awaiting their PubAck (an agent's
 * in-flight window). `t0` is the first publish (`onFirst` runs then); `seconds` from it to the last PubAck.
 */
export async function publishAll(
  nc: NatsConnection,
  subject: string,
  msgs: { ids: readonly string[]; payloads: readonly Uint8Array[] },
  opts: { window: number; timeoutMs: number; onFirst?: (() => void) | undefined },
): Promise<{ seconds: number; duplicates: number; t0: number }> {
  const js = jetstream(nc);
  let duplicates = 0;
  let first = true;
  let t0 = 0;
  await withWindow(msgs.payloads, opts.window, async (payload, i) => {
    if (first) {
      first = false;
      t0 = performance.now();
      opts.onFirst?.();
    }
    const ack = await js.publish(subject, payload, { msgID: msgs.ids[i]!, timeout: opts.timeoutMs });
    if (ack.duplicate) duplicates++;
  });
  return { seconds: (performance.now() - t0) / 1000, duplicates, t0 };
}

/** Empties the events table (all partitions; they stay) and flushes dirty pages so the next phase starts clean. */
export async function resetEvents(db: Kysely<Database>): Promise<void> {
  await sql`truncate events`.execute(db);
  await sql`checkpoint`.execute(db).catch(() => undefined); // needs superuser or pg_checkpoint: best effort
}

export async function countEvents(db: Kysely<Database>): Promise<number> {
  const { rows } = await sql<{ n: string }>`select count(*) as n from events`.execute(db);
  return Number(rows[0]?.n ?? 0);
}

// ---- machine and CPU ----

export interface MachineInfo {
  cpus: number;
  model: string;
  loadavgBefore: number[];
  loadavgAfter?: number[];
  node: string;
  postgres: string;
  postgresSettings: Record<string, string>;
  natsServer: string;
  postgresSource: string;
}

export async function machineInfo(stack: Stack): Promise<MachineInfo> {
  const { rows } = await sql<{ v: string }>`select version() as v`.execute(stack.db);
  const settings: Record<string, string> = {};
  for (const name of ['fsync', 'synchronous_commit', 'wal_level', 'shared_buffers', 'max_wal_size']) {
    const r = await sql<{ setting: string }>`select current_setting(${name}) as setting`.execute(stack.db);
    settings[name] = r.rows[0]?.setting ?? '?';
  }
  let natsServer = '?';
  try {
    natsServer = execFileSync(process.env.NATS_SERVER_BIN ?? 'nats-server', ['--version'], {
      encoding: 'utf8',
    }).trim();
  } catch {
    // reported as '?'
  }
  return {
    cpus: cpus().length,
    model: cpus()[0]?.model ?? '?',
    loadavgBefore: loadavg().map((x) => round(x)),
    node: process.version,
    postgres: rows[0]?.v ?? '?',
    postgresSettings: settings,
    natsServer,
    postgresSource: stack.pgSource,
  };
}

/**
 * The first fields of a benchmark's JSON document: its name, the command that ran it (`file` in cloud/bench)
 * and the machine, with the load average now (after the run).
 */
export function reportHead(
  benchmark: string,
  file: string,
  machine: MachineInfo,
): { benchmark: string; command: string; machine: MachineInfo } {
  const args = process.argv.slice(2).join(' ');
  return {
    benchmark,
    command: `node --conditions=@vigil/source --import tsx cloud/bench/${file} ${args}`.trim(),
    machine: { ...machine, loadavgAfter: loadavg().map((x) => round(x)) },
  };
}

let clkTck: number | undefined;
function clockTicks(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** utime + stime of a process (and its reaped children) in seconds; undefined when unknown. */
function procCpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // rest[0] is field 3; utime 14, stime 15, cutime 16, cstime 17
    return (Number(rest[11]) + Number(rest[12]) + Number(rest[13]) + Number(rest[14])) / clockTicks();
  } catch {
    return undefined;
  }
}

function machineJiffies(): { busy: number; total: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = v.reduce((a, b) => a + b, 0);
    return { busy: total - (v[3] ?? 0) - (v[4] ?? 0), total };
  } catch {
    return undefined;
  }
}

export interface CpuReport {
  /** Cores busy on the whole machine during the window (every process). */
  machineBusyCores: number | null;
  /** This process (the bench: publishers, observer, COPY driver, count polls). */
  benchCores: number;
  /** The named processes (cloud, nats-server, agents), summed per name. */
  processCores: Record<string, number | null>;
  /** machineBusyCores minus the above: PostgreSQL backends, psql, anything else on the machine. */
  otherCores: number | null;
}

/** CPU use of the machine, of this process and of the named processes between now and the call of the result. */
export function cpuWindow(named: Record<string, ReadonlyArray<number | undefined>>): () => CpuReport {
  const read = (): Record<string, number | undefined> => {
    const out: Record<string, number | undefined> = {};
    for (const [name, pids] of Object.entries(named)) {
      let sum: number | undefined = 0;
      for (const pid of pids) {
        const s = procCpuSeconds(pid);
        sum = s === undefined || sum === undefined ? undefined : sum + s;
      }
      out[name] = pids.length > 0 ? sum : undefined;
    }
    return out;
  };
  const t0 = performance.now();
  const m0 = machineJiffies();
  const self0 = process.cpuUsage();
  const p0 = read();
  return () => {
    const wall = (performance.now() - t0) / 1000;
    const m1 = machineJiffies();
    const self = process.cpuUsage(self0);
    const p1 = read();
    const ncpu = cpus().length;
    const machine =
      m0 && m1 && m1.total > m0.total ? ((m1.busy - m0.busy) / (m1.total - m0.total)) * ncpu : null;
    const bench = (self.user + self.system) / 1e6 / wall;
    const processCores: Record<string, number | null> = {};
    let known = bench;
    for (const name of Object.keys(named)) {
      const a = p0[name];
      const b = p1[name];
      const cores = a !== undefined && b !== undefined ? (b - a) / wall : null;
      processCores[name] = cores === null ? null : round(cores);
      known += cores ?? 0;
    }
    return {
      machineBusyCores: machine === null ? null : round(machine),
      benchCores: round(bench),
      processCores,
      otherCores: machine === null ? null : round(Math.max(0, machine - known)),
    };
  };
}

// ---- statistics ----

export interface Distribution {
  n: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  min: number;
}

/** Nearest-rank percentiles (ms in, ms out, rounded to 0.01). */
export function distribution(values: readonly number[]): Distribution | null {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
  return {
    n: s.length,
    mean: round(s.reduce((a, b) => a + b, 0) / s.length),
    p50: round(at(0.5)),
    p90: round(at(0.9)),
    p99: round(at(0.99)),
    max: round(s[s.length - 1]!),
    min: round(s[0]!),
  };
}

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

// ---- Prometheus text ----

/** The value of one sample line (`name{labels} value`), 0 when absent. */
export function metricValue(text: string, name: string, labels = ''): number {
  const prefix = `${name}${labels} `;
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  return line ? Number(line.slice(prefix.length)) : 0;
}

/** Sum of every sample of a counter, over all label sets. */
export function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const l of text.split('\n')) {
    if (l.startsWith(`${name} `) || l.startsWith(`${name}{`)) sum += Number(l.slice(l.lastIndexOf(' ') + 1));
  }
  return sum;
}

export interface HistogramSummary {
  count: number;
  sum: number;
  avg: number | null;
  /**
   * Upper bound of the bucket that holds the quantile (a bound, not an estimate: interpolating inside a bucket
   * misleads when, as for batch sizes, most observations sit exactly on a bound).
   */
  p50AtMost: number | null;
  p90AtMost: number | null;
  p99AtMost: number | null;
  /** Observations per bucket (not cumulative), keyed by the bucket's range. */
  perBucket: Record<string, number>;
}

export function histogram(text: string, name: string, digits = 4): HistogramSummary {
  const buckets: Array<[number, number]> = [];
  const re = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\S+)$`);
  for (const l of text.split('\n')) {
    const m = re.exec(l);
    if (m) buckets.push([m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2])]);
  }
  buckets.sort((a, b) => a[0] - b[0]);
  const count = metricValue(text, `${name}_count`);
  const sum = metricValue(text, `${name}_sum`);
  const atMost = (q: number): number | null => {
    if (count === 0) return null;
    const hit = buckets.find(([, c]) => c >= q * count);
    return hit && Number.isFinite(hit[0]) ? hit[0] : null;
  };
  const perBucket: Record<string, number> = {};
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, c] of buckets) {
    if (c > prevCount) perBucket[`(${prevLe},${le === Infinity ? '+Inf' : le}]`] = c - prevCount;
    prevLe = le;
    prevCount = c;
  }
  return {
    count,
    sum: round(sum, digits),
    avg: count > 0 ? round(sum / count, digits) : null,
    p50AtMost: atMost(0.5),
    p90AtMost: atMost(0.9),
    p99AtMost: atMost(0.99),
    perBucket,
  };
}

/** The ingest metrics of one cloud process (its registry is fresh per process: the figures are this run's). */
export function ingestMetrics(text: string): Record<string, unknown> {
  return {
    received: metricValue(text, 'vigil_cloud_ingest_events_received_total'),
    inserted: metricValue(text, 'vigil_cloud_ingest_events_inserted_total'),
    duplicates: metricValue(text, 'vigil_cloud_ingest_events_duplicate_total'),
    redeliveries: metricValue(text, 'vigil_cloud_ingest_redeliveries_total'),
    deadLettered: metricSum(text, 'vigil_cloud_ingest_dead_lettered_total'),
    errors: metricSum(text, 'vigil_cloud_ingest_errors_total'),
    receiptsSent: metricValue(text, 'vigil_cloud_ingest_receipts_sent_total'),
    batchSize: histogram(text, 'vigil_cloud_ingest_batch_size', 1),
    commitSeconds: histogram(text, 'vigil_cloud_ingest_commit_seconds', 4),
  };
}

/** Runs `fn` over `items` with at most `window` calls outstanding (the agent's in-flight window). */
export async function withWindow<T>(
  items: readonly T[],
  window: number,
  fn: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, items.length) }, worker));
}
