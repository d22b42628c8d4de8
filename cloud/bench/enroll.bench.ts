// Device enrollments per second through the real gRPC DeviceService (issue 18 goal 4: >= 100/s), the cloud as its
// own process (cloud/src/main.ts) on nats-server in operator/JWT mode and a real PostgreSQL:
//   node --conditions=@vigil/source --import tsx cloud/bench/enroll.bench.ts [--devices 1000] [--concurrency 16]
//        [--profile DIR]   (a V8 CPU profile of the cloud process, written there when it stops)
//        [--cloud-root DIR] (run the cloud of another checkout, e.g. the previous commit, for an A/B in one sitting)
// What is timed: the Enroll calls alone. Each device's one-time token (minted straight into the database), RSA
// CSR and NATS user nkey are made before the window, so the client's own crypto is not in the figure. Every
// answer is checked (certificate CN and chain, NATS ticket) after the window.
// Raw baselines measured in the same run, in this process: (1) RSA-2048 sha256 signatures/s with the fleet CA
// key (the one signature a certificate needs: the crypto floor of the cloud's work); (2) gRPC unary round trips/s
// over TLS, one channel, same concurrency and message sizes (an echo server in this process: client and server
// share one core, so it understates what the transport alone could do). Prints ONE JSON document on stdout.
import { createPrivateKey, generateKeyPairSync, randomBytes, sign, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import pg from 'pg';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { createCsr } from '@vigil/certs';
import { DeviceServiceClient, type EnrollRequest, type EnrollResponse } from '@vigil/proto';
import { freePort, spawnCloud } from '@vigil/testkit';
import { EnrollmentTokens } from '../src/fleet/enrollment.js';
import { decodeNatsJwt, nkeyFromRawSeed } from '../src/fleet/nkey-crypto.js';
import { createDb } from '../src/storage/db.js';
import { startEnrollStack, type EnrollStack } from './enroll-stack.js';
import { cpuWindow, distribution, log, round, runMain, sleep } from './support.js';

const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '16' },
    profile: { type: 'string' },
    'cloud-root': { type: 'string' },
  },
});
const N = Number(values.devices);
const C = Number(values.concurrency);
if (!Number.isInteger(N) || N < 1 || !Number.isInteger(C) || C < 1)
  throw new Error('bad --devices/--concurrency');

const TENANT = 'bench';
const SITE = 'hq';

interface Prepared {
  deviceId: string;
  req: EnrollRequest;
}

/** Tokens straight into the database (the API's POST is not what is measured), CSRs and nkeys made here. */
async function prepare(stack: EnrollStack): Promise<Prepared[]> {
  const db = createDb(stack.databaseUrl, 4);
  try {
    const tokens = new EnrollmentTokens(db, pino({ level: 'silent' }), new Registry());
    // One RSA key for every device (key generation is the device's cost); each device its own CSR and nkey.
    const keyPem = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    }) as string;
    const out: Prepared[] = [];
    for (let i = 0; i < N; i++) {
      const deviceId = `dev-${String(i).padStart(6, '0')}`;
      const { secret } = await tokens.createToken({ tenantId: TENANT, siteId: SITE, createdBy: 'bench' });
      out.push({
        deviceId,
        req: {
          token: secret,
          csrPem: createCsr({ privateKeyPem: keyPem, commonName: deviceId }),
          agentVersion: 'bench',
          hardwareId: `hw-${deviceId}`,
          natsPublicKey: nkeyFromRawSeed(randomBytes(32), 20 << 3).publicKey,
        },
      });
    }
    return out;
  } finally {
    await db.destroy();
  }
}

/** Runs `calls` unary calls `C` at a time; returns per-call latencies (ms) and the wall time. */
async function drive<T>(
  calls: number,
  one: (i: number) => Promise<T>,
  results: T[] = [],
): Promise<{ ms: number; latencies: number[] }> {
  const latencies: number[] = [];
  let next = 0;
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    for (let i = next++; i < calls; i = next++) {
      const s = performance.now();
      results[i] = await one(i);
      latencies.push(performance.now() - s);
    }
  };
  await Promise.all(Array.from({ length: Math.min(C, calls) }, () => worker()));
  return { ms: performance.now() - t0, latencies };
}

/**
 * What the database's backends wait on during the window: pg_stat_activity sampled every 50 ms, as the mean
 * number of active backends per wait (Lock/advisory = the audit chain's lock, IO/WALSync = commits, Client/
 * ClientRead = waiting for the cloud's next statement, cpu = running).
 */
function sampleWaits(url: string): { stop(): Promise<Record<string, number>> } {
  const client = new pg.Client({ connectionString: url });
  const counts = new Map<string, number>();
  let samples = 0;
  let running = true;
  const loop = (async () => {
    await client.connect();
    while (running) {
      const r = await client.query<{ w: string; n: string }>(
        `select coalesce(wait_event_type || '/' || wait_event, 'cpu') as w, count(*) as n from pg_stat_activity
          where datname = current_database() and pid <> pg_backend_pid() and state like 'active%'
             or (datname = current_database() and state = 'idle in transaction') group by 1`,
      );
      samples++;
      for (const row of r.rows) counts.set(row.w, (counts.get(row.w) ?? 0) + Number(row.n));
      await sleep(50);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop.catch(() => undefined);
      await client.end().catch(() => undefined);
      return Object.fromEntries(
        [...counts].sort((a, b) => b[1] - a[1]).map(([w, n]) => [w, round(n / Math.max(1, samples))]),
      );
    },
  };
}

/** Raw 1: RSA-2048 signatures/s with the CA key over a certificate-sized TBS (about 700 bytes). */
function rawSignPerS(caKeyPem: string): number {
  const key = createPrivateKey(caKeyPem);
  const tbs = randomBytes(700);
  for (let i = 0; i < 50; i++) sign('sha256', tbs, key);
  const n = 1000;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) sign('sha256', tbs, key);
  return n / ((performance.now() - t0) / 1000);
}

/** Raw 2: a TLS gRPC echo of an Enroll-sized request and answer, in this process. */
async function rawGrpcPerS(stack: EnrollStack, reqBytes: number, resBytes: number): Promise<number> {
  const passthrough = (b: Buffer): Buffer => b;
  const def: grpc.ServiceDefinition = {
    echo: {
      path: '/bench.Echo/Echo',
      requestStream: false,
      responseStream: false,
      requestSerialize: passthrough,
      requestDeserialize: passthrough,
      responseSerialize: passthrough,
      responseDeserialize: passthrough,
    },
  };
  const answer = randomBytes(resBytes);
  const server = new grpc.Server();
  server.addService(def, {
    echo: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) => cb(null, answer),
  });
  const creds = grpc.ServerCredentials.createSsl(null, [
    { cert_chain: readFileSync(stack.pki.cloudApi.cert), private_key: readFileSync(stack.pki.cloudApi.key) },
  ]);
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync('127.0.0.1:0', creds, (e, p) => (e ? rej(e) : res(p))),
  );
  const Client = grpc.makeGenericClientConstructor(def, 'Echo');
  const client = new Client(`localhost:${port}`, grpc.credentials.createSsl(Buffer.from(stack.caPem)));
  const body = randomBytes(reqBytes);
  const echo = (): Promise<Buffer> =>
    new Promise((res, rej) =>
      (client as unknown as { echo: grpc.requestCallback<Buffer> & ((...a: unknown[]) => void) }).echo(
        body,
        (e: grpc.ServiceError | null, v?: Buffer) => (e ? rej(e) : res(v!)),
      ),
    );
  try {
    await drive(200, echo);
    const calls = Math.max(2000, N);
    const { ms } = await drive(calls, echo);
    return calls / (ms / 1000);
  } finally {
    client.close();
    server.forceShutdown();
  }
}

function check(p: Prepared, res: EnrollResponse, ca: X509Certificate): void {
  const x = new X509Certificate(res.certificatePem);
  if (!x.checkIssued(ca) || !x.verify(ca.publicKey)) throw new Error(`${p.deviceId}: not issued by the CA`);
  if (!x.subject.split('\n').includes(`CN=${p.deviceId}`)) throw new Error(`${p.deviceId}: CN ${x.subject}`);
  if (!x.subjectAltName?.includes(`URI:spiffe://vigil/tenant/${TENANT}/device/${p.deviceId}`))
    throw new Error(`${p.deviceId}: SAN ${String(x.subjectAltName)}`);
  const ticket = decodeNatsJwt<{ tags?: string[] }>(res.natsUserJwt);
  if (ticket.sub !== p.req.natsPublicKey || !ticket.nats.tags?.includes(`vigil-device:${p.deviceId}`))
    throw new Error(`${p.deviceId}: the NATS ticket does not name the device and its key`);
}

async function main(): Promise<void> {
  const load0 = loadavg();
  const stack = await startEnrollStack();
  try {
    const ports = { http: await freePort(), grpc: await freePort() };
    const cloud = spawnCloud(
      stack.dir,
      { ...stack.cloudConfig(ports), log: { level: 'warn' } },
      {
        root: values['cloud-root'] ?? stack.root,
        registry: stack.registry,
        name: 'enroll-bench',
        // --cpu-prof is not allowed in NODE_OPTIONS: a wrapper script runs the cloud from source with it.
        ...(values.profile ? { command: profilingWrapper(stack.dir, values.profile) } : {}),
      },
    );
    stack.onStop(() => cloud.stop());
    await stack.waitReady(`http://127.0.0.1:${ports.http}`, cloud);
    log(`cloud ready; preparing ${N} tokens, CSRs and nkeys`);
    const prepared = await prepare(stack);
    const client = new DeviceServiceClient(
      `localhost:${ports.grpc}`,
      grpc.credentials.createSsl(Buffer.from(stack.caPem)),
    );
    const enroll = (i: number): Promise<EnrollResponse> =>
      new Promise((res, rej) =>
        client.enroll(prepared[i]!.req, new grpc.Metadata(), { deadline: Date.now() + 60_000 }, (e, v) =>
          e ? rej(e) : res(v),
        ),
      );
    // The channel's TLS handshake before the window (a gateway enrolls over a fresh connection; not timed).
    await new Promise<void>((res, rej) =>
      client.waitForReady(Date.now() + 10_000, (e) => (e ? rej(e) : res())),
    );
    await sleep(500);
    const loadBefore = loadavg();
    const waits = sampleWaits(stack.databaseUrl);
    const cpu = cpuWindow({ cloud: [cloud.child.pid], nats: [stack.natsPid()] });
    log(`enrolling ${N} devices, ${C} at a time`);
    const results: EnrollResponse[] = [];
    const run = await drive(N, enroll, results);
    const cores = cpu();
    const dbWaits = await waits.stop();
    const loadDuring = loadavg();
    client.close();
    const ca = new X509Certificate(stack.caPem);
    prepared.forEach((p, i) => check(p, results[i]!, ca));
    const perS = N / (run.ms / 1000);
    log(`enrolled ${N} in ${round(run.ms)} ms (${round(perS)}/s); measuring the raw baselines`);
    const sample = results[0]!;
    const signPerS = rawSignPerS(readFileSync(stack.pki.caKey, 'utf8'));
    const grpcPerS = await rawGrpcPerS(
      stack,
      enrollRequestBytes(prepared[0]!.req),
      sample.certificatePem.length + sample.caChainPem.join('').length + sample.natsUserJwt.length + 300,
    );
    const report = {
      bench: 'enroll',
      machine: { cpus: cpus().length, model: cpus()[0]?.model },
      note: 'shared machine: other work may run at the same time; compare the ratios, not the absolute figures',
      loadavg: { start: load0, before_window: loadBefore, after_window: loadDuring, end: loadavg() },
      cloud_root: values['cloud-root'] ?? stack.root,
      devices: N,
      concurrency: C,
      enrollments_per_s: round(perS),
      enroll_ms: distribution(run.latencies),
      cores_busy: cores,
      db_backends_by_wait: dbWaits,
      cloud_cpu_ms_per_enrollment: round(((cores.processCores.cloud ?? NaN) * run.ms) / N),
      raw: { rsa2048_sign_per_s: round(signPerS), grpc_tls_unary_per_s: round(grpcPerS) },
      ratio: {
        enroll_vs_rsa_sign: round(perS / signPerS, 3),
        enroll_vs_grpc_unary: round(perS / grpcPerS, 3),
      },
      checked: 'every certificate (CA, CN, URI SAN) and NATS ticket (signature, key, device tag)',
    };
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } finally {
    await stack.stop();
  }
}

function profilingWrapper(dir: string, profileDir: string): string {
  const file = join(dir, 'cloud-profiled.sh');
  const node = JSON.stringify(process.execPath);
  const flags = `--cpu-prof --cpu-prof-dir=${JSON.stringify(profileDir)} --conditions=@vigil/source --import tsx`;
  writeFileSync(file, `#!/bin/sh\nexec ${node} ${flags} cloud/src/main.ts "$@"\n`, { mode: 0o755 });
  return file;
}

/** The size of an Enroll request on the wire, near enough for the echo baseline. */
function enrollRequestBytes(r: EnrollRequest): number {
  return r.token.length + r.csrPem.length + r.natsPublicKey.length + r.hardwareId.length + 20;
}

runMain(main);
