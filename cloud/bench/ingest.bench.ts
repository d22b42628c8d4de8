// Cloud ingest throughput against its two raw baselines, in one run on one machine:
//   node --conditions=@vigil/source --import tsx cloud/bench/ingest.bench.ts [--events 50000] [--repeats 3] [--quick]
//        [--no-tracing] [--alert-rules N] [--only-ingest] [--cpu-prof DIR] [--ingest-config JSON]
// --alert-rules N: N enabled agency alert rules matching every event (no dwell), each to a pull-only target, so
// every ingest batch runs the alert commit hook (per-track locks, incidents, messages, the batch order wait).
// --only-ingest: skips copy and natsPublish (their ratios are then absent); for comparing alert rules on/off.
// --cpu-prof DIR: every cloud process writes a V8 CPU profile into DIR when it stops (node --cpu-prof).
// --ingest-config JSON: the cloud's `ingest` config section (e.g. '{"commitsInFlight":4}'), to compare settings.
// --quick: 5000 events, 1 repeat (a smoke run). Env: DATABASE_URL (a server to create the bench database on;
// default postgres://postgres@127.0.0.1:5432/postgres, else a private cluster in a temp dir), NATS_SERVER_BIN.
// Prints ONE JSON document on stdout; progress on stderr.
//
// Setup: a dev PKI, nats-server with mutual TLS + JetStream (temp dir, free port), a fresh database (migrated,
// day partitions created beforehand), one registered device. Each repeat makes N new events (UUIDv7 ids, the
// device's subject, ~200-byte DetectionEvents, occurred_at spread over the last minutes) and runs, in order:
//   copy         `psql -c "\copy events (<the columns ingest inserts>) from <csv>"`: the same N rows, built by
//                the cloud's own validateEvent from the same bytes (payload as \x hex). One COPY, one transaction.
//                rows/s over the psql wall time (psql's own \timing is reported too)
//   natsPublish  JetStream publish of the same N encoded events, with msgID, from the device's own connection
//                into a scratch stream configured like EVENTS (file storage, same duplicate window), at most
//                --window (512) publishes awaiting their PubAck: msgs/s from the first publish to the last PubAck
//   ingest       the real cloud as its own process (src/main.ts; ingest role, API off, default batch 500), the
//                same publishes as natsPublish into EVENTS; events/s from the first publish until
//                `select count(*) from events` = N (polled every 100 ms), ratios to copy and natsPublish, and the
//                cloud's own ingest metrics from its /metrics (batch size and commit-seconds histograms)
//   ingestDrain  the same N events published into EVENTS with no cloud running, then a fresh cloud drains them:
//                events/s from its first INSERT transaction to count = N, ratio to copy (the cloud's own rate,
//                not bound by the publisher as `ingest` is on a loaded machine)
// Between phases events is truncated (partitions kept) and a CHECKPOINT is taken; the scratch stream is deleted;
// before each ingest phase EVENTS and DEAD_LETTER are deleted (the cloud recreates them), and the cloud process
// is fresh, so its metrics are that phase's alone. Every phase reports the CPU it used, per process.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { sql } from 'kysely';
import { DetectionEvent, Priority, subjectFor, TrackPhase } from '@vigil/proto';
import {
  DEAD_LETTER_STREAM,
  EVENTS_STREAM,
  FleetRegistry,
  ensureIngestConsumer,
  ensureStreams,
  parseCloudConfig,
  validateEvent,
  type CloudConfig,
} from '../src/index.js';
import { AlertStore } from '../src/alerts/store.js';
import type { NewEvent } from '../src/events/store.js';
import {
  connectAs,
  countEvents,
  cpuProfile,
  cpuWindow,
  deleteStream,
  eventsLikeStream,
  ingestMetrics,
  log,
  machineInfo,
  median,
  publishAll as publishWindowed,
  reportHead,
  resetEvents,
  round,
  runMain,
  sleep,
  startCloudProcess,
  startStack,
  uuidv7,
  type BenchDevice,
  type CpuReport,
  type Stack,
} from './support.js';

const { values } = parseArgs({
  options: {
    events: { type: 'string' },
    repeats: { type: 'string' },
    window: { type: 'string', default: '512' },
    quick: { type: 'boolean', default: false },
    // Cloud tracing off (config tracing.enabled: false), to measure what the ingest spans cost.
    'no-tracing': { type: 'boolean', default: false },
    'alert-rules': { type: 'string', default: '0' },
    'only-ingest': { type: 'boolean', default: false },
    'cpu-prof': { type: 'string' },
    'ingest-config': { type: 'string', default: '{}' },
  },
});
const INGEST_CONFIG = JSON.parse(values['ingest-config']) as Record<string, unknown>;
const CLOUD_PROC = cpuProfile(values['cpu-prof']);
const ALERT_RULES = Number(values['alert-rules']);
if (!Number.isInteger(ALERT_RULES) || ALERT_RULES < 0 || ALERT_RULES > 50)
  throw new Error(`--alert-rules must be 0-50: ${values['alert-rules']}`);
const TRACING = !values['no-tracing'];
const N = Number(values.events ?? (values.quick ? 5_000 : 50_000));
const REPEATS = Math.max(1, Number(values.repeats ?? (values.quick ? 1 : 3)));
const WINDOW = Math.max(1, Number(values.window));
if (!Number.isInteger(N) || N < 1) throw new Error(`--events must be a positive integer: ${values.events}`);

const device: BenchDevice = { tenantId: 'bench', siteId: 'lab', deviceId: 'dev-1' };
const subject = subjectFor(device.tenantId, device.deviceId, 'evt', 'cam1');
const RAW_STREAM = 'BENCH_RAW';
/** Same number of tokens and about the same length as the device subject, outside EVENTS' subjects. */
const rawSubject = `bench.raw.${device.tenantId}.${device.deviceId}.evt.cam1`;
const LABELS = ['person', 'car', 'bicycle', 'dog'];
const PHASES = [TrackPhase.TRACK_PHASE_START, TrackPhase.TRACK_PHASE_UPDATE, TrackPhase.TRACK_PHASE_END];

interface Batch {
  ids: string[];
  payloads: Uint8Array[];
  rows: NewEvent[];
  bytes: number;
}

/** N events as an agent builds them (occurred_at 5 ms apart, ending now), and the rows ingest would insert. */
function makeBatch(
  n: number,
  limits: Pick<CloudConfig['ingest'], 'acceptPastDays' | 'acceptFutureHours'>,
): Batch {
  const end = Date.now();
  const ids: string[] = [];
  const payloads: Uint8Array[] = [];
  const rows: NewEvent[] = [];
  let bytes = 0;
  const now = new Date();
  for (let i = 0; i < n; i++) {
    const at = new Date(end - (n - i) * 5);
    const id = uuidv7(at.getTime());
    const track = Math.floor(i / 3);
    const payload = DetectionEvent.encode(
      DetectionEvent.fromPartial({
        eventId: id,
        tenantId: device.tenantId,
        siteId: device.siteId,
        deviceId: device.deviceId,
        cameraId: 'cam1',
        occurredAt: at,
        trackId: `t-${track}`,
        phase: PHASES[i % 3]!,
        label: LABELS[track % LABELS.length]!,
        score: 0.5 + (i % 50) / 100,
        box: { x: 0.1, y: 0.2, w: 0.3, h: 0.4 },
        zones: ['door'],
        model: { name: 'yolox-nano', sha256: 'ab'.repeat(32) },
        priority: Priority.PRIORITY_NORMAL,
        attributes: { duration_ms: String(i % 1000) },
      }),
    ).finish();
    const v = validateEvent(subject, payload, i + 1, now, limits);
    if (!v.ok) throw new Error(`generated an invalid event: ${v.reason} ${v.detail}`);
    ids.push(id);
    payloads.push(payload);
    rows.push(v.row);
    bytes += payload.length;
  }
  return { ids, payloads, rows, bytes };
}

// ---- CSV for COPY (format csv: unquoted empty = NULL) ----

function pgArray(values: readonly string[]): string {
  return `{${values.map((v) => `"${v.replace(/["\\]/g, (c) => `\\${c}`)}"`).join(',')}}`;
}

function csvField(v: unknown): string {
  if (v === null || v === undefined) return '';
  let s: string;
  if (v instanceof Date) s = v.toISOString();
  else if (v instanceof Uint8Array)
    s = `\\x${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}`;
  else if (Array.isArray(v)) s = pgArray(v as string[]);
  else if (typeof v === 'string') s = v;
  else if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') s = String(v);
  else s = JSON.stringify(v);
  return `"${s.replace(/"/g, '""')}"`;
}

function writeCsv(path: string, rows: readonly NewEvent[], columns: readonly string[]): void {
  const lines = rows.map((r) => columns.map((c) => csvField((r as Record<string, unknown>)[c])).join(','));
  writeFileSync(path, lines.join('\n') + '\n');
}

function runPsql(
  url: string,
  commands: string[],
): Promise<{ stdout: string; stderr: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    const args = ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', url];
    for (const c of commands) args.push('-c', c);
    const child = spawn('psql', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ stdout, stderr, code }));
  });
}

// ---- phases ----

async function phaseCopy(stack: Stack, batch: Batch, repeat: number, csv: string) {
  const columns = Object.keys(batch.rows[0]!);
  writeCsv(csv, batch.rows, columns);
  await resetEvents(stack.db);
  log(`  copy: ${N} rows via psql \\copy`);
  const stopCpu = cpuWindow({});
  const t0 = performance.now();
  const r = await runPsql(stack.databaseUrl, [
    '\\timing on',
    `\\copy events (${columns.join(', ')}) from '${csv}' with (format csv)`,
  ]);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = stopCpu();
  if (r.code !== 0) throw new Error(`psql \\copy failed (${r.code}): ${r.stderr}`);
  const rows = await countEvents(stack.db);
  if (rows !== N) throw new Error(`copy stored ${rows} rows, expected ${N}`);
  const m = /Time: ([\d.]+) ms/.exec(r.stdout);
  const psqlMs = m ? Number(m[1]) : null;
  await resetEvents(stack.db);
  return {
    name: 'copy',
    repeat,
    rows: N,
    columns: columns.length,
    seconds: round(seconds, 3),
    rowsPerSec: Math.round(N / seconds),
    psqlTimingMs: psqlMs,
    rowsPerSecPsqlTiming: psqlMs ? Math.round(N / (psqlMs / 1000)) : null,
    cpu,
  };
}

/** Publishes every payload with msgID = event id, `WINDOW` outstanding; returns the seconds to the last PubAck. */
const publishAll = (nc: NatsConnection, subj: string, batch: Batch, onFirst?: () => void) =>
  publishWindowed(nc, subj, batch, { window: WINDOW, timeoutMs: 30_000, onFirst });

async function phaseNats(
  stack: Stack,
  batch: Batch,
  repeat: number,
  jsm: JetStreamManager,
  dupWindowS: number,
) {
  await eventsLikeStream(jsm, RAW_STREAM, ['bench.raw.>'], dupWindowS * 1000);
  const nc = await connectAs(stack, { device }, 'bench-device-raw');
  try {
    log(`  natsPublish: ${N} JetStream publishes, window ${WINDOW}`);
    const stopCpu = cpuWindow({ natsServer: [stack.natsPid] });
    const r = await publishAll(nc, rawSubject, batch);
    const cpu = stopCpu();
    const info = await jsm.streams.info(RAW_STREAM);
    if (info.state.messages !== N)
      throw new Error(`scratch stream holds ${info.state.messages}, expected ${N}`);
    return {
      name: 'natsPublish',
      repeat,
      msgs: N,
      window: WINDOW,
      seconds: round(r.seconds, 3),
      msgsPerSec: Math.round(N / r.seconds),
      duplicates: r.duplicates,
      cpu,
    };
  } finally {
    await nc.close();
    await deleteStream(jsm, RAW_STREAM);
  }
}

/** Empties the alert tables and, with --alert-rules, makes the rules (before a cloud starts: no rules cache). */
async function seedAlertRules(stack: Stack): Promise<void> {
  await sql`delete from alert_messages`.execute(stack.db);
  await sql`delete from alert_incidents`.execute(stack.db);
  await sql`delete from webhook_outbox`.execute(stack.db);
  if (ALERT_RULES === 0) return;
  const have = await sql<{ n: number }>`select count(*)::int as n from alert_rules`.execute(stack.db);
  if ((have.rows[0]?.n ?? 0) > 0) return;
  const store = new AlertStore(stack.db);
  const { target } = await store.createTarget({
    tenantId: device.tenantId,
    name: 'bench-feed',
    url: null,
    auth: 'feed',
    delivery: 'pull',
    createdBy: 'bench',
  });
  for (let i = 0; i < ALERT_RULES; i++)
    await store.createRule({
      tenantId: device.tenantId,
      name: `bench-${i}`,
      match: {},
      cap: { event: 'Intrusion', urgency: 'Immediate', severity: 'Severe', certainty: 'Observed' },
      targetIds: [target.id],
      createdBy: 'bench',
    });
}

async function phaseIngest(
  stack: Stack,
  batch: Batch,
  repeat: number,
  jsm: JetStreamManager,
  baseline: { copy: number; nats: number },
) {
  await resetEvents(stack.db);
  await seedAlertRules(stack);
  await deleteStream(jsm, EVENTS_STREAM);
  await deleteStream(jsm, DEAD_LETTER_STREAM);
  const cloud = await startCloudProcess(
    stack,
    INGEST_CONFIG,
    `cloud-${repeat}`,
    { tracing: { enabled: TRACING } },
    CLOUD_PROC,
  );
  const nc = await connectAs(stack, { device }, 'bench-device');
  try {
    await new FleetRegistry(stack.db).registerDevice(device);
    log(`  ingest: ${N} events through the cloud (pid ${cloud.pid})`);
    let stopCpu: (() => CpuReport) | undefined;
    let cpuWhilePublishing: CpuReport | undefined;
    let publishError: unknown;
    let publishDone = false;
    const pub = publishAll(nc, subject, batch, () => {
      stopCpu = cpuWindow({ cloud: [cloud.pid], natsServer: [stack.natsPid] });
    }).then(
      (r) => {
        publishDone = true;
        cpuWhilePublishing = stopCpu?.();
        return r;
      },
      (err: unknown) => {
        publishError = err;
        return undefined;
      },
    );
    // Poll until every row is there (a poll may run before the first publish: t0 is the first publish).
    const deadline = Date.now() + 600_000;
    for (;;) {
      const rows = await countEvents(stack.db);
      if (rows >= N) break;
      if (publishError !== undefined) throw new Error('publishing failed', { cause: publishError });
      if (Date.now() > deadline) throw new Error(`ingest timed out at ${rows} of ${N} rows\n${cloud.logs()}`);
      await sleep(100);
    }
    const tEnd = performance.now();
    const cpu = stopCpu!();
    const r = await pub;
    if (!r || !publishDone) throw new Error(`publishing failed: ${String(publishError)}`);
    const publishSeconds = r.seconds;
    const seconds = (tEnd - r.t0) / 1000;
    const metricsText = await cloud.metricsText();
    const metrics = ingestMetrics(metricsText);
    const { rows: lag } = await sql<{ first: Date; last: Date }>`
      select min(received_at) as first, max(received_at) as last from events`.execute(stack.db);
    const eventsPerSec = N / seconds;
    return {
      name: 'ingest',
      repeat,
      events: N,
      window: WINDOW,
      seconds: round(seconds, 3),
      eventsPerSec: Math.round(eventsPerSec),
      ratioToCopy: round(eventsPerSec / baseline.copy, 3),
      ratioToNatsPublish: round(eventsPerSec / baseline.nats, 3),
      publishSeconds: round(publishSeconds, 3),
      publishMsgsPerSec: Math.round(N / publishSeconds),
      drainAfterLastPubAckSeconds: round(seconds - publishSeconds, 3),
      publishDuplicates: r.duplicates,
      firstToLastTransactionStartSeconds: lag[0]
        ? round((new Date(lag[0].last).getTime() - new Date(lag[0].first).getTime()) / 1000, 3)
        : null,
      metrics,
      cpuWhilePublishing: cpuWhilePublishing ?? null,
      cpu,
    };
  } finally {
    await nc.close();
    await cloud.stop();
    // EVENTS and DEAD_LETTER reserve 2 GiB of the server's file store: make room for the next scratch stream.
    await deleteStream(jsm, EVENTS_STREAM);
    await deleteStream(jsm, DEAD_LETTER_STREAM);
  }
}

/**
 * The cloud's own ingest rate, whatever the publisher manages: the N events are published into EVENTS first
 * (the consumer exists, no cloud runs), then a fresh cloud drains them. events/s from the start of its first
 * INSERT transaction (min(received_at), PostgreSQL's clock on this machine) until `count(*)` = N (polled every
 * 50 ms). On a loaded machine the live phase above is bound by the publisher (its rate is natsPublish's); this
 * is the figure to hold against COPY of the same rows.
 */
async function phaseDrain(
  stack: Stack,
  batch: Batch,
  repeat: number,
  jsm: JetStreamManager,
  defaults: CloudConfig,
  baseline: { copy: number },
) {
  await resetEvents(stack.db);
  await seedAlertRules(stack);
  await deleteStream(jsm, EVENTS_STREAM);
  await deleteStream(jsm, DEAD_LETTER_STREAM);
  await ensureStreams(jsm, defaults);
  await ensureIngestConsumer(jsm, defaults);
  await new FleetRegistry(stack.db).registerDevice(device);
  const nc = await connectAs(stack, { device }, 'bench-device-drain');
  try {
    log(`  ingestDrain: publishing ${N} events into EVENTS with no cloud running`);
    await publishAll(nc, subject, batch);
  } finally {
    await nc.close();
  }
  const cloud = await startCloudProcess(
    stack,
    INGEST_CONFIG,
    `cloud-drain-${repeat}`,
    { tracing: { enabled: TRACING } },
    CLOUD_PROC,
  );
  try {
    log(`  ingestDrain: cloud (pid ${cloud.pid}) drains them`);
    const stopCpu = cpuWindow({ cloud: [cloud.pid], natsServer: [stack.natsPid] });
    const deadline = Date.now() + 600_000;
    for (;;) {
      const rows = await countEvents(stack.db);
      if (rows >= N) break;
      if (Date.now() > deadline) throw new Error(`drain timed out at ${rows} of ${N} rows\n${cloud.logs()}`);
      await sleep(50);
    }
    const doneAt = Date.now();
    const cpu = stopCpu();
    const { rows } = await sql<{ first: Date }>`select min(received_at) as first from events`.execute(
      stack.db,
    );
    const seconds = (doneAt - new Date(rows[0]!.first).getTime()) / 1000;
    const eventsPerSec = N / seconds;
    return {
      name: 'ingestDrain',
      repeat,
      events: N,
      seconds: round(seconds, 3),
      eventsPerSec: Math.round(eventsPerSec),
      ratioToCopy: round(eventsPerSec / baseline.copy, 3),
      metrics: ingestMetrics(await cloud.metricsText()),
      cpu,
    };
  } finally {
    await cloud.stop();
    await deleteStream(jsm, EVENTS_STREAM);
    await deleteStream(jsm, DEAD_LETTER_STREAM);
  }
}

// ---- main ----

async function main(): Promise<void> {
  const stack = await startStack([device], 'ingest');
  const inspector = await connectAs(stack, { service: 'bench' }, 'bench-inspector');
  try {
    const machine = await machineInfo(stack);
    const jsm = await jetstreamManager(inspector);
    // The cloud's defaults (config/schema.ts), as the cloud process will have them: validation limits, dedup window.
    const defaults = parseCloudConfig({
      database: { url: stack.databaseUrl },
      nats: { servers: [stack.natsUrl], tls: { caFile: 'ca', certFile: 'cert', keyFile: 'key' } },
      api: { enabled: false },
    });
    const limits = defaults.ingest;
    const dupWindowS = defaults.streams.duplicateWindowSeconds;
    const results: Array<Record<string, unknown>> = [];
    const csv = join(stack.dir, 'events.csv');
    for (let repeat = 1; repeat <= REPEATS; repeat++) {
      log(`repeat ${repeat}/${REPEATS}: making ${N} events`);
      const batch = makeBatch(N, limits);
      for (const day of new Set(batch.rows.map((r) => r.occurred_at.toISOString().slice(0, 10))))
        await sql`select vigil_ensure_event_partition(${day}::date)`.execute(stack.db);
      const only = values['only-ingest'];
      const copy = only ? { name: 'copy', rowsPerSec: NaN } : await phaseCopy(stack, batch, repeat, csv);
      const nats = only
        ? { name: 'natsPublish', msgsPerSec: NaN }
        : await phaseNats(stack, batch, repeat, jsm, dupWindowS);
      const ingest = await phaseIngest(stack, batch, repeat, jsm, {
        copy: copy.rowsPerSec,
        nats: nats.msgsPerSec,
      });
      const drain = await phaseDrain(stack, batch, repeat, jsm, defaults, { copy: copy.rowsPerSec });
      results.push({ ...copy, payloadBytesAvg: round(batch.bytes / N, 1) }, nats, ingest, drain);
      log(
        `  -> copy ${copy.rowsPerSec} rows/s, natsPublish ${nats.msgsPerSec} msgs/s, ingest ${ingest.eventsPerSec} events/s, drain ${drain.eventsPerSec} events/s`,
      );
    }
    const of = (name: string, key: string): number =>
      median(results.filter((r) => r.name === name).map((r) => r[key] as number));
    const copyMed = of('copy', 'rowsPerSec');
    const natsMed = of('natsPublish', 'msgsPerSec');
    const ingestMed = of('ingest', 'eventsPerSec');
    const drainMed = of('ingestDrain', 'eventsPerSec');
    const doc = {
      ...reportHead('cloud ingest throughput', 'ingest.bench.ts', machine),
      config: {
        events: N,
        repeats: REPEATS,
        window: WINDOW,
        devices: 1,
        tracing: TRACING,
        alertRules: ALERT_RULES,
        cloudIngest: { ...defaults.ingest, ...INGEST_CONFIG },
        cloudStreams: { ...defaults.streams },
      },
      summary: {
        medianOf: REPEATS,
        copyRowsPerSec: copyMed,
        natsPublishMsgsPerSec: natsMed,
        ingestEventsPerSec: ingestMed,
        ratioIngestToCopy: round(ingestMed / copyMed, 3),
        ratioIngestToNatsPublish: round(ingestMed / natsMed, 3),
        ingestDrainEventsPerSec: drainMed,
        ratioDrainToCopy: round(drainMed / copyMed, 3),
      },
      results,
    };
    process.stdout.write(JSON.stringify(doc, null, 2) + '\n');
  } finally {
    await inspector.close();
    await stack.dispose();
  }
}

runMain(main);
