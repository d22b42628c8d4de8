// fleet-sim: N simulated agents in one process. Self-contained by default (nats-server or a NATS JetStream
// cluster in JWT mode, PostgreSQL, and the cloud as its own process), or against a running cloud (--api, --grpc,
// --nats, --ca, --token). Enrolls, connects, holds a steady heartbeat window, runs a good rollout and a bad one,
// and prints a JSON summary with timings, load and resource figures (run.ts).
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { FleetSimError, runFleetSim, scaledTimeoutMs, type FleetSimOptions } from './run.js';

const HELP = `usage: pnpm -F @vigil/fleet-sim run sim [options]

Self-contained (default): nats-server in operator/JWT mode with mutual TLS, a private PostgreSQL and the cloud
as its own process; N devices enrolled through gRPC, connected to NATS, a steady heartbeat window, a good rollout
and a bad one (it must abort and roll back). JSON on stdout, progress on stderr every 5 s.

  --devices N              simulated devices (default 100). Each holds one TLS connection: the open-file
                           limit (ulimit -n) must exceed N + 512 or the run stops at once saying so
  --nats-cluster K         a K-node NATS JetStream cluster instead of one server (3: streams R3); every
                           device gets every node's URL, rotated per device so connections split evenly
  --cloud-in-process       run the cloud inside the sim process (its CPU and RSS then count as the sim's)
  --heartbeat-ms MS        heartbeat period of every device (default 5000; the edge agent's is 10 s)
  --poll-ms MS             config status poll period of every device (default 10000; the edge agent's is 60 s)
  --steady-seconds S       the steady heartbeat window, all devices connected (default 30)
  --enroll-concurrency C   enrollments in flight (default 16)
  --connect-concurrency C  NATS handshakes in flight (default 16; the auth callout takes 32 at a time)
  --nats-tls-timeout S     nats-server's TLS handshake timeout (default 2, as infra/nats; the JSON's
                           connect.dial_retries says how many handshakes had to be tried again)
  --canary N --waves 10,50,100
                           the rollouts' canary size and cumulative wave percentages
  --timeout-s S            longest wait of each rollout step (default max(300, 0.06 x devices))
  --tenant T --site S      the tenant and site the devices enroll into (default sim / hq)
  --pg-admin-url URL       an existing PostgreSQL (a fresh database is made in it; its CPU is not measured)

Against a running cloud (no stack, only the sim process measured):
  --api URL --grpc HOST:PORT --nats URL[,URL...] --ca FILE --token ADMIN_JWT [--tenant T --site S]

The 10,000-device cluster run (on an idle machine; ulimit -n 20000 or more):
  pnpm -F @vigil/fleet-sim run sim --devices 10000 --nats-cluster 3 --steady-seconds 60 > fleet-10k.json
`;

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
    'poll-ms': { type: 'string', default: '10000' },
    'nats-cluster': { type: 'string', default: '1' },
    'cloud-in-process': { type: 'boolean', default: false },
    'steady-seconds': { type: 'string', default: '30' },
    'enroll-concurrency': { type: 'string', default: '16' },
    'connect-concurrency': { type: 'string', default: '16' },
    'timeout-s': { type: 'string' },
    'pg-admin-url': { type: 'string' },
    'nats-tls-timeout': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  process.stdout.write(HELP);
  process.exit(0);
}

/** A whole number within bounds, or a FleetSimError naming the flag. */
function int(flag: string, v: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new FleetSimError('BAD_OPTIONS', `--${flag} must be a whole number in ${min}..${max}, got "${v}"`);
  return n;
}

async function main(): Promise<void> {
  const log = (msg: string): void => void process.stderr.write(`[fleet-sim] ${msg}\n`);
  const devices = int('devices', values.devices, 1, 100_000);
  let external: FleetSimOptions['external'];
  if (values.api !== undefined) {
    if (!values.grpc || !values.nats || !values.ca || !values.token)
      throw new FleetSimError(
        'BAD_OPTIONS',
        '--api needs --grpc, --nats, --ca and --token (an admin JWT of --tenant)',
      );
    external = {
      api: values.api,
      grpc: values.grpc,
      nats: values.nats.split(','),
      caPem: readFileSync(values.ca, 'utf8'),
      token: values.token,
    };
  }
  const report = await runFleetSim({
    devices,
    tenant: values.tenant,
    site: values.site,
    natsNodes: int('nats-cluster', values['nats-cluster'], 1, 9),
    cloud: values['cloud-in-process'] ? 'in-process' : 'process',
    external,
    pgAdminUrl: values['pg-admin-url'],
    natsTlsTimeoutSeconds:
      values['nats-tls-timeout'] === undefined
        ? undefined
        : int('nats-tls-timeout', values['nats-tls-timeout'], 1, 60),
    canary: int('canary', values.canary, 1),
    waves: values.waves.split(',').map((w) => int('waves', w, 1, 100)),
    heartbeatMs: int('heartbeat-ms', values['heartbeat-ms'], 100),
    pollMs: int('poll-ms', values['poll-ms'], 100),
    steadySeconds: int('steady-seconds', values['steady-seconds'], 1),
    enrollConcurrency: int('enroll-concurrency', values['enroll-concurrency'], 1, 1024),
    connectConcurrency: int('connect-concurrency', values['connect-concurrency'], 1, 1024),
    timeoutMs:
      values['timeout-s'] === undefined
        ? scaledTimeoutMs(devices)
        : int('timeout-s', values['timeout-s'], 1) * 1000,
    log,
    // Ctrl-C: the stack's processes run in their own process groups (and PostgreSQL as a daemon), so they
    // are stopped here rather than left running.
    onStack: (stop) => {
      const onSignal = (signal: NodeJS.Signals): void => {
        log(`${signal}: stopping the stack`);
        void stop().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
      };
      process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
    },
  });
  process.stdout.write(JSON.stringify(report, null, 2) + '\n');
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    const msg =
      err instanceof FleetSimError
        ? err.message
        : err instanceof Error
          ? (err.stack ?? err.message)
          : String(err);
    process.stderr.write(`[fleet-sim] failed: ${msg}\n`);
    process.exit(err instanceof FleetSimError ? 2 : 1);
  },
);
