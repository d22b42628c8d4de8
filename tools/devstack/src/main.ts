import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import pg from 'pg';
import { DEV_DEVICE, startStack, type RunningStack } from './stack.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const print = (line: string): void => console.log(line);
const int = (v: string): number => {
  const n = Number.parseInt(v, 10);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer');
  return n;
};

interface AgentHealth {
  buffer: { depth: number };
  cameras: Array<{
    cameraId: string;
    state: string;
    fps: number;
    framesDecoded: number;
    framesDropped: number;
    lastError?: string;
    gaps: number;
  }>;
}

async function statusLine(
  stack: RunningStack,
  client: pg.Client,
): Promise<{ line: string; heartbeats: number }> {
  const cams = await fetch(`${stack.agentUrl}/healthz`)
    .then((r) => r.json() as Promise<AgentHealth>)
    .then(
      (h) =>
        h.cameras
          .map((c) => `${c.cameraId} ${c.state} ${c.fps.toFixed(1)} fps, ${c.framesDecoded} frames`)
          .join(' | ') +
        `\n           agent: ${h.buffer.depth} events in its outbox (detect -> track -> SQLite)`,
    )
    .catch((err: Error) => `agent unreachable (${err.message})`);
  const { rows } = await client.query<{ heartbeats: string; last_seen_at: Date | null }>(
    'select heartbeats, last_seen_at from devices where tenant_id = $1 and id = $2',
    [DEV_DEVICE.tenantId, DEV_DEVICE.deviceId],
  );
  const events = await client.query<{ n: string }>('select count(*) as n from events where tenant_id = $1', [
    DEV_DEVICE.tenantId,
  ]);
  const row = rows[0];
  const heartbeats = Number(row?.heartbeats ?? 0);
  const seen = row?.last_seen_at
    ? `${((Date.now() - row.last_seen_at.getTime()) / 1000).toFixed(0)} s ago`
    : 'never';
  const time = new Date().toISOString().slice(11, 19);
  return {
    line: `[${time}] cameras: ${cams}\n           cloud: ${DEV_DEVICE.tenantId}/${DEV_DEVICE.deviceId} last seen ${seen}, ${heartbeats} heartbeats and ${events.rows[0]?.n ?? 0} events in PostgreSQL`,
    heartbeats,
  };
}

async function up(opts: {
  for?: number;
  databaseUrl?: string;
  natsPort: number;
  httpPort: number;
  grpcPort: number;
  agentPort: number;
  rtspPort: number;
  pgPort: number;
}): Promise<number> {
  const started = Date.now();
  print('Vigil dev stack: starting every component on loopback (state and logs under .vigil/dev)');
  const assets = process.env.VIGIL_ASSETS_DIR ?? join(root, '..', 'shared', 'assets');
  const stack = await startStack({
    root,
    databaseUrl: opts.databaseUrl,
    assetsDir: existsSync(assets) ? assets : undefined,
    ports: {
      nats: opts.natsPort,
      cloudHttp: opts.httpPort,
      cloudGrpc: opts.grpcPort,
      agentHttp: opts.agentPort,
      camera: opts.rtspPort,
      postgres: opts.pgPort,
    },
    print,
  });
  print(`
Running (${((Date.now() - started) / 1000).toFixed(1)} s to start):
  NATS (mTLS + JWT)   ${stack.natsUrl}      CA ${stack.pki.caCert}  operator ${stack.natsAuthorityDir}
  PostgreSQL          ${stack.databaseUrl.replace(/\/\/[^@]*@/, '//')}
  Cameras (RTSP/TCP)  ${stack.cameraUrls.join('  ')}
  Cloud               ${stack.cloudUrl}/healthz  /readyz  /metrics  /v1/docs
  Console             ${stack.cloudUrl}/console/dev-login   development login: pick a role of tenant ${DEV_DEVICE.tenantId}, no password
  Cloud gRPC (TLS)    ${stack.grpcAddress}   DeviceService: Enroll, Renew
  Agent               ${stack.agentUrl}/healthz  /metrics
  Logs                ${stack.logsDir}/{cloud,agent}.log
Watching the agent decode camera frames and its heartbeats land in PostgreSQL.${opts.for ? ` Stopping after ${opts.for} s.` : ' Ctrl-C stops everything.'}
`);
  const client = new pg.Client({ connectionString: stack.databaseUrl });
  await client.connect();
  let stopRequested = false;
  const onSignal = (): void => {
    stopRequested = true;
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let heartbeats = 0;
  let announced = false;
  const deadline = opts.for ? Date.now() + opts.for * 1000 : Infinity;
  try {
    while (!stopRequested && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, Math.min(5_000, Math.max(0, deadline - Date.now()))));
      const s = await statusLine(stack, client);
      heartbeats = s.heartbeats;
      print(s.line);
      if (!announced && heartbeats > 0) {
        announced = true;
        print('           ✓ end to end: camera -> ffmpeg -> agent -> NATS (mTLS) -> cloud -> PostgreSQL');
      }
    }
  } finally {
    await client.end();
    print('stopping...');
    await stack.stop();
  }
  if (heartbeats === 0) {
    print(`no heartbeat reached PostgreSQL: see ${stack.logsDir}`);
    return 1;
  }
  return 0;
}

const program = new Command('./dev')
  .description('Vigil development stack: every component as a real process on this machine')
  .showHelpAfterError();
program
  .command('up')
  .description(
    'start NATS (mTLS), PostgreSQL, the RTSP camera-sim, the cloud and an agent; show data flowing',
  )
  .option('--for <seconds>', 'stop after this many seconds (default: run until Ctrl-C)', int)
  .option(
    '--database-url <url>',
    'use this PostgreSQL instead of a private cluster (env DATABASE_URL)',
    process.env.DATABASE_URL,
  )
  .option('--nats-port <port>', 'NATS client port', int, 14222)
  .option('--http-port <port>', 'cloud HTTP port', int, 8080)
  .option('--grpc-port <port>', 'cloud gRPC (DeviceService) port', int, 7443)
  .option('--agent-port <port>', 'agent health/metrics port', int, 9464)
  .option('--rtsp-port <port>', 'camera-sim RTSP port', int, 8554)
  .option('--pg-port <port>', 'private PostgreSQL port (when no DATABASE_URL)', int, 15432)
  .action(async (opts: Parameters<typeof up>[0]) => {
    process.exitCode = await up(opts);
  });

program.parseAsync().catch((err: unknown) => {
  console.error(`dev: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
