// The enrollment bench's stack (enroll.bench.ts): a development PKI, the NATS operator/JWT authority, one
// nats-server in that mode with mutual TLS and JetStream, a fresh database (DATABASE_URL, else localhost:5432,
// else a private cluster), and the cloud's config for the gRPC DeviceService. The cloud itself is started by the
// bench (as its own process), so that it can be profiled.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureDevPki, type DevPkiPaths } from '@vigil/certs';
import {
  canConnect,
  createDatabase,
  natsConfig,
  NatsServer,
  PostgresCluster,
  ProcessRegistry,
  type CloudProcess,
} from '@vigil/testkit';
import { ensureDevSigningKey } from '../src/auth/dev-keys.js';
import { ensureNatsAuthority } from '../src/fleet/nats-authority-files.js';
import { log, repoRoot } from './support.js';

export interface EnrollStack {
  dir: string;
  root: string;
  registry: ProcessRegistry;
  pki: DevPkiPaths;
  caPem: string;
  databaseUrl: string;
  natsPid: () => number | undefined;
  cloudConfig(ports: { http: number; grpc: number }): Record<string, unknown>;
  waitReady(apiUrl: string, proc: CloudProcess, timeoutMs?: number): Promise<void>;
  onStop(step: () => Promise<void>): void;
  stop(): Promise<void>;
}

export async function startEnrollStack(): Promise<EnrollStack> {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-enroll-bench-'));
  const registry = new ProcessRegistry();
  const stops: Array<() => Promise<void>> = [
    () => Promise.resolve(rmSync(dir, { recursive: true, force: true })),
  ];
  const stop = async (): Promise<void> => {
    for (const s of stops.splice(0).reverse()) await s().catch(() => undefined);
  };
  try {
    const pki = ensureDevPki(join(dir, 'pki'), { services: ['cloud'], devices: [] });
    const authority = await ensureNatsAuthority(join(dir, 'nats-auth'));
    const nats = new NatsServer({
      registry,
      config: natsConfig({
        tls: { caFile: pki.caCert, certFile: pki.natsServer.cert, keyFile: pki.natsServer.key },
        jetstream: true,
        extra: readFileSync(authority.serverConfigFile, 'utf8'),
      }),
    });
    stops.push(() => nats.dispose());
    await nats.start();
    let adminUrl: string;
    if (process.env.DATABASE_URL && (await canConnect(process.env.DATABASE_URL)))
      adminUrl = process.env.DATABASE_URL;
    else if (await canConnect('postgres://postgres@127.0.0.1:5432/postgres'))
      adminUrl = 'postgres://postgres@127.0.0.1:5432/postgres';
    else {
      const pg = new PostgresCluster({ dir: join(dir, 'pg'), registry });
      await pg.start();
      stops.push(() => pg.stop());
      adminUrl = pg.url;
    }
    const db = await createDatabase(adminUrl, 'vigil_enroll_bench');
    stops.push(() => db.drop());
    const key = ensureDevSigningKey(join(dir, 'api-key'));
    const svc = pki.services.cloud!;
    log(`stack up: nats-server ${nats.port}, database ${db.url.replace(/\/\/[^@]*@/, '//')}`);
    return {
      dir,
      root: repoRoot,
      registry,
      pki,
      caPem: readFileSync(pki.caCert, 'utf8'),
      databaseUrl: db.url,
      natsPid: () => nats.pid,
      cloudConfig: (ports) => ({
        http: { host: '127.0.0.1', port: ports.http },
        database: { url: db.url, poolMax: 20 },
        nats: {
          servers: [`tls://localhost:${nats.port}`],
          tls: { caFile: pki.caCert, certFile: svc.cert, keyFile: svc.key },
          auth: { authorityFile: authority.authorityFile },
        },
        identity: {
          caCertFile: pki.caCert,
          caKeyFile: pki.caKey,
          certificateTtlSeconds: 86_400,
          minRenewIntervalSeconds: 0,
        },
        grpc: {
          enabled: true,
          port: ports.grpc,
          tls: { certFile: pki.cloudApi.cert, keyFile: pki.cloudApi.key },
        },
        auth: { issuer: 'vigil-enroll-bench', audience: 'vigil-enroll-bench', jwksFile: key.jwksFile },
      }),
      waitReady: async (apiUrl, proc, timeoutMs = 180_000) => {
        const deadline = Date.now() + timeoutMs;
        let last = '';
        while (Date.now() < deadline) {
          if (!proc.running())
            throw new Error(`the cloud exited while starting:\n${proc.output().slice(-4000)}`);
          try {
            const res = await fetch(`${apiUrl}/readyz`, { signal: AbortSignal.timeout(2000) });
            last = `${res.status} ${await res.text()}`;
            if (res.ok) return;
          } catch (err) {
            last = (err as Error).message;
          }
          await new Promise((r) => setTimeout(r, 250));
        }
        throw new Error(
          `the cloud was not ready after ${timeoutMs} ms (${last}):\n${proc.output().slice(-4000)}`,
        );
      },
      onStop: (step) => void stops.push(step),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
