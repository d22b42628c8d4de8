import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { ensureDevPki } from '@vigil/certs';
import {
  ensureDevConfigSigningKey,
  ensureDevSigningKey,
  ensureNatsAuthority,
  mintDevToken,
  parseCloudConfig,
  startCloud,
  type CloudApp,
} from '@vigil/cloud';
import { createDatabase, natsConfig, NatsServer, PostgresCluster } from '@vigil/devservices';

const ISSUER = 'vigil-fleet-sim';
const AUDIENCE = 'vigil-fleet-sim-api';

/** A whole cloud in this process: nats-server (operator/JWT mode, mutual TLS, JetStream), PostgreSQL, the cloud. */
export interface SimStack {
  cloud: CloudApp;
  natsUrl: string;
  grpcAddress: string;
  caPem: string;
  apiUrl: string;
  /** The dev PKI directory (the CLI's --pki) and the API token settings (the CLI's --issuer/--audience). */
  pkiDir: string;
  issuer: string;
  audience: string;
  token(tenant: string, roles: string[]): Promise<string>;
  stop(): Promise<void>;
}

export interface SimStackOptions {
  /** An existing PostgreSQL admin URL (a fresh database is created in it); default: a private cluster. */
  pgAdminUrl?: string | undefined;
  logger?: Logger | undefined;
  /** nats-server max_connections and the like go here. */
  natsExtra?: string | undefined;
  /**
   * Serve an agent release repository (agent-version rollouts): the online key from `vigil release root init`
   * in this keys directory; the repository lives in the stack's temporary directory.
   */
  releaseKeysDir?: string | undefined;
}

export async function startSimStack(opts: SimStackOptions = {}): Promise<SimStack> {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-fleet-sim-'));
  const stops: Array<() => Promise<void>> = [
    () => Promise.resolve(rmSync(dir, { recursive: true, force: true })),
  ];
  const stop = async (): Promise<void> => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  };
  try {
    const pki = ensureDevPki(join(dir, 'pki'), { services: ['cloud'], devices: [] });
    const authority = await ensureNatsAuthority(join(dir, 'nats-auth'));
    const nats = new NatsServer({
      config: (ctx) =>
        natsConfig({
          tls: { caFile: pki.caCert, certFile: pki.natsServer.cert, keyFile: pki.natsServer.key },
          jetstream: true,
          extra: [readFileSync(authority.serverConfigFile, 'utf8'), opts.natsExtra ?? ''].join('\n'),
        })(ctx),
    });
    await nats.start();
    stops.push(() => nats.stop());
    let adminUrl = opts.pgAdminUrl;
    if (!adminUrl) {
      const pg = new PostgresCluster({ dir: join(dir, 'pg') });
      await pg.start();
      stops.push(() => pg.stop());
      adminUrl = pg.url;
    }
    const db = await createDatabase(adminUrl, 'vigil_fleet_sim');
    stops.push(() => db.drop());
    const key = ensureDevSigningKey(join(dir, 'api-key'));
    const cfgKey = await ensureDevConfigSigningKey(join(dir, 'config-key'));
    const svc = pki.services.cloud!;
    const natsUrl = `tls://localhost:${nats.port}`;
    const cloud = await startCloud(
      parseCloudConfig({
        http: { port: 0 },
        database: { url: db.url, poolMax: 20 },
        nats: {
          servers: [natsUrl],
          tls: { caFile: pki.caCert, certFile: svc.cert, keyFile: svc.key },
          auth: { authorityFile: authority.authorityFile },
        },
        identity: {
          caCertFile: pki.caCert,
          caKeyFile: pki.caKey,
          certificateTtlSeconds: 86_400,
          minRenewIntervalSeconds: 0,
        },
        grpc: { enabled: true, port: 0, tls: { certFile: pki.cloudApi.cert, keyFile: pki.cloudApi.key } },
        auth: { issuer: ISSUER, audience: AUDIENCE, jwksFile: key.jwksFile },
        configSigning: { privateJwkFile: cfgKey.privateJwkFile },
        ...(opts.releaseKeysDir
          ? {
              releases: {
                dir: join(dir, 'releases'),
                onlineKeyFile: join(opts.releaseKeysDir, 'online.key.json'),
                publisherTenant: 'vigil',
              },
            }
          : {}),
      }),
      { logger: opts.logger ?? pino({ level: 'warn' }) },
    );
    stops.push(() => cloud.stop());
    return {
      cloud,
      natsUrl,
      grpcAddress: `localhost:${cloud.grpcPort!}`,
      caPem: readFileSync(pki.caCert, 'utf8'),
      apiUrl: `http://127.0.0.1:${cloud.httpPort}`,
      pkiDir: join(dir, 'pki'),
      issuer: ISSUER,
      audience: AUDIENCE,
      token: (tenant, roles) =>
        mintDevToken({
          key,
          issuer: ISSUER,
          audience: AUDIENCE,
          tenant,
          roles,
          sub: `sim@${tenant}`,
          ttlSeconds: 3600,
        }),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
