// End-to-end latency from capture to commit at a steady rate, against the raw JetStream round trip, in one run:
//   node --conditions=@vigil/source --import tsx cloud/bench/latency.bench.ts [--rate 200] [--seconds 30]
//        [--agents 2] [--warmup 2]
// Env: DATABASE_URL (server for the bench database; default postgres://postgres@127.0.0.1:5432/postgres, else a
// private cluster in a temp dir), NATS_SERVER_BIN. Prints ONE JSON document on stdout; progress on stderr.
//
// Setup: a dev PKI, nats-server with mutual TLS + JetStream, a fresh database. Then, in order:
//   baseline    one device connection publishes to a scratch stream configured like EVENTS, paced at --rate for
//               --seconds (one publish every 1/rate s, not waiting for the previous one): publish -> PubAck round
//               trip of each, in ms. Runs before the cloud starts (EVENTS + DEAD_LETTER reserve the whole 2 GB
//               file store of the dev nats-server config, leaving no room for a scratch stream)
//   cloud       the real cloud as its own process (src/main.ts; ingest role with its defaults, API off); the K
//               devices are registered
//   agents      K agent processes (tools/devstack/src/fault/producer.ts: the agent's real SQLite Outbox with
//               synchronous=FULL and its real Uplink; occurred_at = new Date() just before the durable append)
//               at --rate/K events/s each, --seconds long. An observer connection in this process (a service
//               certificate) sees each publish on the evt subject and each CommitReceipt the cloud pushes.
//               Once PostgreSQL holds every event, per event (all times on this machine's clock):
//                 captureToTxStart  received_at - occurred_at from PostgreSQL (received_at = now() = the start
//                                   of the ingest transaction, i.e. just before the INSERT)
//                 captureToCommit   CommitReceipt.committed_at - occurred_at: the cloud's clock right after
//                                   COMMIT returned (ms resolution): the commit time proper
//                 captureToReceipt  arrival of the pushed receipt at the observer - occurred_at: when the agent
//                                   learns it (what the agent's vigil_agent_uplink_commit_latency_seconds measures)
//                 captureToPublish  the observer's first sight of the publish - occurred_at: the agent's share
//                                   (outbox append with fsync, uplink pick-up)
//                 publishToCommit   committed_at - first sight of the publish: JetStream store, pull, INSERT, COMMIT
//               as p50/p90/p99/max in ms, over the steady window (from --warmup s after the last agent's first event
//               to the first agent's last event: every agent producing) and over all events. Achieved rates are
//               from occurred_at in PostgreSQL.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { ChildProcess } from 'node:child_process';
import { sql } from 'kysely';
import { CommitReceipt, DetectionEvent, TrackPhase } from '@vigil/proto';
import { FleetRegistry } from '../src/index.js';
import {
  connectAs,
  countEvents,
  cpuWindow,
  deleteStream,
  distribution,
  eventsLikeStream,
  ingestMetrics,
  log,
  machineInfo,
  repoRoot,
  reportHead,
  round,
  runMain,
  sleep,
  startCloudProcess,
  startStack,
  stopChild,
  uuidv7,
  type BenchDevice,
  type CpuReport,
  type Distribution,
  type Stack,
} from './support.js';

const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '200' },
    seconds: { type: 'string', default: '30' },
    agents: { type: 'string', default: '2' },
    warmup: { type: 'string', default: '2' },
  },
});
const RATE = Number(values.rate);
const SECONDS = Number(values.seconds);
const K = Math.max(1, Math.floor(Number(values.agents)));
const WARMUP_S = Math.max(0, Number(values.warmup));
if (!(RATE > 0) || !(SECONDS > 0)) throw new Error('--rate and --seconds must be positive');

const devices: BenchDevice[] = Array.from({ length: K }, (_, i) => ({
  tenantId: 'lat',
  siteId: 'lab',
  deviceId: `agent-${i + 1}`,
}));
const RTT_STREAM = 'BENCH_RTT';

/** Wall-clock ms with sub-ms resolution (comparable with Date.now() in other processes on this machine). */
const wallNow = (): number => performance.timeOrigin + performance.now();

/** publish -> PubAck of single publishes paced at RATE for SECONDS, from a device connection. */
async function baseline(stack: Stack, jsm: JetStreamManager) {
  await eventsLikeStream(jsm, RTT_STREAM, ['bench.rtt.>'], 600_000);
  const d = devices[0]!;
  const nc = await connectAs(stack, { device: d }, 'bench-rtt');
  const js = jetstream(nc);
  const subject = `bench.rtt.${d.tenantId}.${d.deviceId}.evt.cam1`;
  const total = Math.round(RATE * SECONDS);
  const interval = 1000 / RATE;
  const rtts: number[] = [];
  const pending: Array<Promise<void>> = [];
  let errors = 0;
  log(`baseline: ${total} JetStream publishes paced at ${RATE}/s`);
  const stopCpu = cpuWindow({ natsServer: [stack.natsPid] });
  const start = performance.now();
  let sent = 0;
  let lastSend = start;
  while (sent < total) {
    const now = performance.now();
    while (sent < total && start + sent * interval <= now) {
      const id = uuidv7(Date.now());
      // The same shape of event as the agents send (producer.ts).
      const payload = DetectionEvent.encode(
        DetectionEvent.fromPartial({
          eventId: id,
          tenantId: d.tenantId,
          siteId: d.siteId,
          deviceId: d.deviceId,
          cameraId: 'cam1',
          occurredAt: new Date(),
          trackId: `t-${id.slice(-6)}`,
          phase: TrackPhase.TRACK_PHASE_START,
          label: 'person',
          score: 0.9,
          box: { x: 0.1, y: 0.1, w: 0.2, h: 0.5 },
        }),
      ).finish();
      const t = performance.now();
      lastSend = t;
      pending.push(
        js.publish(subject, payload, { msgID: id, timeout: 10_000 }).then(
          () => void rtts.push(performance.now() - t),
          () => void errors++,
        ),
      );
      sent++;
    }
    const next = start + sent * interval;
    await sleep(Math.max(0, next - performance.now()));
  }
  await Promise.all(pending);
  const cpu = stopCpu();
  await nc.close();
  await deleteStream(jsm, RTT_STREAM);
  return {
    publishes: total,
    errors,
    targetRate: RATE,
    achievedRate: round((total - 1) / ((lastSend - start) / 1000), 1),
    rttMs: distribution(rtts),
    cpu,
  };
}

interface Agent {
  device: BenchDevice;
  child: ChildProcess;
  acked: Set<string>;
  budget: number;
}

function spawnAgent(stack: Stack, device: BenchDevice, rate: number, budget: number): Agent {
  const dir = join(stack.dir, 'agents', device.deviceId);
  mkdirSync(dir, { recursive: true });
  const cert = stack.pki.devices[`${device.tenantId}/${device.deviceId}`]!;
  const child = stack.registry.spawn(
    process.execPath,
    [
      '--conditions=@vigil/source',
      '--import',
      'tsx',
      join(repoRoot, 'tools/devstack/src/fault/producer.ts'),
      '--dir',
      dir,
      '--nats',
      stack.natsUrl,
      '--ca',
      stack.pki.caCert,
      '--cert',
      cert.cert,
      '--key',
      cert.key,
      '--tenant',
      device.tenantId,
      '--device',
      device.deviceId,
      '--rate',
      String(rate),
      '--budget',
      String(budget),
      '--ack-file',
      'acks-1.log',
    ],
    { cwd: repoRoot },
  );
  const agent: Agent = { device, child, acked: new Set(), budget };
  // The producer records what its outbox accepted as `A <id>` lines in its ack file (fsync'd); read them as
  // they come (complete lines only).
  const ackFile = join(dir, 'acks-1.log');
  let offset = 0;
  const poll = setInterval(() => {
    if (!existsSync(ackFile)) return;
    const text = readFileSync(ackFile, 'utf8').slice(offset);
    const end = text.lastIndexOf('\n') + 1;
    offset += end;
    for (const l of text.slice(0, end).split('\n')) {
      if (/^A [0-9a-f-]{36}$/.test(l)) agent.acked.add(l.slice(2));
    }
  }, 250);
  child.once('exit', () => clearInterval(poll));
  child.stdout?.resume();
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (t: string) => {
    if (!/ExperimentalWarning|--trace-warnings/.test(t))
      log(`  [${device.deviceId}] ${t.trim().slice(0, 300)}`);
  });
  return agent;
}

interface Row {
  id: string;
  occurred: number;
  received: number;
}

async function main(): Promise<void> {
  const stack = await startStack(devices, 'latency');
  const observer = await connectAs(stack, { service: 'bench' }, 'bench-observer');
  const agents: Agent[] = [];
  let cloud: Awaited<ReturnType<typeof startCloudProcess>> | undefined;
  try {
    const machine = await machineInfo(stack);

    // The observer: first sight of every publish, and every pushed receipt.
    const seenPublish = new Map<string, number>();
    const seenReceipt = new Map<string, { committedAt: number; at: number }>();
    observer.subscribe('vigil.v1.*.*.evt.*', {
      callback: (err, msg) => {
        const id = err ? undefined : msg.headers?.get('Nats-Msg-Id');
        if (id && !seenPublish.has(id)) seenPublish.set(id, wallNow());
      },
    });
    observer.subscribe('vigil.v1.*.*.rcpt', {
      callback: (err, msg) => {
        if (err || msg.reply) return; // a device's ReceiptQuery, not a pushed receipt
        const at = wallNow();
        const r = CommitReceipt.decode(msg.data);
        const committedAt = r.committedAt?.getTime() ?? Number.NaN;
        for (const id of r.eventIds) if (!seenReceipt.has(id)) seenReceipt.set(id, { committedAt, at });
      },
    });
    await observer.flush();
    const jsm = await jetstreamManager(observer);

    // Before the cloud starts: its EVENTS and DEAD_LETTER reserve the server's whole file store (2 GB).
    const base = await baseline(stack, jsm);
    log(`  rtt p50 ${base.rttMs?.p50} ms, p99 ${base.rttMs?.p99} ms`);

    const app = await startCloudProcess(stack);
    cloud = app;
    const registry = new FleetRegistry(stack.db);
    for (const d of devices) await registry.registerDevice(d);

    // Agents.
    const perAgentRate = RATE / K;
    const perAgentBudget = Math.round(perAgentRate * SECONDS);
    log(`agents: ${K} producers at ${perAgentRate}/s each, ${perAgentBudget} events each`);
    for (const d of devices) agents.push(spawnAgent(stack, d, perAgentRate, perAgentBudget));
    const total = perAgentBudget * K;
    const deadline = Date.now() + (SECONDS * 3 + 60) * 1000;
    let lastLog = 0;
    // CPU over the steady state: from the moment every agent produces until the last append.
    let cpuAgents: (() => CpuReport) | undefined;
    for (;;) {
      if (!cpuAgents && agents.every((a) => a.acked.size > 0))
        cpuAgents = cpuWindow({
          cloud: [app.pid],
          natsServer: [stack.natsPid],
          agents: agents.map((a) => a.child.pid),
        });
      const acked = agents.reduce((n, a) => n + a.acked.size, 0);
      if (acked >= total) break;
      const exited = agents.find((a) => a.child.exitCode !== null);
      if (exited) throw new Error(`agent ${exited.device.deviceId} exited (${exited.child.exitCode})`);
      if (Date.now() > deadline) throw new Error(`agents produced ${acked} of ${total} in time`);
      if (Date.now() - lastLog > 5_000) {
        lastLog = Date.now();
        log(`  ${acked}/${total} appended`);
      }
      await sleep(100);
    }
    const cpu = cpuAgents?.() ?? null;
    log(`  all ${total} appended; waiting for PostgreSQL and the receipts`);
    const drainDeadline = Date.now() + 120_000;
    while ((await countEvents(stack.db)) < total) {
      if (Date.now() > drainDeadline)
        throw new Error(`PostgreSQL did not get all ${total} events\n${app.logs()}`);
      await sleep(250);
    }
    const ids = agents.flatMap((a) => [...a.acked]);
    const receiptDeadline = Date.now() + 15_000;
    while (ids.some((id) => !seenReceipt.has(id)) && Date.now() < receiptDeadline) await sleep(100);
    const metricsText = await app.metricsText();

    const { rows } = await sql<{ id: string; occurred: string; received: string }>`
      select event_id::text as id,
             extract(epoch from occurred_at) * 1000 as occurred,
             extract(epoch from received_at) * 1000 as received
        from events`.execute(stack.db);
    const data: Row[] = rows.map((r) => ({
      id: r.id,
      occurred: Number(r.occurred),
      received: Number(r.received),
    }));
    const expected = new Set(ids);
    const stored = data.filter((r) => expected.has(r.id)).length;
    const first = Math.min(...data.map((r) => r.occurred));
    const last = Math.max(...data.map((r) => r.occurred));
    // Steady state: every agent producing and past its warm-up (the agents start a moment apart).
    const spans = agents.map((a) => {
      const mine = data.filter((r) => a.acked.has(r.id)).map((r) => r.occurred);
      return {
        device: a.device.deviceId,
        events: mine.length,
        first: Math.min(...mine),
        last: Math.max(...mine),
      };
    });
    const steadyFrom = Math.max(...spans.map((s) => s.first)) + WARMUP_S * 1000;
    const steadyTo = Math.min(...spans.map((s) => s.last));
    const steadyRows = data.filter((r) => r.occurred >= steadyFrom && r.occurred <= steadyTo);
    const figures = (subset: Row[]) => {
      const pick = (f: (r: Row) => number | undefined): Distribution | null => {
        const v: number[] = [];
        for (const r of subset) {
          const x = f(r);
          if (x !== undefined && Number.isFinite(x)) v.push(x);
        }
        return distribution(v);
      };
      return {
        events: subset.length,
        captureToTxStart: pick((r) => r.received - r.occurred),
        captureToCommit: pick((r) => {
          const rc = seenReceipt.get(r.id);
          return rc ? rc.committedAt - r.occurred : undefined;
        }),
        captureToReceipt: pick((r) => {
          const rc = seenReceipt.get(r.id);
          return rc ? rc.at - r.occurred : undefined;
        }),
        captureToPublish: pick((r) => {
          const p = seenPublish.get(r.id);
          return p !== undefined ? p - r.occurred : undefined;
        }),
        publishToCommit: pick((r) => {
          const p = seenPublish.get(r.id);
          const rc = seenReceipt.get(r.id);
          return p !== undefined && rc ? rc.committedAt - p : undefined;
        }),
      };
    };
    const perAgent = spans.map((s) => ({
      device: s.device,
      events: s.events,
      startOffsetS: round((s.first - first) / 1000, 3),
      achievedRate: round((s.events - 1) / ((s.last - s.first) / 1000), 1),
    }));
    const doc = {
      ...reportHead('cloud end-to-end latency (capture -> commit)', 'latency.bench.ts', machine),
      config: {
        rate: RATE,
        seconds: SECONDS,
        agents: K,
        warmupSeconds: WARMUP_S,
        agentUplink: 'producer.ts: receiptTimeoutMs 3000, other Uplink defaults (tickMs 250, window 256)',
        cloudIngest: 'defaults (batchSize 500, fetchExpiresMs 1000)',
      },
      results: [
        { name: 'jetstreamPublishRoundTrip', ...base },
        {
          name: 'captureToCommit',
          produced: total,
          stored,
          missingPublishSightings: ids.filter((id) => !seenPublish.has(id)).length,
          missingReceipts: ids.filter((id) => !seenReceipt.has(id)).length,
          achievedRate: round((data.length - 1) / ((last - first) / 1000), 1),
          perAgent,
          steadyWindow: {
            fromS: round((steadyFrom - first) / 1000, 3),
            toS: round((steadyTo - first) / 1000, 3),
            achievedRate: round(steadyRows.length / ((steadyTo - steadyFrom) / 1000), 1),
          },
          steady: figures(steadyRows),
          all: figures(data),
          cloudIngest: ingestMetrics(metricsText),
          cpuWhileProducing: cpu,
        },
      ],
    };
    process.stdout.write(JSON.stringify(doc, null, 2) + '\n');
  } finally {
    await Promise.all(agents.map((a) => stopChild(a.child, 10_000)));
    await observer.close();
    await cloud?.stop();
    await stack.dispose();
  }
}

runMain(main);
