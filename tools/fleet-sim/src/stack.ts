import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino, type Logger } from 'pino';
import { parseCloudConfig, startCloud, type CloudApp } from '@vigil/cloud';
import { freePort, spawnCloud, type CloudProcess } from '@vigil/devservices';
import {
  AUDIENCE,
  ISSUER,
  startSimInfra,
  type SimInfra,
  type SimInfraOptions,
  type SimNatsNode,
} from './infra.js';

/** What a self-contained run talks to and measures, wherever its cloud runs. */
export interface SimStackBase {
  /** The first node's URL, and every node's (one with a single nats-server). */
  natsUrl: string;
  natsUrls: string[];
  natsNodes: SimNatsNode[];
  grpcAddress: string;
  caPem: string;
  apiUrl: string;
  /** The cloud's Prometheus metrics. */
  metricsUrl: string;
  /** The sim's database; the postmaster's pid (undefined with an external PostgreSQL). */
  databaseUrl: string;
  postgresPid: () => number | undefined;
  /** The pid the cloud runs in (this process's when it runs in process). */
  cloudPid: () => number | undefined;
  /** The dev PKI directory (the CLI's --pki) and the API token settings (the CLI's --issuer/--audience). */
  pkiDir: string;
  issuer: string;
  audience: string;
  token(tenant: string, roles: string[]): Promise<string>;
  stop(): Promise<void>;
}

/** A whole cloud with the cloud in this process: nats-server(s) in operator/JWT mode, mutual TLS, JetStream. */
export interface SimStack extends SimStackBase {
  cloud: CloudApp;
}

/** The same with the cloud as its own process (cloud/src/main.ts), so that its CPU and RSS are its own. */
export interface SimProcessStack extends SimStackBase {
  cloudProcess: CloudProcess;
}

export interface SimStackOptions extends SimInfraOptions {
  logger?: Logger | undefined;
}

export async function startSimStack(opts: SimStackOptions = {}): Promise<SimStack> {
  const infra = await startSimInfra(opts);
  try {
    const cloud = await startCloud(parseCloudConfig(infra.cloudConfig({ http: 0, grpc: 0 })), {
      logger: opts.logger ?? pino({ level: 'warn' }),
    });
    infra.onStop(() => cloud.stop());
    const apiUrl = `http://127.0.0.1:${cloud.httpPort}`;
    return {
      ...base(infra, apiUrl, `localhost:${cloud.grpcPort!}`),
      cloud,
      cloudPid: () => process.pid,
    };
  } catch (err) {
    await infra.stop();
    throw err;
  }
}

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/**
 * The stack with the cloud as a child process (all roles, log level warn), ready once its /readyz says so.
 * Its output is kept (the tail goes into the error when it does not get ready).
 */
export async function startSimProcessStack(
  opts: SimInfraOptions & { readyTimeoutMs?: number } = {},
): Promise<SimProcessStack> {
  const infra = await startSimInfra(opts);
  try {
    const ports = { http: await freePort(), grpc: await freePort() };
    const proc = spawnCloud(
      infra.dir,
      { ...infra.cloudConfig(ports), log: { level: 'warn' } },
      { root, registry: infra.registry, name: 'fleet-sim' },
    );
    infra.onStop(() => proc.stop());
    const apiUrl = `http://127.0.0.1:${ports.http}`;
    await waitReady(apiUrl, proc, opts.readyTimeoutMs ?? 180_000);
    return {
      ...base(infra, apiUrl, `localhost:${ports.grpc}`),
      cloudProcess: proc,
      cloudPid: () => (proc.running() ? proc.child.pid : undefined),
    };
  } catch (err) {
    await infra.stop();
    throw err;
  }
}

async function waitReady(apiUrl: string, proc: CloudProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (!proc.running())
      throw new Error(`the cloud process exited while starting:\n${proc.output().slice(-4000)}`);
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
    `the cloud process was not ready after ${timeoutMs} ms (${last}):\n${proc.output().slice(-4000)}`,
  );
}

function base(infra: SimInfra, apiUrl: string, grpcAddress: string): Omit<SimStackBase, 'cloudPid'> {
  return {
    natsUrl: infra.natsUrls[0]!,
    natsUrls: infra.natsUrls,
    natsNodes: infra.natsNodes,
    grpcAddress,
    caPem: infra.caPem,
    apiUrl,
    metricsUrl: `${apiUrl}/metrics`,
    databaseUrl: infra.databaseUrl,
    postgresPid: infra.postgresPid,
    pkiDir: infra.pkiDir,
    issuer: ISSUER,
    audience: AUDIENCE,
    token: (tenant, roles) => infra.token(tenant, roles),
    stop: () => infra.stop(),
  };
}
