import { randomBytes } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  readdirSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { sql, type Kysely } from 'kysely';
import { ensureDevPki } from '@vigil/certs';
import { createDb, FleetRegistry } from '@vigil/cloud';
import {
  createDatabase,
  freePort,
  natsConfig,
  NatsServer,
  PostgresCluster,
  ProcessRegistry,
  spawnCloud,
  type CloudProcess,
} from '@vigil/devservices';
import { FaultAgents } from './agents.js';
import { CuttableProxy } from './proxy.js';
import { FAULT_KINDS, type FaultKind, type FaultResult, type StreamCounts } from './verdict.js';
import { WebhookReceiver } from './receiver.js';
import { verifyEvents, verifyWebhook } from './verify.js';

export interface FaultOptions {
  workDir: string;
  /** Events the agents produce and acknowledge in total. */
  events: number;
  agents: number;
  /** Events per second per agent. */
  rate: number;
  /** Time between two faults of each kind (ms). Faults go on until every kind happened once and all is produced. */
  every: Record<FaultKind, number>;
  cutForMs: number;
  freezeForMs: number;
  /** How long nats-server and PostgreSQL stay down after a crash. */
  downForMs: number;
  /** The cloud's ingest.strandedRepairIntervalSeconds (short, so the end check does not wait long). */
  strandedRepairIntervalSeconds: number;
  /** Also deliver every event to a webhook receiver and check each (webhook, event) arrives. */
  webhook: boolean;
  /** Hard stop for the whole run (production, drain and checks). */
  timeoutMs: number;
  log: (line: string) => void;
  registry?: ProcessRegistry;
}

const root = resolve(fileURLToPath(import.meta.url), '..', '..', '..', '..', '..');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const secondsSince = (t: number): number => Math.round((Date.now() - t) / 1000);
const CONSUMING = 'ingest consuming EVENTS';
const REPAIRED = '"msg":"stranded messages below the ingest ack floor repaired"';
const OUTBOX_FULL = '"msg":"webhook outbox full: jobs dropped"';

/**
 * The exactly-once fault test on loopback. Agent processes (the real outbox and uplink) produce events through a
 * cuttable proxy to nats-server; the cloud (cloud/src/main.ts) runs as its own process. Meanwhile: agents, the
 * cloud and nats-server are kill -9'd, the tool's private PostgreSQL is crashed (-m immediate) and frozen
 * (SIGSTOP), the uplink is cut. Then everything drains and the end state is checked (verify.ts, verdict.ts).
 * Everything lives in `workDir` (ack files, logs, stores): the caller keeps it when the run fails.
 */
export async function runFault(o: FaultOptions): Promise<FaultResult> {
  const started = Date.now();
  let phaseStart = started;
  const phases = { setup: 0, produce: 0, drain: 0, check: 0 };
  const deadline = started + o.timeoutMs;
  const registry = o.registry ?? new ProcessRegistry();
  const faults = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
  const devices = Array.from({ length: o.agents }, (_, i) => ({
    tenantId: 'fault',
    siteId: 'lab',
    deviceId: `agent-${i + 1}`,
  }));
  const pki = ensureDevPki(join(o.workDir, 'pki'), { devices, services: ['cloud'] });
  const svc = pki.services.cloud!;
  const cloudDir = join(o.workDir, 'cloud');
  mkdirSync(cloudDir, { recursive: true });
  const natsLog = createWriteStream(join(o.workDir, 'nats-server.log'), { flags: 'a' });
  const cleanups: Array<() => Promise<void>> = [];
  const cleanup = async (): Promise<void> => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    cleanups.length = 0;
  };
  // Ctrl-C or SIGTERM: children are process-group leaders (they outlive us) and PostgreSQL is a daemon, so stop
  // them here; the process's 'exit' hook alone does not run on a signal.
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
    const nats = new NatsServer({
      dir: join(o.workDir, 'nats'),
      registry,
      onLog: (l) => natsLog.write(l + '\n'),
      config: natsConfig({
        tls: { caFile: pki.caCert, certFile: pki.natsServer.cert, keyFile: pki.natsServer.key },
      }),
    });
    await nats.start();
    cleanups.push(async () => {
      await nats.dispose();
      natsLog.end();
    });
    const proxy = new CuttableProxy(nats.port, await freePort());
    await proxy.start();
    cleanups.push(() => proxy.stop());
    // The tool's own cluster on a free port: never the machine's shared server.
    const pg = new PostgresCluster({ dir: join(o.workDir, 'pg'), registry });
    await pg.start();
    cleanups.push(() => pg.stop('immediate'));
    const database = await createDatabase(pg.url, 'vigil_fault');

    const receiver = o.webhook ? new WebhookReceiver(join(o.workDir, 'webhook-received.log')) : undefined;
    const hookUrl = await receiver?.start();
    if (receiver) cleanups.push(() => receiver.stop());
    const httpPort = await freePort();
    const cloudConfig = {
      http: { port: httpPort },
      api: { enabled: false },
      tracing: { enabled: false },
      database: { url: database.url },
      nats: {
        servers: [`tls://localhost:${nats.port}`],
        tls: { caFile: pki.caCert, certFile: svc.cert, keyFile: svc.key },
      },
      ingest: { strandedRepairIntervalSeconds: o.strandedRepairIntervalSeconds },
      log: { level: 'info' },
      integrations: {
        enabled: o.webhook,
        allowInsecureHttp: true,
        allowPrivateNetworks: true,
        // JOBS ack_wait is 2 x timeoutMs + 10 s: a job held by a killed cloud comes back after 12 s.
        timeoutMs: 1000,
        maxAttempts: 100,
        backoff: { initialMs: 100, maxMs: 1000 },
        circuit: { failures: 20, openSeconds: 1 },
      },
    };
    let cloud: { proc: CloudProcess; consuming: boolean } | undefined;
    let cloudStarts = 0;
    let lastSpawn = 0;
    const spawnIngest = (): void => {
      cloudStarts++;
      lastSpawn = Date.now();
      const proc = spawnCloud(cloudDir, cloudConfig, {
        root,
        registry,
        name: String(cloudStarts),
        logFile: join(cloudDir, `cloud-${cloudStarts}.log`),
      });
      const c = { proc, consuming: false };
      proc.waitForLog(CONSUMING, o.timeoutMs).then(
        () => (c.consuming = true),
        () => undefined, // it exited first (PostgreSQL or NATS down at start): respawned by superviseCloud
      );
      cloud = c;
    };
    /** Restarts the cloud when it is not running (killed, or exited because a dependency was down at start). */
    const superviseCloud = (): void => {
      if (!cloud?.proc.running() && Date.now() - lastSpawn > 1_000) spawnIngest();
    };
    cleanups.push(async () => {
      await cloud?.proc.stop();
    });

    spawnIngest();
    await cloud!.proc.waitForLog(CONSUMING, 120_000); // the first start also migrates the database
    const db = createDb(database.url, 2) as unknown as Kysely<unknown>;
    cleanups.push(() => db.destroy());
    const fleet = new FleetRegistry(db as never);
    for (const d of devices) await fleet.registerDevice(d);
    if (hookUrl) {
      await sql`insert into webhooks (id, tenant_id, url, secret, filter, created_by, created_at)
        values (gen_random_uuid(), 'fault', ${hookUrl}, ${randomBytes(32).toString('base64url')}, '{}'::jsonb, 'fault', now())`.execute(
        db,
      );
    }

    const agents = new FaultAgents({
      root,
      registry,
      dir: join(o.workDir, 'agents'),
      devices: devices.map((d) => ({ ...d, ...pki.devices[`fault/${d.deviceId}`]! })),
      caFile: pki.caCert,
      natsUrl: `tls://localhost:${proxy.port}`,
      events: o.events,
      rate: o.rate,
      log: o.log,
    });
    agents.startAll();
    cleanups.push(() => agents.stopAll());
    phases.setup = secondsSince(phaseStart);
    phaseStart = Date.now();

    // Faults: each kind at its own period, until all is produced and every kind happened at least once.
    const next = Object.fromEntries(FAULT_KINDS.map((k) => [k, Date.now() + o.every[k]])) as Record<
      FaultKind,
      number
    >;
    let thawAt = 0;
    let lastReport = 0;
    const allKinds = (): boolean => FAULT_KINDS.every((k) => faults[k] > 0);
    while (!(agents.produced() && allKinds())) {
      timedOut(
        `while producing (${agents.acked()} of ${o.events} acknowledged; faults ${JSON.stringify(faults)})`,
      );
      superviseCloud();
      await agents.supervise();
      let now = Date.now();
      if (pg.isFrozen && now >= thawAt) pg.thaw();
      if (now >= next.agentKill && (await agents.killOne())) {
        faults.agentKill++;
        next.agentKill = now + o.every.agentKill;
      }
      // Kill a cloud that is ingesting (not one still starting): that is the crash that matters.
      if (now >= next.ingestKill && cloud?.consuming && cloud.proc.running()) {
        await cloud.proc.kill();
        faults.ingestKill++;
        next.ingestKill = now + o.every.ingestKill;
      }
      if (now >= next.natsKill) {
        await nats.kill();
        faults.natsKill++;
        await sleep(o.downForMs);
        await nats.restart();
        next.natsKill = Date.now() + o.every.natsKill;
      }
      now = Date.now();
      if (now >= next.pgCrash && !pg.isFrozen) {
        await pg.kill();
        faults.pgCrash++;
        await sleep(o.downForMs);
        await pg.start();
        next.pgCrash = Date.now() + o.every.pgCrash;
      }
      now = Date.now();
      if (now >= next.pgFreeze && !pg.isFrozen) {
        if (pg.freeze() > 0) faults.pgFreeze++;
        thawAt = now + o.freezeForMs;
        next.pgFreeze = now + o.every.pgFreeze;
      }
      if (now >= next.uplinkCut) {
        proxy.cut(o.cutForMs);
        faults.uplinkCut++;
        next.uplinkCut = now + o.every.uplinkCut;
      }
      if (now - lastReport > 5_000) {
        lastReport = now;
        o.log(`  ${agents.acked()}/${o.events} acknowledged; faults ${JSON.stringify(faults)}`);
      }
      await sleep(100);
    }
    pg.thaw();
    phases.produce = secondsSince(phaseStart);
    phaseStart = Date.now();
    o.log(`  all ${agents.acked()} events acknowledged by the agents; no more faults; draining`);
    // Drain: every agent's outbox must empty (an entry leaves only on a commit receipt from the cloud).
    while (!agents.drained()) {
      timedOut(`while draining (outbox depths ${agents.depths()})`);
      superviseCloud();
      await agents.supervise();
      await sleep(250);
    }
    await agents.stopAll();
    phases.drain = secondsSince(phaseStart);
    phaseStart = Date.now();
    o.log('  outboxes empty; checking the streams');

    const nc = await connect({
      servers: `tls://localhost:${nats.port}`,
      tls: { caFile: pki.caCert, certFile: svc.cert, keyFile: svc.key },
    });
    cleanups.push(() => nc.close());
    const stream = await checkStreams(o, nc, httpPort, cloudDir, deadline);
    // The events' verdict does not wait for the webhooks: at a million events they take far longer to deliver
    // than the events took to store (one POST per event), and a run that times out there still owes its
    // verdict on what was stored. Nothing changes the events any more (every outbox is empty, EVENTS is drained).
    o.log('  checking PostgreSQL against the ack files');
    const events = await verifyEvents(db, join(o.workDir, 'agents'), o.workDir);
    writeFileSync(
      join(o.workDir, 'events-result.json'),
      JSON.stringify({ target: o.events, events, stream, faults, phases }, null, 2),
    );
    o.log(`  events: ${JSON.stringify(events)}; stream: ${JSON.stringify(stream)}`);
    if (receiver) {
      o.log('  waiting for the webhook deliveries to settle');
      while ((await streamMessages(nc, 'JOBS')) > 0 || (await outboxRows(db)) > 0) {
        superviseCloud();
        timedOut('while delivering webhooks');
        await sleep(500);
      }
    }
    await cloud?.proc.stop();
    const webhook = receiver
      ? await verifyWebhook(db, join(o.workDir, 'webhook-received.log'), await outboxDropsFromLogs(cloudDir))
      : undefined;
    phases.check = secondsSince(phaseStart);
    const result: FaultResult = {
      target: o.events,
      events,
      stream,
      ...(webhook ? { webhook } : {}),
      faults,
      phases,
      seconds: secondsSince(started),
      workDir: o.workDir,
    };
    writeFileSync(join(o.workDir, 'result.json'), JSON.stringify({ ...result, cloudStarts }, null, 2));
    return result;
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
    await cleanup();
  }
}

/**
 * Waits (up to a few repair intervals) for EVENTS to be empty: after the drain every event is acked, and a
 * message stranded below the ack floor must be removed by the cloud's repair. Reads the repair's totals from
 * every cloud process's log and the last one's /metrics.
 */
export async function checkStreams(
  o: Pick<FaultOptions, 'strandedRepairIntervalSeconds'>,
  nc: NatsConnection,
  httpPort: number,
  cloudDir: string,
  deadline: number,
): Promise<StreamCounts> {
  const waitUntil = Math.min(
    deadline,
    Date.now() + Math.max(30_000, 6_000 * o.strandedRepairIntervalSeconds),
  );
  let eventsLeft = await streamMessages(nc, 'EVENTS');
  while (eventsLeft > 0 && Date.now() < waitUntil) {
    await sleep(500);
    eventsLeft = await streamMessages(nc, 'EVENTS');
  }
  const deadLetters = await streamMessages(nc, 'DEAD_LETTER');
  const text = await fetch(`http://127.0.0.1:${httpPort}/metrics`).then(
    (r) => r.text(),
    () => '',
  );
  const strandedMetric = text.split('\n').filter((l) => l.startsWith('vigil_cloud_ingest_stranded_total'));
  return { eventsLeft, deadLetters, strandedRepaired: await repairedFromLogs(cloudDir), strandedMetric };
}

async function outboxRows(db: Kysely<unknown>): Promise<number> {
  const { rows } = await sql<{ n: string }>`select count(*) as n from webhook_outbox`.execute(db);
  return Number(rows[0]?.n ?? 0);
}

export async function streamMessages(nc: NatsConnection, stream: string): Promise<number> {
  const reply = await nc.request(`$JS.API.STREAM.INFO.${stream}`, undefined, { timeout: 5_000 });
  const info = reply.json<{ state?: { messages: number }; error?: { code: number } }>();
  if (info.error?.code === 404) return 0;
  if (!info.state) throw new Error(`stream info ${stream}: ${JSON.stringify(info)}`);
  return info.state.messages;
}

/** Sums the webhook jobs the cloud dropped with its outbox full, over every cloud process's log. */
async function outboxDropsFromLogs(cloudDir: string): Promise<number> {
  let dropped = 0;
  if (!existsSync(cloudDir)) return dropped;
  for (const f of readdirSync(cloudDir).filter((n) => n.endsWith('.log'))) {
    const lines = createInterface({
      input: createReadStream(join(cloudDir, f), 'utf8'),
      crlfDelay: Infinity,
    });
    for await (const line of lines) {
      if (!line.includes(OUTBOX_FULL)) continue;
      try {
        dropped += (JSON.parse(line) as { jobs?: number }).jobs ?? 0;
      } catch {
        // a line cut by kill -9
      }
    }
  }
  return dropped;
}

/** Sums the repair passes' counts over every cloud process's log (a process's metrics die with it). */
async function repairedFromLogs(cloudDir: string): Promise<StreamCounts['strandedRepaired']> {
  const sum = { removed: 0, reingested: 0, deadLettered: 0 };
  if (!existsSync(cloudDir)) return sum;
  for (const f of readdirSync(cloudDir).filter((n) => n.endsWith('.log'))) {
    const lines = createInterface({
      input: createReadStream(join(cloudDir, f), 'utf8'),
      crlfDelay: Infinity,
    });
    for await (const line of lines) {
      if (!line.includes(REPAIRED)) continue;
      try {
        const l = JSON.parse(line) as Partial<typeof sum>;
        sum.removed += l.removed ?? 0;
        sum.reingested += l.reingested ?? 0;
        sum.deadLettered += l.deadLettered ?? 0;
      } catch {
        // a line cut by kill -9
      }
    }
  }
  return sum;
}
