/*
 * One fleet-sim run (issue 17, "fleet at scale"): start the stack (or use a running cloud), enroll N devices,
 * connect them, hold a steady heartbeat window, run a good and a bad rollout; with resource readings at each
 * phase. main.ts parses the flags and prints what this returns as JSON.
 */
import { cpus, loadavg } from 'node:os';
import { readPgActivity } from '@vigil/devservices';
import { DEFAULT_BEHAVIOUR } from './agent.js';
import { enrollDevices } from './enroll.js';
import { SimFleet } from './fleet.js';
import {
  configStatusCounts,
  fetchText,
  heartbeatCounts,
  percentile,
  simConnectionsPerNode,
  steadyFigures,
  sumMetric,
  type SteadyReading,
} from './load.js';
import { Progress, rolloutLine } from './progress.js';
import {
  checkOpenFiles,
  cpuPercent,
  openFileLimits,
  perThousandDevices,
  ResourceSampler,
  sumPerThousand,
  type MeasuredProcess,
} from './resources.js';
import { apiClient, getRollout, runScenario, type ScenarioResult } from './scenario.js';
import { startSimProcessStack, startSimStack, type SimStackBase } from './stack.js';

export class FleetSimError extends Error {
  constructor(
    readonly code: 'OPEN_FILES' | 'BAD_OPTIONS',
    message: string,
  ) {
    super(message);
    this.name = 'FleetSimError';
  }
}

export interface FleetSimOptions {
  devices: number;
  tenant: string;
  site: string;
  /** Self-contained: nats-server nodes (1: one server; 3: a JetStream cluster, streams R3). */
  natsNodes: number;
  /** Where the cloud runs in a self-contained run: its own process (measured apart) or this one. */
  cloud: 'process' | 'in-process';
  /** A running cloud instead of the self-contained stack. */
  external?: { api: string; grpc: string; nats: string[]; caPem: string; token: string } | undefined;
  pgAdminUrl?: string | undefined;
  /** nats-server's TLS handshake timeout in the self-contained stack (default 2 s, as infra/nats). */
  natsTlsTimeoutSeconds?: number | undefined;
  canary: number;
  waves: number[];
  heartbeatMs: number;
  /** Config status poll period of every device (default the sim's 10 s; the edge agent's default is 60 s). */
  pollMs?: number | undefined;
  steadySeconds: number;
  enrollConcurrency: number;
  connectConcurrency: number;
  /** Longest wait for each rollout step; default max(300 s, 60 ms per device). */
  timeoutMs?: number | undefined;
  progressEveryMs?: number | undefined;
  log: (line: string) => void;
  /** Handed the stack's stop once it runs (main.ts stops it on SIGINT/SIGTERM). */
  onStack?: ((stop: () => Promise<void>) => void) | undefined;
}

/** The timeout of each rollout step for n devices (300 s up to 5,000 devices, then 60 ms per device). */
export const scaledTimeoutMs = (n: number): number => Math.max(300_000, n * 60);

export async function runFleetSim(o: FleetSimOptions) {
  const n = o.devices;
  if (!Number.isInteger(n) || n < 1)
    throw new FleetSimError('BAD_OPTIONS', `--devices must be >= 1, got ${n}`);
  const nodes = o.external ? 1 : Math.max(1, o.natsNodes);
  // Against a running cloud its nats-servers are not ours to check: only the sim's own sockets count.
  const fdProblem = checkOpenFiles(n, o.external ? n : nodes, openFileLimits());
  if (fdProblem) throw new FleetSimError('OPEN_FILES', fdProblem);
  const timeoutMs = o.timeoutMs ?? scaledTimeoutMs(n);
  const progress = new Progress(o.log, o.progressEveryMs ?? 5000);
  let stack: SimStackBase | undefined;
  let fleet: SimFleet | undefined;
  let stopping = false;
  try {
    const t0 = Date.now();
    let token: () => Promise<string>;
    let apiUrl: string;
    let grpcAddress: string;
    let natsUrls: string[];
    let caPem: string;
    if (o.external) {
      const e = o.external;
      ({ api: apiUrl, grpc: grpcAddress, nats: natsUrls, caPem } = e);
      token = () => Promise.resolve(e.token);
    } else {
      o.log(
        `starting ${nodes > 1 ? `a ${nodes}-node NATS JetStream cluster` : 'nats-server'} (JWT mode), ` +
          `PostgreSQL and the cloud (${o.cloud})`,
      );
      const so = {
        natsCluster: nodes,
        pgAdminUrl: o.pgAdminUrl,
        natsTlsTimeoutSeconds: o.natsTlsTimeoutSeconds,
      };
      const s = o.cloud === 'process' ? await startSimProcessStack(so) : await startSimStack(so);
      stack = s;
      o.onStack?.(() => s.stop());
      if ('cloudProcess' in s) {
        // A cloud that dies mid-run says why here (its log is otherwise kept in memory only).
        const cp = s.cloudProcess;
        cp.child.once('exit', (code, signal) => {
          if (!stopping) o.log(`the cloud process exited (${code ?? signal}):\n${cp.output().slice(-4000)}`);
        });
      }
      ({ apiUrl, grpcAddress, natsUrls, caPem } = s);
      token = reusedToken(() => s.token(o.tenant, ['admin']));
    }
    const stackMs = Date.now() - t0;
    const api = apiClient(apiUrl, token);
    const targets: MeasuredProcess[] = [{ name: 'sim', pid: () => process.pid }];
    if (stack && o.cloud === 'process') targets.push({ name: 'cloud', pid: stack.cloudPid });
    for (const node of stack?.natsNodes ?? []) targets.push({ name: `nats_${node.name}`, pid: node.pid });
    if (stack) targets.push({ name: 'postgres', pid: stack.postgresPid, tree: true });
    const sampler = new ResourceSampler(targets);
    sampler.sample('idle');
    progress.start();

    // Enrollment
    o.log(`enrolling ${n} devices (${o.enrollConcurrency} at a time)`);
    const enrollLatencies: number[] = [];
    progress.set(() => `enrolled ${enrollLatencies.length}/${n}`);
    const t1 = Date.now();
    const run = Date.now().toString(36);
    const devices = await enrollDevices({
      grpcAddress,
      caPem,
      deviceIds: Array.from({ length: n }, (_, i) => `sim-${run}-${String(i).padStart(5, '0')}`),
      token: async () => {
        const res = await api.request('POST', '/v1/enrollment-tokens', {
          site_id: o.site,
          ttl_seconds: 3600,
        });
        if (res.status !== 201)
          throw new Error(`enrollment token: ${res.status} ${JSON.stringify(res.json)}`);
        return (res.json as { token: string }).token;
      },
      concurrency: o.enrollConcurrency,
      onEnrolled: (_, ms) => void enrollLatencies.push(ms),
    });
    const enrollMs = Date.now() - t1;
    sampler.sample('after_enroll');
    o.log(`enrolled ${n} in ${enrollMs} ms; connecting (${o.connectConcurrency} at a time)`);

    // Connections, spread over the nodes
    const f = new SimFleet(devices, caPem, {
      heartbeatMs: o.heartbeatMs,
      ...(o.pollMs === undefined ? {} : { pollMs: o.pollMs }),
      keepStatuses: 20,
      keepHeartbeats: 20,
    });
    fleet = f;
    progress.set(() => `connected ${f.connected}/${n}`);
    const t2 = Date.now();
    await f.connect(natsUrls, o.connectConcurrency);
    const connectMs = Date.now() - t2;
    sampler.sample('after_connect');
    // The cloud's status counters (answered: config/current; refused: busy; expired): what connecting cost it.
    const statusCounts = async (): Promise<Record<string, number> | null> =>
      stack
        ? fetchText(stack.metricsUrl)
            .then(configStatusCounts)
            .catch(() => null)
        : null;
    const statusesAfterConnect = await statusCounts();
    // Connecting no longer waits for the first status; when did the last device's first status round end?
    const firstAnswered = (await Promise.all(f.agents.map((a) => a.firstStatus))).filter(Boolean).length;
    const firstStatusMs = Date.now() - t2;
    const perNode = stack ? await simConnectionsPerNode(stack.natsNodes, n) : null;
    o.log(
      `${n} NATS connections in ${connectMs} ms${perNode ? ` (per node: ${JSON.stringify(perNode)})` : ''}`,
    );

    // Steady heartbeat window (after one heartbeat period for the last connections to settle)
    progress.set(() => `steady window: ${f.heartbeatsSent()} heartbeats sent`);
    await sleep(Math.min(o.heartbeatMs, 10_000));
    const reading = async (): Promise<SteadyReading> => {
      const [metrics, pg] = await Promise.all([
        stack ? fetchText(stack.metricsUrl).catch(() => undefined) : undefined,
        stack ? readPgActivity(stack.databaseUrl).catch(() => undefined) : undefined,
      ]);
      const received = metrics === undefined ? undefined : heartbeatCounts(metrics);
      return { t_ms: Date.now(), sent: f.heartbeatsSent(), received, pg };
    };
    o.log(
      `steady window: ${o.steadySeconds} s, ${n} devices heartbeating every ${o.heartbeatMs} ms, ` +
        `polling every ${o.pollMs ?? DEFAULT_BEHAVIOUR.pollMs} ms`,
    );
    const r0 = await reading();
    const s0 = sampler.sample('steady_start');
    await sleep(o.steadySeconds * 1000);
    const r1 = await reading();
    const s1 = sampler.sample('steady_end');
    const steady = steadyFigures(r0, r1);
    const pendingAtEnd = stack
      ? await fetchText(stack.metricsUrl)
          .then((t) => sumMetric(t, 'vigil_cloud_heartbeats_pending'))
          .catch(() => null)
      : null;

    // Rollouts
    o.log(`rollouts (timeout ${timeoutMs} ms per step)`);
    let current: { kind: string; id: string } | undefined;
    progress.set(async () =>
      current ? rolloutLine(current.kind, await getRollout(api, current.id)) : 'creating the rollout',
    );
    const t3 = Date.now();
    const result: ScenarioResult = await runScenario(api, f, {
      spec: {
        canary: o.canary,
        waves: o.waves,
        gate_window_seconds: 60,
        soak_seconds: 3,
        gates: { applied_ratio: 0.95 },
        abort: { failure_ratio: 0.1, min_reported: Math.min(10, o.canary) },
      },
      timeoutMs,
      onRollout: (kind, view) => void (current = { kind, id: view.id }),
    });
    const rolloutsMs = Date.now() - t3;
    sampler.sample('after_rollouts');
    const statusesAtEnd = await statusCounts();
    progress.stop();
    await f.close();
    fleet = undefined;

    const enrollPerS = round(n / (enrollMs / 1000));
    const base = [sampler.find('idle')!, sampler.find('after_enroll')!];
    const perThousand = perThousandDevices(n, base, s1, s0, s1);
    if (stack && stack.natsNodes.length > 1)
      perThousand.nats_all = sumPerThousand(
        Object.entries(perThousand)
          .filter(([k]) => k.startsWith('nats_n'))
          .map(([, v]) => v),
      );
    const [l1, l5] = loadavg();
    return {
      devices: n,
      nats_nodes: o.external ? null : nodes,
      cloud: o.external ? 'external' : o.cloud,
      cores: cpus().length,
      heartbeat_ms: o.heartbeatMs,
      poll_ms: o.pollMs ?? DEFAULT_BEHAVIOUR.pollMs,
      headline: {
        enrollments_per_s: enrollPerS,
        ms_to_connect_all: connectMs,
        ms_to_first_status_all: firstStatusMs,
        good_rollout_ms_to_95pct_applied: result.good.ms_to_95pct_applied,
        good_rollout_ms_to_100pct_applied: result.good.ms_to_100pct_applied,
        good_rollout_state: result.good.state,
        bad_rollout_ms_to_abort: result.bad.ms_to_abort,
        bad_rollout_state: result.bad.state,
        heartbeats_received_per_s: steady.heartbeats_received_per_s,
        pg_rows_updated_per_s: steady.postgres?.rows_updated_per_s ?? null,
        pg_xact_commit_per_s: steady.postgres?.xact_commit_per_s ?? null,
      },
      enrollment: {
        ms_total: enrollMs,
        per_s: enrollPerS,
        concurrency: o.enrollConcurrency,
        // The gRPC Enroll call alone (the one-time token's POST before each is not in it).
        enroll_call_p50_ms: roundOrNull(percentile(enrollLatencies, 50)),
        enroll_call_p99_ms: roundOrNull(percentile(enrollLatencies, 99)),
      },
      connect: {
        ms_to_connect_all: connectMs,
        per_s: round(n / (connectMs / 1000)),
        concurrency: o.connectConcurrency,
        connected: f.connected,
        // First connections that failed (TLS or auth timeout, refused) and were tried again.
        dial_retries: f.agents.reduce((a, g) => a + g.counters.dialRetries, 0),
        // From the first dial until every device's status at connect was answered or given up (5 tries of 5 s).
        ms_to_first_status_all: firstStatusMs,
        first_statuses_answered: firstAnswered,
        sim_connections_per_node: perNode,
      },
      config_statuses: {
        after_connect: statusesAfterConnect,
        at_end: statusesAtEnd,
        // Status rounds of the simulated devices (whole run): answered requests, rounds with no answer.
        sim_answered: f.agents.reduce((a, g) => a + g.counters.statusesAnswered, 0),
        sim_unanswered: f.agents.reduce((a, g) => a + g.counters.statusesUnanswered, 0),
      },
      steady: {
        ...steady,
        heartbeats_pending_at_end: pendingAtEnd,
        cpu_pct: cpuPercent(s0, s1),
      },
      rollouts: { good: result.good, bad: result.bad, ms_total: rolloutsMs, timeout_ms_per_step: timeoutMs },
      resources: {
        note:
          'rss_mib and cpu_s from /proc (cpu_pct: percent of one core); postgres is the postmaster and its ' +
          'backends summed (shared buffers counted in each backend that touched them); ' +
          (o.cloud === 'in-process' && !o.external
            ? 'the cloud runs inside the sim process (sim = both)'
            : ''),
        per_1000_devices: perThousand,
        samples: sampler.samples,
      },
      timings_ms: {
        stack_start: stackMs,
        enrollment: enrollMs,
        nats_connect: connectMs,
        steady: Math.round(steady.seconds * 1000),
        rollouts: rolloutsMs,
        total: Date.now() - t0,
      },
      load: { loadavg_1m: l1 ?? 0, loadavg_5m: l5 ?? 0 },
    };
  } finally {
    stopping = true;
    progress.stop();
    await fleet?.close().catch(() => undefined);
    await stack?.stop();
  }
}

export type FleetSimReport = Awaited<ReturnType<typeof runFleetSim>>;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const round = (v: number): number => Math.round(v * 10) / 10;
const roundOrNull = (v: number | null): number | null => (v === null ? null : round(v));

/**
 * One admin JWT for many API calls (re-minted every 10 minutes; they live an hour), as a real client holds its
 * token: a fresh JWT per request made the cloud verify a never-seen token for every enrollment token it minted.
 */
function reusedToken(mint: () => Promise<string>): () => Promise<string> {
  let cached: { token: Promise<string>; at: number } | undefined;
  return () => {
    if (!cached || Date.now() - cached.at > 600_000) {
      const token = mint();
      cached = { token, at: Date.now() };
      // A failed mint is not kept: the next call tries again.
      token.catch(() => {
        if (cached?.token === token) cached = undefined;
      });
    }
    return cached.token;
  };
}
