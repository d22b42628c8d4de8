import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { CameraSim, checkCameraSimPrerequisites, type CameraSimMount } from '@vigil/camera-sim';
import { ensureDevPki, type DevPkiPaths } from '@vigil/certs';
import {
  createDb,
  ensureDevConfigSigningKey,
  ensureDevSigningKey,
  ensureNatsAuthority,
  migrateToLatest,
  mintDevToken,
} from '@vigil/cloud';
import {
  canConnect,
  freePort,
  natsConfig,
  NatsServer,
  PostgresCluster,
  ProcessRegistry,
  stopChild,
} from '@vigil/devservices';
import type { Kysely } from 'kysely';

export const DEV_DEVICE = { tenantId: 'dev', siteId: 'lab', deviceId: 'dev-001' } as const;

export interface StackOptions {
  root: string;
  databaseUrl?: string;
  assetsDir?: string;
  ports: {
    nats: number;
    cloudHttp: number;
    cloudGrpc: number;
    agentHttp: number;
    camera: number;
    postgres: number;
  };
  print: (line: string) => void;
}

export interface RunningStack {
  pki: DevPkiPaths;
  databaseUrl: string;
  natsUrl: string;
  /** The NATS operator/accounts (JWT mode): `authority.json` is what the CLI and the cloud issue users from. */
  natsAuthorityDir: string;
  cloudUrl: string;
  grpcAddress: string;
  agentUrl: string;
  cameraUrls: string[];
  logsDir: string;
  stop(): Promise<void>;
}

/** A port we asked for, or a free one when it is taken (said aloud, so the user knows where to look). */
async function portOr(wanted: number, what: string, print: (l: string) => void): Promise<number> {
  const { createServer } = await import('node:net');
  const free = await new Promise<boolean>((resolve) => {
    const s = createServer().once('error', () => resolve(false));
    s.listen(wanted, '127.0.0.1', () => s.close(() => resolve(true)));
  });
  if (free) return wanted;
  const other = await freePort();
  print(`  port ${wanted} (${what}) is taken; using ${other}`);
  return other;
}

/**
 * Brings up the whole system on loopback: dev PKI, nats-server with mutual TLS and JetStream,
 * PostgreSQL (DATABASE_URL or a private cluster), the RTSP camera-sim, the cloud and one agent.
 * Each piece is a real process; state lives under <root>/.vigil/dev.
 */
export async function startStack(opts: StackOptions): Promise<RunningStack> {
  const { print } = opts;
  const devDir = join(opts.root, '.vigil', 'dev');
  const logsDir = join(devDir, 'logs');
  mkdirSync(logsDir, { recursive: true });
  const registry = new ProcessRegistry(undefined);
  const stops: Array<() => Promise<void>> = [];
  const stop = async (): Promise<void> => {
    for (const s of stops.reverse())
      await s().catch((err: unknown) => print(`  stop failed: ${String(err)}`));
  };
  try {
    print('1/6 development PKI (fleet CA, server certificates) and NATS operator');
    // No device certificate here: the agent enrolls for its own (step 6), as a gateway in the field does.
    const pki = ensureDevPki(join(opts.root, '.vigil', 'pki'), { devices: [], services: ['cloud'] });
    const natsAuthorityDir = join(opts.root, '.vigil', 'nats-auth');
    const natsAuth = await ensureNatsAuthority(natsAuthorityDir);
    if (natsAuth.upgraded)
      print(
        `  NATS authority upgraded for the device auth callout: an agent enrolled before holds old NATS credentials and stays offline until its next renewal; remove ${join(opts.root, '.vigil', 'dev')} to enroll it anew now`,
      );
    // Signs dev API tokens (`pnpm vigil token mint`); the cloud verifies them with the public JWKS.
    const apiSigningKey = ensureDevSigningKey(pki.dir);
    // Signs the configs the cloud sends to devices (agents get the public key at enrollment).
    const configSigningKey = await ensureDevConfigSigningKey(pki.dir);

    print('2/6 nats-server (>= 2.10): mutual TLS, per-device JWT authorization by auth callout, JetStream');
    const tls = { caFile: pki.caCert, certFile: pki.natsServer.cert, keyFile: pki.natsServer.key };
    const nats = new NatsServer({
      port: await portOr(opts.ports.nats, 'NATS', print),
      dir: join(devDir, 'nats'),
      config: natsConfig({ tls, jetstream: true, extra: readFileSync(natsAuth.serverConfigFile, 'utf8') }),
      registry,
    });
    await nats.start();
    stops.push(() => nats.stop());
    const natsUrl = `tls://localhost:${nats.port}`;

    print('3/6 PostgreSQL');
    let databaseUrl = opts.databaseUrl;
    if (databaseUrl) {
      if (!(await canConnect(databaseUrl)))
        throw new Error(`DATABASE_URL is set but no PostgreSQL answers there`);
    } else {
      const cluster = new PostgresCluster({
        dir: join(devDir, 'pg'),
        port: await portOr(opts.ports.postgres, 'PostgreSQL', print),
        registry,
      });
      await cluster.start();
      stops.push(() => cluster.stop());
      databaseUrl = cluster.url;
    }
    const db = createDb(databaseUrl, 2);
    await migrateToLatest(db as Kysely<unknown>);
    // Is the agent's stored identity still known to this database (a fresh database forgets enrollments)?
    const enrolled = await db
      .selectFrom('devices')
      .select('id')
      .where('tenant_id', '=', DEV_DEVICE.tenantId)
      .where('id', '=', DEV_DEVICE.deviceId)
      .where('enrolled_at', 'is not', null)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    await db.destroy();

    print('4/6 RTSP test camera');
    const prereq = checkCameraSimPrerequisites();
    if (!prereq.ok) throw new Error(prereq.message);
    const mounts: CameraSimMount[] = [
      { name: 'pattern', source: { kind: 'pattern', width: 1280, height: 720, fps: 15 } },
    ];
    const clip = opts.assetsDir && join(opts.assetsDir, 'videos', 'one-by-one-person-detection.mp4');
    if (clip && existsSync(clip))
      mounts.push({ name: 'lobby', source: { kind: 'file', path: clip, loop: true } });
    const camera = new CameraSim({
      port: await portOr(opts.ports.camera, 'RTSP', print),
      mounts,
      onSpawn: (c) => registry.track(c, 'camera-sim'),
    });
    await camera.start();
    stops.push(() => camera.stop());
    const cameraUrls = mounts.map((m) => camera.url(m.name));

    print('5/6 cloud');
    const cloudPort = await portOr(opts.ports.cloudHttp, 'cloud HTTP', print);
    const grpcPort = await portOr(opts.ports.cloudGrpc, 'cloud gRPC', print);
    const cloudConfig = join(devDir, 'cloud.json');
    writeFileSync(
      cloudConfig,
      JSON.stringify(
        {
          http: { host: '127.0.0.1', port: cloudPort },
          database: { url: databaseUrl },
          nats: {
            servers: [natsUrl],
            tls: { caFile: pki.caCert, certFile: pki.services.cloud?.cert, keyFile: pki.services.cloud?.key },
            auth: { authorityFile: natsAuth.authorityFile },
          },
          identity: { caCertFile: pki.caCert, caKeyFile: pki.caKey },
          configSigning: { privateJwkFile: configSigningKey.privateJwkFile },
          models: { dir: join(devDir, 'models') },
          media: { dir: join(devDir, 'media') },
          grpc: {
            enabled: true,
            host: '127.0.0.1',
            port: grpcPort,
            tls: { certFile: pki.cloudApi.cert, keyFile: pki.cloudApi.key },
          },
          auth: { jwksFile: apiSigningKey.jwksFile },
          // The console with its development login (no identity provider): the cloud's schema accepts it only
          // on a loopback listener with a non-Secure cookie, as here; see the README's "Web console".
          console: {
            enabled: true,
            cookieSecure: false,
            devLogin: { enabled: true, tenant: DEV_DEVICE.tenantId, origin: `http://127.0.0.1:${cloudPort}` },
          },
        },
        null,
        2,
      ),
    );
    const cloud = spawnNode(
      registry,
      opts.root,
      'cloud/src/main.ts',
      cloudConfig,
      join(logsDir, 'cloud.log'),
      print,
      'cloud',
    );
    stops.push(() => stopChild(cloud));
    const cloudUrl = `http://127.0.0.1:${cloudPort}`;
    await waitForHttp(`${cloudUrl}/readyz`, 30_000, cloud);

    print('6/6 edge agent: enrolls with one command, then runs on its issued identity');
    const dataDir = join(devDir, 'agent-data');
    const grpcAddress = `localhost:${grpcPort}`;
    if (!enrolled || !existsSync(join(dataDir, 'identity', 'current', 'identity.json'))) {
      const installerToken = await mintDevToken({
        key: apiSigningKey,
        issuer: 'vigil-dev',
        audience: 'vigil-api',
        tenant: DEV_DEVICE.tenantId,
        roles: ['installer'],
        sub: 'installer@dev',
        ttlSeconds: 300,
      });
      const res = await fetch(`${cloudUrl}/v1/enrollment-tokens`, {
        method: 'POST',
        headers: { authorization: `Bearer ${installerToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ site_id: DEV_DEVICE.siteId, ttl_seconds: 600, note: './dev up' }),
      });
      if (res.status !== 201)
        throw new Error(`minting an enrollment token failed: ${res.status} ${await res.text()}`);
      const enrollToken = ((await res.json()) as { token: string }).token;
      const cmd = `vigil-agent enroll --cloud ${grpcAddress} --ca-file ${pki.caCert} --device-id ${DEV_DEVICE.deviceId} --data-dir ${dataDir} --force`;
      print(`  $ ${cmd}   (token in VIGIL_ENROLL_TOKEN)`);
      await runToEnd(
        registry,
        opts.root,
        [
          'edge-agent/src/main.ts',
          'enroll',
          '--cloud',
          grpcAddress,
          '--ca-file',
          pki.caCert,
          '--device-id',
          DEV_DEVICE.deviceId,
          '--data-dir',
          dataDir,
          '--force',
        ],
        { VIGIL_ENROLL_TOKEN: enrollToken },
        (line) => print(`    ${line}`),
      );
    } else {
      print(
        `  already enrolled as ${DEV_DEVICE.tenantId}/${DEV_DEVICE.deviceId} (${join(dataDir, 'identity')})`,
      );
    }
    const agentPort = await portOr(opts.ports.agentHttp, 'agent HTTP', print);
    const modelPath = opts.assetsDir && join(opts.assetsDir, 'models', 'yolox_nano.onnx');
    const model = modelPath && existsSync(modelPath) ? modelPath : undefined;
    const agentConfig = join(devDir, 'agent.json');
    writeFileSync(
      agentConfig,
      JSON.stringify(
        {
          // No device ids and no NATS settings: both come from the enrolled identity.
          dataDir,
          http: { host: '127.0.0.1', port: agentPort },
          heartbeatSeconds: 2,
          ...(model ? { models: [{ name: 'yolox', type: 'yolox', path: model }] } : {}),
          cameras: mounts.map((m) => ({
            id: m.name,
            url: camera.url(m.name),
            width: 640,
            height: 360,
            fps: 5,
            // Detect people on the real clip when the shared model is there.
            ...(model && m.name === 'lobby' ? { detect: { model: 'yolox', labels: ['person'] } } : {}),
          })),
        },
        null,
        2,
      ),
    );
    const agent = spawnNode(
      registry,
      opts.root,
      'edge-agent/src/main.ts',
      agentConfig,
      join(logsDir, 'agent.log'),
      print,
      'agent',
    );
    stops.push(() => stopChild(agent));
    const agentUrl = `http://127.0.0.1:${agentPort}`;
    await waitForHttp(`${agentUrl}/healthz`, 30_000, agent, true);

    return {
      pki,
      databaseUrl,
      natsUrl,
      natsAuthorityDir,
      cloudUrl,
      grpcAddress,
      agentUrl,
      cameraUrls,
      logsDir,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Runs a workspace entry point from source as its own process; JSON logs go to a file, problems to the console. */
function spawnNode(
  registry: ProcessRegistry,
  root: string,
  entry: string,
  config: string,
  logFile: string,
  print: (l: string) => void,
  label: string,
): ChildProcess {
  const child = registry.spawn(
    process.execPath,
    ['--conditions=@vigil/source', '--import', 'tsx', entry, '--config', config],
    {
      cwd: root,
      env: { ...process.env, FORCE_COLOR: '0' },
    },
  );
  const log = createWriteStream(logFile, { flags: 'a' });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (t: string) => print(`  [${label}] ${t.trim()}`));
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (text: string) => {
    for (const line of text.split('\n')) {
      try {
        const rec = JSON.parse(line) as {
          level?: number;
          msg?: string;
          camera?: string;
          state?: string;
          lastError?: string;
        };
        if ((rec.level ?? 0) >= 40)
          print(
            `  [${label}] ${rec.msg ?? ''}${rec.camera ? ` (${rec.camera})` : ''}${rec.lastError ? `: ${rec.lastError}` : ''}`,
          );
      } catch {
        /* not JSON: already in the log file */
      }
    }
  });
  child.once('exit', (code, signal) => {
    if (code !== 0 && signal !== 'SIGTERM')
      print(`  [${label}] exited (code ${code}, signal ${signal}); see ${logFile}`);
  });
  return child;
}

async function waitForHttp(
  url: string,
  timeoutMs: number,
  child: ChildProcess,
  anyStatus = false,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null)
      throw new Error(`${url}: the process exited with code ${child.exitCode} before it was ready`);
    try {
      const res = await fetch(url);
      if (res.ok || anyStatus) return;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${url} did not become ready within ${timeoutMs} ms`);
}

/** Runs a workspace entry point to completion (e.g. `vigil-agent enroll`), its output line by line; throws on failure. */
async function runToEnd(
  registry: ProcessRegistry,
  root: string,
  args: string[],
  env: Record<string, string>,
  onLine: (line: string) => void,
): Promise<void> {
  const child = registry.spawn(process.execPath, ['--conditions=@vigil/source', '--import', 'tsx', ...args], {
    cwd: root,
    env: { ...process.env, ...env, FORCE_COLOR: '0' },
  });
  for (const stream of [child.stdout, child.stderr]) {
    stream?.setEncoding('utf8');
    stream?.on('data', (t: string) => {
      for (const line of t.split('\n')) if (line.trim()) onLine(line);
    });
  }
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`${args.slice(0, 2).join(' ')} exited with code ${code}`);
}
