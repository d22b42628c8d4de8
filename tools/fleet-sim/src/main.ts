// fleet-sim: N simulated agents in one process. Self-contained by default (nats-server in JWT mode, PostgreSQL
// and the cloud in this process), or against a running cloud (--api, --grpc, --nats, --ca, --token).
// Enrolls the devices, runs a good rollout and a bad one, prints a JSON summary.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { enrollDevices } from './enroll.js';
import { SimFleet } from './fleet.js';
import { apiClient, runScenario } from './scenario.js';
import { startSimStack, type SimStack } from './stack.js';

const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '100' },
    tenant: { type: 'string', default: 'sim' },
    site: { type: 'string', default: 'hq' },
    api: { type: 'string' },
    grpc: { type: 'string' },
    nats: { type: 'string' },
    ca: { type: 'string' },
    token: { type: 'string' },
    canary: { type: 'string', default: '10' },
    waves: { type: 'string', default: '10,50,100' },
    'heartbeat-ms': { type: 'string', default: '5000' },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  process.stdout.write(
    'usage: pnpm -F @vigil/fleet-sim run sim [--devices 1000] [--canary 10] [--waves 10,50,100]\n' +
      '       [--api URL --grpc HOST:PORT --nats URL --ca FILE --token ADMIN_JWT --tenant T --site S]\n',
  );
  process.exit(0);
}

async function main(): Promise<void> {
  const n = Number(values.devices);
  const external = values.api !== undefined;
  let stack: SimStack | undefined;
  const log = (msg: string): void => void process.stderr.write(`[fleet-sim] ${msg}\n`);
  try {
    const t0 = Date.now();
    let apiUrl: string;
    let grpcAddress: string;
    let natsUrl: string;
    let caPem: string;
    let tenant = values.tenant;
    let token: () => Promise<string>;
    if (external) {
      if (!values.grpc || !values.nats || !values.ca || !values.token)
        throw new Error('--api needs --grpc, --nats, --ca and --token (an admin JWT of --tenant)');
      apiUrl = values.api!;
      grpcAddress = values.grpc;
      natsUrl = values.nats;
      caPem = readFileSync(values.ca, 'utf8');
      const t = values.token;
      token = () => Promise.resolve(t);
    } else {
      log('starting nats-server (JWT mode), PostgreSQL and the cloud');
      stack = await startSimStack();
      const s = stack;
      apiUrl = s.apiUrl;
      grpcAddress = s.grpcAddress;
      natsUrl = s.natsUrl;
      caPem = s.caPem;
      tenant = values.tenant;
      token = () => s.token(tenant, ['admin']);
    }
    const stackMs = Date.now() - t0;
    const api = apiClient(apiUrl, token);
    log(`enrolling ${n} devices`);
    const t1 = Date.now();
    const run = Date.now().toString(36);
    const devices = await enrollDevices({
      grpcAddress,
      caPem,
      deviceIds: Array.from({ length: n }, (_, i) => `sim-${run}-${String(i).padStart(5, '0')}`),
      token: async () => {
        const res = await api.request('POST', '/v1/enrollment-tokens', {
          site_id: values.site,
          ttl_seconds: 3600,
        });
        if (res.status !== 201)
          throw new Error(`enrollment token: ${res.status} ${JSON.stringify(res.json)}`);
        return (res.json as { token: string }).token;
      },
      concurrency: 16,
    });
    const enrollMs = Date.now() - t1;
    log(`enrolled in ${enrollMs} ms; connecting`);
    const fleet = new SimFleet(devices, caPem, { heartbeatMs: Number(values['heartbeat-ms']) });
    const t2 = Date.now();
    await fleet.connect([natsUrl]);
    const connectMs = Date.now() - t2;
    log(`${n} NATS connections in ${connectMs} ms; rollouts`);
    const result = await runScenario(api, fleet, {
      spec: {
        canary: Number(values.canary),
        waves: values.waves.split(',').map(Number),
        gate_window_seconds: 60,
        soak_seconds: 3,
        gates: { applied_ratio: 0.95 },
        abort: { failure_ratio: 0.1, min_reported: Math.min(10, Number(values.canary)) },
      },
      timeoutMs: 300_000,
    });
    await fleet.close();
    process.stdout.write(
      JSON.stringify(
        {
          ...result,
          timings_ms: { stack_start: stackMs, enrollment: enrollMs, nats_connect: connectMs },
          cores: (await import('node:os')).cpus().length,
        },
        null,
        2,
      ) + '\n',
    );
  } finally {
    await stack?.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(
      `[fleet-sim] failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
