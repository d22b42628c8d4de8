import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, inject } from 'vitest';
import './provided.js';
import { ensureDevPki, issueRouteCert, type DevPkiOptions, type DevPkiPaths } from '@vigil/certs';
import { CameraSim, type CameraSimMount } from '@vigil/camera-sim';
import {
  createDatabase,
  NatsCluster,
  NatsServer,
  PgBouncer,
  ProcessRegistry,
  RedisServer,
  type NatsServerOptions,
  type PgBouncerOptions,
  type RedisServerOptions,
} from '@vigil/devservices';

/** One registry per test worker; its pid files let the global setup reap what a dead worker leaves. */
export const registry = new ProcessRegistry();

/** Prints `logs()` under the failing test's name when any test in the file fails. */
export function printLogsOnFailure(label: string, logs: () => string): void {
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail')
      console.error(`\n----- ${label} logs (${ctx.task.name}) -----\n${logs()}\n-----`);
  });
}

/** A real nats-server for this test file (started before all tests, stopped after). */
export function useNats(opts: Omit<NatsServerOptions, 'registry'> = {}): () => NatsServer {
  let server: NatsServer | undefined;
  beforeAll(async () => {
    server = await new NatsServer({ ...opts, registry }).start();
  });
  afterAll(async () => {
    await server?.dispose();
  });
  printLogsOnFailure('nats-server', () => server?.logs.text() ?? '(not started)');
  return () => {
    if (!server) throw new Error('useNats(): the server is only available inside tests and hooks');
    return server;
  };
}

/**
 * A real redis-server for this test file (its own port and dir, no persistence; started before all tests,
 * stopped after). Never the machine's Redis on 6379: tests must not share state with anything else.
 */
export function useRedis(opts: Omit<RedisServerOptions, 'registry'> = {}): () => RedisServer {
  let server: RedisServer | undefined;
  beforeAll(async () => {
    server = await new RedisServer({ ...opts, registry }).start();
  });
  afterAll(async () => {
    await server?.dispose();
  });
  printLogsOnFailure('redis-server', () => server?.logs.text() ?? '(not started)');
  return () => {
    if (!server) throw new Error('useRedis(): the server is only available inside tests and hooks');
    return server;
  };
}

/**
 * A real pgbouncer for this test file in front of the PostgreSQL server the global setup provides (transaction
 * pooling unless told otherwise); `url(db)` is a database of that server reached through it.
 */
export function usePgBouncer(opts: Omit<PgBouncerOptions, 'registry' | 'upstreamUrl'> = {}): () => PgBouncer {
  let server: PgBouncer | undefined;
  beforeAll(async () => {
    server = await new PgBouncer({ ...opts, upstreamUrl: inject('pgAdminUrl'), registry }).start();
  });
  afterAll(async () => {
    await server?.dispose();
  });
  printLogsOnFailure('pgbouncer', () => server?.logs.text() ?? '(not started)');
  return () => {
    if (!server) throw new Error('usePgBouncer(): pgbouncer is only available inside tests and hooks');
    return server;
  };
}

/** A fresh PostgreSQL database for this test file; dropped afterwards. Returns its URL. */
export function useDatabase(): () => string {
  let db: Awaited<ReturnType<typeof createDatabase>> | undefined;
  beforeAll(async () => {
    db = await createDatabase(inject('pgAdminUrl'));
  });
  afterAll(async () => {
    await db?.drop();
  });
  return () => {
    if (!db) throw new Error('useDatabase(): the database is only available inside tests and hooks');
    return db.url;
  };
}

/** The RTSP camera-sim serving `mounts` for this test file. */
export function useCameraSim(mounts: CameraSimMount[]): () => CameraSim {
  const sim = new CameraSim({ mounts, onSpawn: (child) => registry.track(child, 'camera-sim') });
  beforeAll(() => sim.start());
  afterAll(() => sim.stop());
  printLogsOnFailure('camera-sim', () => sim.logs());
  return () => sim;
}

/** A development PKI in a temp dir for this test file (fleet CA, server, service and device certs). */
export function usePki(opts?: DevPkiOptions): () => DevPkiPaths {
  let dir: string | undefined;
  let paths: DevPkiPaths | undefined;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'vigil-pki-'));
    paths = ensureDevPki(dir, opts);
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return () => {
    if (!paths) throw new Error('usePki(): the PKI is only available inside tests and hooks');
    return paths;
  };
}

/**
 * A real 3-node nats-server cluster for this test file (client mutual TLS with `pki`'s server certificate,
 * routes over mutual TLS with a route certificate issued here by the same CA), started before all tests with a
 * JetStream meta leader elected. `extra` (a function: read in beforeAll) is appended to every node's config.
 */
export function useNatsCluster(
  pki: () => DevPkiPaths,
  opts: { size?: number; extra?: () => string } = {},
): () => NatsCluster {
  let cluster: NatsCluster | undefined;
  let dir: string | undefined;
  beforeAll(async () => {
    const p = pki();
    dir = mkdtempSync(join(tmpdir(), 'vigil-route-pki-'));
    const route = issueRouteCert(
      { certPem: readFileSync(p.caCert, 'utf8'), keyPem: readFileSync(p.caKey, 'utf8') },
      { commonName: 'nats-route', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] },
    );
    writeFileSync(join(dir, 'route.crt'), route.certPem);
    writeFileSync(join(dir, 'route.key'), route.keyPem, { mode: 0o600 });
    cluster = await new NatsCluster({
      size: opts.size,
      registry,
      tls: { caFile: p.caCert, certFile: p.natsServer.cert, keyFile: p.natsServer.key },
      routeTls: { caFile: p.caCert, certFile: join(dir, 'route.crt'), keyFile: join(dir, 'route.key') },
      extra: opts.extra?.(),
    }).start();
  }, 120_000);
  afterAll(async () => {
    await cluster?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  printLogsOnFailure('nats cluster', () => cluster?.logs() ?? '(not started)');
  return () => {
    if (!cluster) throw new Error('useNatsCluster(): the cluster is only available inside tests and hooks');
    return cluster;
  };
}
