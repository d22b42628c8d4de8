import { mkdirSync, readFileSync, writeFileSync, createWriteStream } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Kysely } from 'kysely';
import { ensureDevPki, issueRouteCert } from '@vigil/certs';
import { createDb, FleetRegistry } from '@vigil/cloud';
import {
  createDatabase,
  NatsCluster,
  PostgresCluster,
  ProcessRegistry,
  spawnCloud,
  freePort,
  type CloudProcess,
} from '@vigil/devservices';
import { FaultAgents } from './agents.js';
import { checkStreams } from './fault.js';
import { recoveryOf, type Sample } from './recovery.js';
import {
  CLUSTER_FAULT_KINDS,
  type ClusterFaultKind,
  type FaultRecovery,
  type FaultResult,
} from './verdict.js';
import { verifyEvents } from './verify.js';

/*
 * The fault test's cluster mode (issue #17): agents given every node's URL produce to a `natsNodes`-node NATS
 * JetStream cluster (streams R3); `ingest` cloud processes share the durable consumer; PostgreSQL is the tool's
 * own. Faults come one at a time, in turn, after a quiet gap that gives the rate before each one:
 *   natsLeaderKill  kill -9 of the node leading EVENTS (asked of the stream's info), restarted once the cloud
 *                   commits again and then waited for until EVENTS has every replica current again
 *   ingestKill      kill -9 of one ingest process (in turn), restarted after `downForMs`
 *   pgCrash         pg_ctl -m immediate, started again after `downForMs`
 * For each: the time until the commit rate is back to half the rate before it and the rate during it
 * (recovery.ts). The end checks are the single-node run's: every acknowledged event stored once, EVENTS empty.
 * No uplink cut, freeze or agent kill here: those are the single-node run's (fault.ts), and what this mode adds is
 * what a cluster changes (a node and its stream leadership gone, a consumer shared by processes).
 */

export interface ClusterFaultOptions {
  workDir: string;
  events: number;
  agents: number;
  /** Events per second per agent. */
  rate: number;
  /** Nodes of the NATS cluster (3: R3 streams stay writable with one down). */
  natsNodes: number;
  /** Ingest processes sharing the durable consumer (at least 2: one is killed while the other carries on). */
  ingest: number;
  /** Quiet time before each fault (ms); at least 5 s of it give the rate before the fault. */
  gapMs: number;
  /** How long an ingest process and PostgreSQL stay down. */
  downForMs: number;
  /** Longest wait for a recovery before moving on (the fault is then reported as not recovered: FAIL). */
  recoverTimeoutMs: number;
  strandedRepairIntervalSeconds: number;
  timeoutMs: number;
  log: (line: string) => void;
  registry?: ProcessRegistry;
}

const root = resolve(fileURLToPath(import.meta.url), '..', '..', '..', '..', '..');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const secondsSince = (t: number): number => Math.round((Date.now() - t) / 1000);
const CONSUMING = 'ingest consuming EVENTS';
const EVENTS = 'EVENTS';

interface StreamInfo {
  cluster?: { leader?: string; replicas?: Array<{ name: string; current?: boolean; offline?: boolean }> };
  state?: { messages: number };
  error?: { code: number; description?: string };
}

async function streamInfo(nc: NatsConnection, stream: string): Promise<StreamInfo> {
  const reply = await nc.request(`$JS.API.STREAM.INFO.${stream}`, undefined, { timeout: 5_000 });
  return reply.json<StreamInfo>();
}

export async function runClusterFault(o: ClusterFaultOptions): Promise<FaultResult> {
  if (o.ingest < 2) throw new Error('cluster mode needs at least 2 ingest processes');
  if (o.natsNodes < 3) throw new Error('cluster mode needs at least 3 NATS nodes (R3 with one node down)');
  const started = Date.now();
  let phaseStart = started;
  const phases = { setup: 0, produce: 0, drain: 0, check: 0 };
  const deadline = started + o.timeoutMs;
  const registry = o.registry ?? new ProcessRegistry();
  const faults = Object.fromEntries(CLUSTER_FAULT_KINDS.map((k) => [k, 0])) as Record<
    ClusterFaultKind,
    number
  >;
  const recoveries: FaultRecovery[] = [];
  const devices = Array.from({ length: o.agents }, (_, i) => ({
    tenantId: 'fault',
    siteId: 'lab',
    deviceId: `agent-${i + 1}`,
  }));
  const pkiDir = join(o.workDir, 'pki');
  const pki = ensureDevPki(pkiDir, { devices, services: ['cloud'] });
  const svc = pki.services.cloud!;
  const route = issueRouteCert(
    { certPem: readFileSync(pki.caCert, 'utf8'), keyPem: readFileSync(pki.caKey, 'utf8') },
    { commonName: 'nats-route', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] },
  );
  writeFileSync(join(pkiDir, 'route.crt'), route.certPem);
  writeFileSync(join(pkiDir, 'route.key'), route.keyPem, { mode: 0o600 });
  const cloudDir = join(o.workDir, 'cloud');
  mkdirSync(cloudDir, { recursive: true });
  const natsLog = createWriteStream(join(o.workDir, 'nats-cluster.log'), { flags: 'a' });
  const cleanups: Array<() => Promise<void>> = [];
  const cleanup = async (): Promise<void> => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    cleanups.length = 0;
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    void cleanup()
      .finally(() => registry.killAll())
      .finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  const timedOut = (what: string): void => {
    if (Date.now() > deadline) throw new Error(`fault run timed out ${what}`);
  };
  try {
    const cluster = new NatsCluster({
      size: o.natsNodes,
      registry,
      tls: { caFile: pki.caCert, certFile: pki.natsServer.cert, keyFile: pki.natsServer.key },
      routeTls: {
        caFile: pki.caCert,
        certFile: join(pkiDir, 'route.crt'),
        keyFile: join(pkiDir, 'route.key'),
      },
      onLog: (node, l) => natsLog.write(`${node} ${l}\n`),
    });
    cleanups.push(async () => {
      await cluster.dispose();
      natsLog.end();
    });
    await cluster.start(120_000);
    const pg = new PostgresCluster({ dir: join(o.workDir, 'pg'), registry });
    await pg.start();
    cleanups.push(() => pg.stop('immediate'));
    const database = await createDatabase(pg.url, 'vigil_fault');

    const cloudConfig = (httpPort: number) => ({
      http: { port: httpPort },
      api: { enabled: false },
      tracing: { enabled: false },
      database: { url: database.url },
      nats: { servers: cluster.urls, tls: { caFile: pki.caCert, certFile: svc.cert, keyFile: svc.key } },
      streams: { replicas: 3 },
      ingest: { strandedRepairIntervalSeconds: o.strandedRepairIntervalSeconds },
      integrations: { enabled: false },
      log: { level: 'info' },
    });
    interface Slot {
      name: string;
      port: number;
      proc: CloudProcess | undefined;
      consuming: boolean;
      starts: number;
      lastSpawn: number;
      /** Not before this time (a killed process stays down for downForMs). */
      downUntil: number;
    }
    const slots: Slot[] = [];
    for (let i = 0; i < o.ingest; i++)
      slots.push({
        name: `ingest-${String.fromCharCode(97 + i)}`,
        port: await freePort(),
        proc: undefined,
        consuming: false,
        starts: 0,
        lastSpawn: 0,
        downUntil: 0,
      });
    const spawnSlot = (s: Slot): void => {
      s.starts++;
      s.lastSpawn = Date.now();
      s.consuming = false;
      const proc = spawnCloud(cloudDir, cloudConfig(s.port), {
        root,
        registry,
        name: `${s.name}-${s.starts}`,
        roles: ['ingest'],
        logFile: join(cloudDir, `${s.name}-${s.starts}.log`),
      });
      s.proc = proc;
      proc.waitForLog(CONSUMING, o.timeoutMs).then(
        () => (s.consuming = s.proc === proc),
        () => undefined, // exited first (PostgreSQL down at start): respawned by superviseIngest
      );
    };
    const superviseIngest = (): void => {
      const now = Date.now();
      for (const s of slots)
        if (!s.proc?.running() && now >= s.downUntil && now - s.lastSpawn > 1_000) spawnSlot(s);
    };
    cleanups.push(async () => {
      await Promise.all(slots.map((s) => s.proc?.stop() ?? Promise.resolve()));
    });
    // The first one migrates the database and creates the R3 streams; then the others.
    spawnSlot(slots[0]!);
    await slots[0]!.proc!.waitForLog(CONSUMING, 180_000);
    for (const s of slots.slice(1)) spawnSlot(s);
    await Promise.all(slots.slice(1).map((s) => s.proc!.waitForLog(CONSUMING, 180_000)));
    const db = createDb(database.url, 2) as unknown as Kysely<unknown>;
    cleanups.push(() => db.destroy());
    const fleet = new FleetRegistry(db as never);
    for (const d of devices) await fleet.registerDevice(d);
    const nc = await connect({
      servers: cluster.urls,
      tls: { caFile: pki.caCert, certFile: svc.cert, keyFile: svc.key },
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    });
    cleanups.push(() => nc.close());

    const agents = new FaultAgents({
      root,
      registry,
      dir: join(o.workDir, 'agents'),
      devices: devices.map((d) => ({ ...d, ...pki.devices[`fault/${d.deviceId}`]! })),
      caFile: pki.caCert,
      natsUrl: cluster.urls.join(','),
      events: o.events,
      rate: o.rate,
      log: o.log,
    });
    agents.startAll();
    cleanups.push(() => agents.stopAll());
    phases.setup = secondsSince(phaseStart);
    phaseStart = Date.now();

    const samples: Sample[] = [];
    let lastReport = 0;
    /** One step of the supervision loop: respawns, samples the commit count, reports, checks the deadline. */
    const step = async (what: string): Promise<void> => {
      timedOut(`${what} (${agents.acked()} of ${o.events} acknowledged; faults ${JSON.stringify(faults)})`);
      superviseIngest();
      await agents.supervise();
      samples.push({ t: Date.now(), committed: agents.committed() });
      if (Date.now() - lastReport > 5_000) {
        lastReport = Date.now();
        o.log(
          `  ${agents.acked()}/${o.events} acknowledged, ${agents.committed()} committed; faults ${JSON.stringify(faults)}`,
        );
      }
      await sleep(100);
    };
    const stepFor = async (ms: number, what: string): Promise<void> => {
      const until = Date.now() + ms;
      while (Date.now() < until) await step(what);
    };
    /** Steps until the commit rate is back (or recoverTimeoutMs); records the recovery. */
    const measure = async (kind: ClusterFaultKind, target: string, at: number): Promise<void> => {
      const until = at + o.recoverTimeoutMs;
      let r = recoveryOf(samples, at);
      while (r.recoverMs === undefined && Date.now() < until) {
        await step(`recovering from ${kind}`);
        r = recoveryOf(samples, at);
      }
      recoveries.push({ kind, target, atSecond: Math.round((at - phaseStart) / 1000), ...r });
      o.log(
        `  ${kind} (${target}): ${r.recoverMs === undefined ? 'NOT recovered' : `recovered in ${r.recoverMs} ms`}; ` +
          `${r.duringPerSecond}/s during, ${r.baselinePerSecond}/s before`,
      );
    };
    /** Steps until EVENTS has a leader and every replica online and current (after a node came back). */
    const waitForReplicas = async (): Promise<void> => {
      const until = Date.now() + o.recoverTimeoutMs;
      while (Date.now() < until) {
        const info = await streamInfo(nc, EVENTS).catch(() => undefined);
        const reps = info?.cluster?.replicas ?? [];
        if (
          info?.cluster?.leader &&
          reps.length === o.natsNodes - 1 &&
          reps.every((p) => p.current && !p.offline)
        )
          return;
        await step('waiting for the EVENTS replicas');
      }
      o.log('  EVENTS replicas not all current yet; going on');
    };

    // The gap before the first fault starts once events flow (agent processes take a while to start).
    while (agents.committed() === 0) await step('waiting for the first commits');
    let turn = 0;
    let ingestTurn = 0;
    const allKinds = (): boolean => CLUSTER_FAULT_KINDS.every((k) => faults[k] > 0);
    while (!allKinds() || !agents.produced()) {
      await stepFor(Math.max(o.gapMs, 5_000), 'between faults');
      if (agents.produced()) {
        if (!allKinds())
          o.log('  all produced before every fault kind happened: lower --rate or raise --events');
        break;
      }
      // Once every kind happened, no fault starts that production would outlast by less than recoverTimeoutMs / 2:
      // with nothing left to commit, its recovery could not be seen.
      const perSecond = recoveryOf(samples, Date.now()).baselinePerSecond;
      const left = o.events - agents.acked();
      if (allKinds() && perSecond > 0 && (left / perSecond) * 1000 < o.recoverTimeoutMs / 2) {
        o.log(`  ${left} events left to produce (${perSecond}/s): no more faults`);
        while (!agents.produced()) await step('producing the rest');
        break;
      }
      const kind = CLUSTER_FAULT_KINDS[turn++ % CLUSTER_FAULT_KINDS.length]!;
      if (kind === 'natsLeaderKill') {
        const leader = (await streamInfo(nc, EVENTS)).cluster?.leader;
        if (!leader) throw new Error('EVENTS has no leader before the fault');
        await cluster.kill(leader);
        const at = Date.now();
        faults.natsLeaderKill++;
        await measure(kind, leader, at);
        await cluster.restart(leader);
        await waitForReplicas();
      } else if (kind === 'ingestKill') {
        const s = slots[ingestTurn++ % slots.length]!;
        while (!(s.consuming && s.proc?.running())) await step(`waiting for ${s.name} to consume`);
        s.downUntil = Date.now() + o.downForMs;
        await s.proc.kill();
        const at = Date.now();
        faults.ingestKill++;
        await measure(kind, s.name, at);
      } else {
        await pg.kill();
        const at = Date.now();
        faults.pgCrash++;
        await stepFor(o.downForMs, 'PostgreSQL down');
        await pg.start();
        await measure(kind, 'postgres', at);
      }
    }
    phases.produce = secondsSince(phaseStart);
    phaseStart = Date.now();
    o.log(`  all ${agents.acked()} events acknowledged by the agents; no more faults; draining`);
    while (!agents.drained()) {
      timedOut(`while draining (outbox depths ${agents.depths()})`);
      superviseIngest();
      await agents.supervise();
      await sleep(250);
    }
    await agents.stopAll();
    phases.drain = secondsSince(phaseStart);
    phaseStart = Date.now();
    o.log('  outboxes empty; checking the streams');
    const live = slots.find((s) => s.proc?.running()) ?? slots[0]!;
    const stream = await checkStreams(o, nc, live.port, cloudDir, deadline);
    await Promise.all(slots.map((s) => s.proc?.stop() ?? Promise.resolve()));
    o.log('  checking PostgreSQL against the ack files');
    const events = await verifyEvents(db, join(o.workDir, 'agents'), o.workDir);
    phases.check = secondsSince(phaseStart);
    const result: FaultResult = {
      target: o.events,
      events,
      stream,
      faults,
      recoveries,
      phases,
      seconds: secondsSince(started),
      workDir: o.workDir,
    };
    writeFileSync(
      join(o.workDir, 'result.json'),
      JSON.stringify({ ...result, ingestStarts: slots.map((s) => s.starts) }, null, 2),
    );
    return result;
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
    await cleanup();
  }
}
