// The fleet identity harness: nats-server in operator/JWT mode with mutual TLS and JetStream, PostgreSQL,
// and the real cloud with the gRPC DeviceService (Enroll/Renew), the REST API and the NATS account publisher.
// Devices start with nothing: they enroll through gRPC like a real gateway.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { pino, type Logger } from 'pino';
import { afterAll, beforeAll } from 'vitest';
import { DeviceServiceClient } from '@vigil/proto';
import {
  natsConfig,
  printLogsOnFailure,
  useDatabase,
  useNats,
  usePki,
  type NatsServer,
} from '@vigil/testkit';
import type { DevPkiPaths } from '@vigil/certs';
import {
  ACCOUNT_MAX_STREAMS,
  ensureDevSigningKey,
  ensureNatsAuthority,
  mintDevToken,
  parseCloudConfig,
  startCloud,
  type CloudApp,
  type DevSigningKey,
  type NatsAuthorityFiles,
} from '../../src/index.js';

export const ISSUER = 'vigil-test';
export const AUDIENCE = 'vigil-api-test';

export interface FleetStack {
  cloud(): CloudApp;
  nats(): NatsServer;
  pki(): DevPkiPaths;
  natsUrl(): string;
  grpcAddress(): string;
  authority(): NatsAuthorityFiles;
  /** A DeviceService client over TLS trusting the fleet CA, with a client certificate when given. */
  client(cert?: { certPem: string; keyPem: string }): DeviceServiceClient;
  /** A dev API token for `tenant` with `roles` (subject user@tenant). */
  token(tenant: string, roles: string[]): Promise<string>;
  api(path: string, token: string, init?: RequestInit): Promise<Response>;
  /** Creates an enrollment token through the API (as an installer of `tenant`). */
  enrollmentToken(tenant: string, site: string, ttlSeconds?: number): Promise<string>;
  logs(): string;
}

export function useFleetStack(config: Record<string, unknown> = {}): FleetStack {
  const pki = usePki({ services: ['cloud'] });
  let files: NatsAuthorityFiles | undefined;
  let dir: string | undefined;
  // Registered before useNats: the server config includes the authority's fragment.
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vigil-nats-auth-'));
    // One stream more than the cloud's: the security suite's canary.
    files = await ensureNatsAuthority(dir, { maxStreams: ACCOUNT_MAX_STREAMS + 1 });
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  const nats = useNats({
    config: (ctx) =>
      natsConfig({
        tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
        jetstream: true,
        // nats-server 2.9 resolves `include` relative to the config file only: inline the fragment.
        extra: ['debug: true', readFileSync(files!.serverConfigFile, 'utf8')].join('\n'),
      })(ctx),
  });
  const dbUrl = useDatabase();
  const lines: string[] = [];
  const logger: Logger = pino(
    { level: 'debug' },
    {
      write: (line: string) => {
        lines.push(line);
        if (lines.length > 3000) lines.shift();
      },
    },
  );
  printLogsOnFailure('cloud', () => lines.join(''));
  let cloud: CloudApp | undefined;
  let key: DevSigningKey | undefined;
  const clients: grpc.Client[] = [];
  const natsUrl = (): string => `tls://localhost:${nats().port}`;

  beforeAll(async () => {
    key = ensureDevSigningKey(pki().dir);
    const svc = pki().services.cloud!;
    cloud = await startCloud(
      parseCloudConfig({
        http: { port: 0 },
        database: { url: dbUrl() },
        nats: {
          servers: [natsUrl()],
          tls: { caFile: pki().caCert, certFile: svc.cert, keyFile: svc.key },
          auth: { authorityFile: files!.authorityFile },
        },
        identity: {
          caCertFile: pki().caCert,
          caKeyFile: pki().caKey,
          certificateTtlSeconds: 3600,
          minRenewIntervalSeconds: 0,
        },
        grpc: {
          enabled: true,
          port: 0,
          tls: { certFile: pki().cloudApi.cert, keyFile: pki().cloudApi.key },
        },
        auth: { issuer: ISSUER, audience: AUDIENCE, jwksFile: key.jwksFile },
        ...config,
      }),
      { logger },
    );
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await cloud?.stop();
  });

  const stack: FleetStack = {
    cloud: () => cloud!,
    nats,
    pki,
    natsUrl,
    grpcAddress: () => `localhost:${cloud!.grpcPort!}`,
    authority: () => files!,
    client(cert) {
      const creds = grpc.credentials.createSsl(
        readFileSync(pki().caCert),
        cert ? Buffer.from(cert.keyPem) : null,
        cert ? Buffer.from(cert.certPem) : null,
      );
      const c = new DeviceServiceClient(stack.grpcAddress(), creds);
      clients.push(c);
      return c;
    },
    token: (tenant, roles) =>
      mintDevToken({
        key: key!,
        issuer: ISSUER,
        audience: AUDIENCE,
        tenant,
        roles,
        sub: `user@${tenant}`,
        ttlSeconds: 600,
      }),
    api: (path, token, init = {}) =>
      fetch(`http://127.0.0.1:${cloud!.httpPort}${path}`, {
        ...init,
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          ...(init.headers ?? {}),
        },
      }),
    async enrollmentToken(tenant, site, ttlSeconds = 600) {
      const res = await stack.api('/v1/enrollment-tokens', await stack.token(tenant, ['installer']), {
        method: 'POST',
        body: JSON.stringify({ site_id: site, ttl_seconds: ttlSeconds }),
      });
      if (res.status !== 201) throw new Error(`token creation failed: ${res.status} ${await res.text()}`);
      return ((await res.json()) as { token: string }).token;
    },
    logs: () => lines.join(''),
  };
  return stack;
}
