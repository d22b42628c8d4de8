// Webhook delivery rate end to end against a raw baseline, in one run on one machine:
//   node --conditions=@vigil/source --import tsx cloud/bench/webhooks.bench.ts [--jobs 20000] [--repeats 3]
//        [--window 32] [--concurrency N --per-endpoint N] [--quick]
// --quick: 3000 jobs, 1 repeat. Env: DATABASE_URL, NATS_SERVER_BIN (as the other benches). Prints ONE JSON
// document on stdout; progress on stderr.
//
// A local HTTP receiver (this process, keep-alive, answers 204 to every POST) and, per repeat:
//   rawPost       a separate Node process POSTs N bodies of the same size and headers to the receiver,
//                 --window at once over keep-alive connections (http.Agent keepAlive, maxSockets = window):
//                 POSTs/s. What Node can push to this receiver, with none of the delivery work.
//   cloudDeliver  the real cloud as its own process (integrations on, the receiver allowed as a private http
//                 URL); N jobs of one webhook committed into webhook_outbox in one transaction (the rows ingest
//                 writes, made by the same planJobs), then deliveries/s from that COMMIT until the receiver has
//                 had a 2xx for every job (relay -> JOBS -> worker -> signed POST); also the rate from the first
//                 to the last POST (without the relay's up-to-1-s idle tick: nothing nudges it from here), and
//                 the time until the cloud counted every delivery recorded.
// --window is the raw client's concurrency; it should equal the cloud's per-endpoint concurrency (default 32,
// integrations.perEndpointConcurrency). --concurrency and --per-endpoint are passed to the cloud's config.
import { spawn } from 'node:child_process';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import type { NewEvent } from '../src/events/store.js';
import { planJobs } from '../src/integrations/outbox.js';
import { signRequest, verifyWebhookSignature } from '../src/integrations/signing.js';
import { WebhookStore, type Webhook } from '../src/integrations/store.js';
import {
  cpuProfile,
  cpuWindow,
  log,
  machineInfo,
  median,
  metricValue,
  reportHead,
  round,
  runMain,
  sleep,
  startCloudProcess,
  startStack,
  uuidv7,
  type CloudProcess,
  type Stack,
} from './support.js';

const { values } = parseArgs({
  options: {
    jobs: { type: 'string' },
    repeats: { type: 'string' },
    window: { type: 'string', default: '32' },
    concurrency: { type: 'string' },
    'per-endpoint': { type: 'string' },
    /** Directory for a V8 CPU profile of the cloud process (written when it stops). */
    'cpu-prof': { type: 'string' },
    quick: { type: 'boolean', default: false },
  },
});
const N = Number(values.jobs ?? (values.quick ? 3_000 : 20_000));
const REPEATS = Math.max(1, Number(values.repeats ?? (values.quick ? 1 : 3)));
const WINDOW = Number(values.window);
if (!Number.isInteger(N) || N < 1) throw new Error(`--jobs must be a positive integer: ${values.jobs}`);
if (!Number.isInteger(WINDOW) || WINDOW < 1) throw new Error(`--window must be a positive integer`);
const cloudIntegrations: Record<string, unknown> = {
  allowInsecureHttp: true,
  allowPrivateNetworks: true,
  ...(values.concurrency === undefined ? {} : { concurrency: Number(values.concurrency) }),
  ...(values['per-endpoint'] === undefined ? {} : { perEndpointConcurrency: Number(values['per-endpoint']) }),
};
const TENANT = 'bench';
/** Signatures checked per phase (the first ones): the cloud's requests must be the real, signed ones. */
const VERIFY_FIRST = 50;

/** The receiver: counts 2xx answers per event id of the current phase. */
class Receiver {
  server: Server;
  url = '';
  posts = 0;
  seen = new Set<string>();
  firstAt = 0;
  lastAt = 0;
  secret = '';
  checked = 0;
  valid = 0;
  private nonces = new Set<string>();

  constructor() {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        this.posts++;
        const now = performance.now();
        if (this.firstAt === 0) this.firstAt = now;
        this.lastAt = now;
        try {
          const id = (JSON.parse(body) as { event: { event_id: string } }).event.event_id;
          this.seen.add(id);
        } catch {
          // counted as a POST, not as a delivery
        }
        if (this.secret !== '' && this.checked < VERIFY_FIRST) this.verify(req.headers, body);
        res.statusCode = 204;
        res.end();
      });
    });
    this.server.keepAliveTimeout = 65_000;
  }

  private verify(headers: IncomingHttpHeaders, body: string): void {
    this.checked++;
    const v = verifyWebhookSignature(
      { method: 'POST', targetUri: `${this.url}/hook`, headers, body },
      this.secret,
      { maxAgeSeconds: 300, seenNonce: (n) => this.nonces.has(n) || (this.nonces.add(n), false) },
    );
    if (v.ok) this.valid++;
  }

  async listen(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  reset(secret: string): void {
    this.posts = 0;
    this.seen = new Set();
    this.firstAt = 0;
    this.lastAt = 0;
    this.secret = secret;
    this.checked = 0;
    this.valid = 0;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}

function eventRows(n: number): NewEvent[] {
  const now = Date.now();
  return Array.from(
    { length: n },
    (_, i) =>
      ({
        event_id: uuidv7(now - n + i),
        tenant_id: TENANT,
        site_id: 'lab',
        device_id: 'dev-1',
        camera_id: 'cam1',
        occurred_at: new Date(now - n + i),
        track_id: `t${i % 50}`,
        phase: 'start',
        label: 'person',
        score: 0.9,
        box_x: 0.1,
        box_y: 0.2,
        box_w: 0.3,
        box_h: 0.4,
        zones: ['yard'],
        priority: 1,
        payload: Buffer.alloc(0),
        stream_seq: i + 1,
      }) as NewEvent,
  );
}

// The raw client: plain Node http, keep-alive, `window` POSTs at once, in its own process (as the cloud is).
const RAW_CLIENT = `
const http = require('node:http');
const { URL, N, WINDOW, BODY, HEADERS } = process.env;
const n = Number(N), w = Number(WINDOW), headers = JSON.parse(HEADERS);
const agent = new http.Agent({ keepAlive: true, maxSockets: w, maxFreeSockets: w });
let next = 0, ok = 0, failed = 0;
function post() {
  return new Promise((resolve) => {
    const req = http.request(URL, { method: 'POST', agent, headers: { ...headers, 'content-length': Buffer.byteLength(BODY) } }, (res) => {
      res.resume();
      res.on('end', () => { if (res.statusCode >= 200 && res.statusCode < 300) ok++; else failed++; resolve(); });
    });
    req.on('error', () => { failed++; resolve(); });
    req.end(BODY);
  });
}
async function worker() { while (next < n) { next++; await post(); } }
const t0 = performance.now();
Promise.all(Array.from({ length: w }, worker)).then(() => {
  const u = process.cpuUsage();
  process.stdout.write(JSON.stringify({ seconds: (performance.now() - t0) / 1000, ok, failed, cpuSeconds: (u.user + u.system) / 1e6 }));
  agent.destroy();
});
`;

async function phaseRaw(receiver: Receiver, hook: Webhook, repeat: number) {
  // A body of the size the cloud sends, and headers of the size it signs with (signed once: signing per request
  // is the cloud's own work, not the baseline's).
  const job = JSON.parse(
    planJobs(eventRows(1), new Map([[TENANT, [hook]]]), new Date()).jobs[0]!.payload,
  ) as {
    event: unknown;
  };
  const body = JSON.stringify({ type: 'vigil.event.committed', event: job.event });
  const headers = signRequest({
    method: 'POST',
    url: `${receiver.url}/raw`,
    body,
    contentType: 'application/json',
    secret: 'raw',
    keyid: hook.id,
  });
  receiver.reset('');
  const child = spawn(process.execPath, ['-e', RAW_CLIENT], {
    env: {
      ...process.env,
      URL: `${receiver.url}/raw`,
      N: String(N),
      WINDOW: String(WINDOW),
      BODY: body,
      HEADERS: JSON.stringify({ ...headers, 'user-agent': 'vigil-webhooks/1' }),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const stopCpu = cpuWindow({});
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((r) => child.once('close', r));
  const cpu = stopCpu();
  if (code !== 0) throw new Error(`raw client exited with ${code}`);
  const r = JSON.parse(out) as { seconds: number; ok: number; failed: number; cpuSeconds: number };
  if (r.ok !== N) throw new Error(`raw client: ${r.ok} of ${N} POSTs answered 2xx (${r.failed} failed)`);
  return {
    name: 'rawPost',
    repeat,
    posts: N,
    window: WINDOW,
    bodyBytes: Buffer.byteLength(body),
    seconds: round(r.seconds, 3),
    postsPerSec: Math.round(N / r.seconds),
    // The client's own CPU (from inside it: it has exited before /proc could be read), start-up included.
    cpu: { ...cpu, processCores: { rawClient: round(r.cpuSeconds / r.seconds) } },
  };
}

async function phaseCloud(
  stack: Stack,
  cloud: CloudProcess,
  receiver: Receiver,
  hook: Webhook,
  repeat: number,
) {
  const { jobs } = planJobs(eventRows(N), new Map([[TENANT, [hook]]]), new Date());
  const before = await cloud.metricsText();
  const delivered0 = metricValue(before, 'vigil_cloud_webhook_deliveries_total', '{result="delivered"}');
  receiver.reset(hook.secret);
  const stopCpu = cpuWindow({ cloud: [cloud.pid], natsServer: [stack.natsPid] });
  await stack.db.transaction().execute(async (tx) => {
    for (let i = 0; i < jobs.length; i += 1000)
      await tx
        .insertInto('webhook_outbox')
        .values(jobs.slice(i, i + 1000).map((j) => ({ msg_id: j.msgId, payload: j.payload })))
        .execute();
  });
  const t0 = performance.now();
  log(`  cloudDeliver: ${N} jobs committed to the outbox (cloud pid ${cloud.pid})`);
  const deadline = Date.now() + 1_800_000;
  let lastLog = Date.now();
  let lastOutboxCheck = 0;
  let outboxEmptyAt: number | undefined;
  while (receiver.seen.size < N) {
    // When the relay has moved every job to JOBS (the rest of the time is the worker's).
    if (outboxEmptyAt === undefined && performance.now() - lastOutboxCheck > 100) {
      lastOutboxCheck = performance.now();
      const { rows: left } = await sql<{ n: string }>`select count(*) as n from webhook_outbox`.execute(
        stack.db,
      );
      if (Number(left[0]?.n ?? 0) === 0) outboxEmptyAt = performance.now();
    }
    if (Date.now() > deadline)
      throw new Error(`deliveries timed out at ${receiver.seen.size}/${N}\n${cloud.logs()}`);
    if (Date.now() - lastLog > 10_000) {
      lastLog = Date.now();
      log(`    ${receiver.seen.size}/${N} delivered`);
    }
    await sleep(10);
  }
  const tEnd = performance.now();
  const cpu = stopCpu();
  // The cloud acks each job after recording it: wait until it counted every delivery.
  let recordedAt = tEnd;
  let after = '';
  for (;;) {
    after = await cloud.metricsText();
    if (metricValue(after, 'vigil_cloud_webhook_deliveries_total', '{result="delivered"}') - delivered0 >= N)
      break;
    if (Date.now() > deadline) throw new Error('the cloud did not record every delivery');
    await sleep(20);
    recordedAt = performance.now();
  }
  const { rows } = await sql<{ n: string }>`select count(*) as n from webhook_outbox`.execute(stack.db);
  const seconds = (tEnd - t0) / 1000;
  const steady = (receiver.lastAt - receiver.firstAt) / 1000;
  return {
    name: 'cloudDeliver',
    repeat,
    jobs: N,
    posts: receiver.posts,
    repeatedPosts: receiver.posts - receiver.seen.size,
    signaturesChecked: receiver.checked,
    signaturesValid: receiver.valid,
    seconds: round(seconds, 3),
    deliveriesPerSec: Math.round(N / seconds),
    firstPostAfterSeconds: round((receiver.firstAt - t0) / 1000, 3),
    outboxEmptyAfterSeconds: outboxEmptyAt === undefined ? null : round((outboxEmptyAt - t0) / 1000, 3),
    firstToLastPostPerSec: steady > 0 ? Math.round((N - 1) / steady) : null,
    allRecordedAfterSeconds: round((recordedAt - t0) / 1000, 3),
    outboxLeft: Number(rows[0]?.n ?? 0),
    cpu,
  };
}

async function main(): Promise<void> {
  const stack = await startStack([], 'webhooks');
  const receiver = new Receiver();
  await receiver.listen();
  let cloud: CloudProcess | undefined;
  try {
    const machine = await machineInfo(stack);
    const hook = await new WebhookStore(stack.db).create({
      tenantId: TENANT,
      url: `${receiver.url}/hook`,
      filter: {},
      description: 'bench receiver',
      createdBy: 'bench',
    });
    cloud = await startCloudProcess(
      stack,
      {},
      'cloud-webhooks',
      { integrations: cloudIntegrations },
      cpuProfile(values['cpu-prof']),
    );
    const results: Array<Record<string, unknown>> = [];
    for (let repeat = 1; repeat <= REPEATS; repeat++) {
      log(`repeat ${repeat}/${REPEATS}: ${N} POSTs raw, then ${N} deliveries through the cloud`);
      const raw = await phaseRaw(receiver, hook, repeat);
      const deliver = await phaseCloud(stack, cloud, receiver, hook, repeat);
      results.push(raw, { ...deliver, ratioToRawPost: round(deliver.deliveriesPerSec / raw.postsPerSec, 3) });
      log(`  -> raw ${raw.postsPerSec}/s, cloud ${deliver.deliveriesPerSec}/s end to end`);
    }
    const of = (name: string, key: string): number =>
      median(results.filter((r) => r.name === name).map((r) => r[key] as number));
    const rawMed = of('rawPost', 'postsPerSec');
    const cloudMed = of('cloudDeliver', 'deliveriesPerSec');
    const metrics = await cloud.metricsText();
    process.stdout.write(
      JSON.stringify(
        {
          ...reportHead('cloud webhook delivery rate', 'webhooks.bench.ts', machine),
          config: { jobs: N, repeats: REPEATS, window: WINDOW, cloudIntegrations },
          summary: {
            medianOf: REPEATS,
            rawPostsPerSec: rawMed,
            cloudDeliveriesPerSec: cloudMed,
            cloudFirstToLastPostPerSec: of('cloudDeliver', 'firstToLastPostPerSec'),
            ratioCloudToRaw: round(cloudMed / rawMed, 3),
          },
          cloudMetrics: {
            deliveries: {
              delivered: metricValue(metrics, 'vigil_cloud_webhook_deliveries_total', '{result="delivered"}'),
              retry: metricValue(metrics, 'vigil_cloud_webhook_deliveries_total', '{result="retry"}'),
              dead: metricValue(metrics, 'vigil_cloud_webhook_deliveries_total', '{result="dead"}'),
              alreadyDelivered: metricValue(
                metrics,
                'vigil_cloud_webhook_deliveries_total',
                '{result="already_delivered"}',
              ),
            },
            relayed: metricValue(metrics, 'vigil_cloud_webhook_outbox_relayed_total', '{result="enqueued"}'),
            lookupBatchAvg: batchAvg(metrics, 'lookup'),
            recordBatchAvg: batchAvg(metrics, 'record'),
          },
          results,
        },
        null,
        2,
      ) + '\n',
    );
  } finally {
    await cloud?.stop();
    await receiver.close();
    await stack.dispose();
  }
}

/** Average jobs per statement of the worker's batched reads or writes (null where the cloud has no such metric). */
function batchAvg(text: string, op: string): number | null {
  const name = 'vigil_cloud_webhook_db_batch_size';
  const count = metricValue(text, `${name}_count`, `{op="${op}"}`);
  return count > 0 ? round(metricValue(text, `${name}_sum`, `{op="${op}"}`) / count, 1) : null;
}

runMain(main);
