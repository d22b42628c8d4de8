/*
 * What the cloud runs on in a self-contained fleet-sim run: the dev PKI, the NATS operator/JWT authority,
 * nats-server (one, or a JetStream cluster: the same JWT fragment on every node, streams R3), PostgreSQL, and the
 * cloud's config as plain JSON (so the cloud can run in this process or as its own).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureDevPki, issueRouteCert } from '@vigil/certs';
import {
  ensureDevConfigSigningKey,
  ensureDevSigningKey,
  ensureNatsAuthority,
  mintDevToken,
} from '@vigil/cloud';
import {
  createDatabase,
  natsConfig,
  NatsCluster,
  NatsServer,
  PostgresCluster,
  ProcessRegistry,
} from '@vigil/devservices';

export const ISSUER = 'vigil-fleet-sim';
export const AUDIENCE = 'vigil-fleet-sim-api';

export interface SimInfraOptions {
  /** An existing PostgreSQL admin URL (a fresh database is created in it); default: a private cluster. */
  pgAdminUrl?: string | undefined;
  /** nats-server max_connections and the like go here (every node). */
  natsExtra?: string | undefined;
  /** Nodes of a NATS JetStream cluster (streams R3 from 3 nodes); 0 or 1: one nats-server. */
  natsCluster?: number | undefined;
  /** nats-server's TLS handshake timeout (default 2 s, as infra/nats); the auth timeout follows it (+1 s). */
  natsTlsTimeoutSeconds?: number | undefined;
  /**
   * Serve an agent release repository (agent-version rollouts): the online key from `vigil release root init`
   * in this keys directory; the repository lives in the stack's temporary directory.
   */
  releaseKeysDir?: string | undefined;
  registry?: ProcessRegistry | undefined;
}

/** A nats-server node as the resource figures and the connection counts see it. */
export interface SimNatsNode {
  name: string;
  pid: () => number | undefined;
  /** http://127.0.0.1:<monitoring port> (/varz, /connz, /jsz). */
  monitorUrl: string;
}

export interface SimInfra {
  dir: string;
  registry: ProcessRegistry;
  natsUrls: string[];
  natsNodes: SimNatsNode[];
  /** The sim's database, and the postmaster's pid (undefined: an external PostgreSQL, not measured). */
  databaseUrl: string;
  postgresPid: () => number | undefined;
  caPem: string;
  pkiDir: string;
  /** The cloud's config (JSON; paths into `dir`) for an HTTP and a gRPC port. */
  cloudConfig(ports: { http: number; grpc: number }): Record<string, unknown>;
  token(tenant: string, roles: string[]): Promise<string>;
  /** Adds a stop step (run in reverse order). */
  onStop(step: () => Promise<void>): void;
  stop(): Promise<void>;
}

export async function startSimInfra(opts: SimInfraOptions = {}): Promise<SimInfra> {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-fleet-sim-'));
  const registry = opts.registry ?? new ProcessRegistry();
  const stops: Array<() => Promise<void>> = [
    () => Promise.resolve(rmSync(dir, { recursive: true, force: true })),
  ];
  const stop = async (): Promise<void> => {
    for (const s of stops.splice(0).reverse()) await s().catch(() => undefined);
  };
  try {
    const pki = ensureDevPki(join(dir, 'pki'), { services: ['cloud'], devices: [] });
    const authority = await ensureNatsAuthority(join(dir, 'nats-auth'));
    const extra = [readFileSync(authority.serverConfigFile, 'utf8'), opts.natsExtra ?? ''].join('\n');
    const tls = { caFile: pki.caCert, certFile: pki.natsServer.cert, keyFile: pki.natsServer.key };
    const size = opts.natsCluster ?? 0;
    let natsUrls: string[];
    let natsNodes: SimNatsNode[];
    if (size > 1) {
      // Routes over mutual TLS with a route certificate of the fleet CA (as infra/nats/cluster and the tests).
      const route = issueRouteCert(
        { certPem: readFileSync(pki.caCert, 'utf8'), keyPem: readFileSync(pki.caKey, 'utf8') },
        { commonName: 'nats-route', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] },
      );
      writeFileSync(join(dir, 'pki', 'route.crt'), route.certPem);
      writeFileSync(join(dir, 'pki', 'route.key'), route.keyPem, { mode: 0o600 });
      const cluster = new NatsCluster({
        size,
        registry,
        tls,
        routeTls: {
          caFile: pki.caCert,
          certFile: join(dir, 'pki', 'route.crt'),
          keyFile: join(dir, 'pki', 'route.key'),
        },
        extra,
        tlsTimeoutSeconds: opts.natsTlsTimeoutSeconds,
      });
      stops.push(() => cluster.dispose());
      await cluster.start(120_000);
      natsUrls = cluster.urls;
      natsNodes = cluster.nodes.map((n, i) => ({
        name: `n${i + 1}`,
        pid: () => n.pid,
        monitorUrl: `http://127.0.0.1:${n.httpPort}`,
      }));
    } else {
      const nats = new NatsServer({
        registry,
        config: (ctx) =>
          natsConfig({ tls, jetstream: true, extra, tlsTimeoutSeconds: opts.natsTlsTimeoutSeconds })(ctx),
      });
      stops.push(() => nats.dispose());
      await nats.start();
      natsUrls = [`tls://localhost:${nats.port}`];
      natsNodes = [{ name: 'n1', pid: () => nats.pid, monitorUrl: `http://127.0.0.1:${nats.httpPort}` }];
    }
    let adminUrl = opts.pgAdminUrl;
    let postgresPid: () => number | undefined = () => undefined;
    if (!adminUrl) {
      const pg = new PostgresCluster({ dir: join(dir, 'pg'), registry });
      await pg.start();
      stops.push(() => pg.stop());
      adminUrl = pg.url;
      postgresPid = () => pg.pid;
    }
    const db = await createDatabase(adminUrl, 'vigil_fleet_sim');
    stops.push(() => db.drop());
    const key = ensureDevSigningKey(join(dir, 'api-key'));
    const cfgKey = await ensureDevConfigSigningKey(join(dir, 'config-key'));
    const svc = pki.services.cloud!;
    const cloudConfig = (ports: { http: number; grpc: number }): Record<string, unknown> => ({
      http: { port: ports.http },
      database: { url: db.url, poolMax: 20 },
      nats: {
        servers: natsUrls,
        tls: { caFile: pki.caCert, certFile: svc.cert, keyFile: svc.key },
        auth: { authorityFile: authority.authorityFile },
      },
      // identity.natsUrls defaults to nats.servers: every enrolled device gets every node's URL.
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
      auth: { issuer: ISSUER, audience: AUDIENCE, jwksFile: key.jwksFile },
      configSigning: { privateJwkFile: cfgKey.privateJwkFile },
      ...(size >= 3 ? { streams: { replicas: 3 } } : {}),
      ...(opts.releaseKeysDir
        ? {
            releases: {
              dir: join(dir, 'releases'),
              onlineKeyFile: join(opts.releaseKeysDir, 'online.key.json'),
              publisherTenant: 'vigil',
            },
          }
        : {}),
    });
    return {
      dir,
      registry,
      natsUrls,
      natsNodes,
      databaseUrl: db.url,
      postgresPid,
      caPem: readFileSync(pki.caCert, 'utf8'),
      pkiDir: join(dir, 'pki'),
      cloudConfig,
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
      onStop: (step) => void stops.push(step),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
