import type { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql, type Kysely } from 'kysely';
import { pino } from 'pino';
import { ensureDevPki } from '@vigil/certs';
import { createDb, parseCloudConfig, startCloud, type CloudApp } from '@vigil/cloud';
import {
  createDatabase,
  freePort,
  natsConfig,
  NatsServer,
  PostgresCluster,
  ProcessRegistry,
  stopChild,
} from '@vigil/devservices';
import { CuttableProxy } from './proxy.js';

export interface FaultOptions {
  workDir: string;
  events: number;
  agents: number;
  /** Events per second per agent. */
  rate: number;
  killEveryMs: number;
  natsRestartEveryMs: number;
  pgRestartEveryMs: number;
  cutEveryMs: number;
  cutForMs: number;
  /** Hard stop for the whole run (production + drain). */
  timeoutMs: number;
  log: (line: string) => void;
  registry?: ProcessRegistry;
}

export interface FaultResult {
  produced: number;
  rows: number;
  distinct: number;
  lost: number;
  duplicates: number;
  unacknowledgedExtras: number;
  kills: number;
  natsRestarts: number;
  pgRestarts: number;
  uplinkCuts: number;
  seconds: number;
}

interface Producer {
  name: string;
  child: ChildProcess | undefined;
  acked: Set<string>;
  budget: number;
  depth: number;
  dir: string;
}

const root = resolve(fileURLToPath(import.meta.url), '..', '..', '..', '..', '..');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Produces events from several agent processes while faults are injected (agents kill -9'd, nats-server
 * killed and restarted, PostgreSQL crashed and restarted, the agents' uplink cut), then drains and checks
 * that PostgreSQL holds every acknowledged event exactly once. Loopback only; bounded in time.
 */
export async function runFault(o: FaultOptions): Promise<FaultResult> {
  const started = Date.now();
  const deadline = started + o.timeoutMs;
  const registry = o.registry ?? new ProcessRegistry();
  const devices = Array.from({ length: o.agents }, (_, i) => ({
    tenantId: 'fault',
    siteId: 'lab',
    deviceId: `agent-${i + 1}`,
  }));
  const pki = ensureDevPki(join(o.workDir, 'pki'), { devices, services: ['cloud'] });
  const cleanups: Array<() => Promise<void>> = [];
  const counts = { kills: 0, natsRestarts: 0, pgRestarts: 0 };
  let cloud: CloudApp | undefined;
  let db: Kysely<unknown> | undefined;
  try {
    const nats = new NatsServer({
      dir: join(o.workDir, 'nats'),
      registry,
      config: natsConfig({
        tls: { caFile: pki.caCert, certFile: pki.natsServer.cert, keyFile: pki.natsServer.key },
      }),
    });
    await nats.start();
    cleanups.push(() => nats.dispose());
    const proxy = new CuttableProxy(nats.port, await freePort());
    await proxy.start();
    cleanups.push(() => proxy.stop());

    const pg = new PostgresCluster({ dir: join(o.workDir, 'pg'), registry });
    await pg.start();
    cleanups.push(() => pg.stop('immediate'));
    const database = await createDatabase(pg.url, 'vigil_fault');

    const svc = pki.services.cloud!;
    cloud = await startCloud(
      parseCloudConfig({
        http: { port: 0 },
        api: { enabled: false },
        database: { url: database.url },
        nats: {
          servers: [`tls://localhost:${nats.port}`],
          tls: { caFile: pki.caCert, certFile: svc.cert, keyFile: svc.key },
        },
        log: { level: 'error' },
      }),
      { logger: pino({ level: 'silent' }) }, // crashes are the point here: their errors are expected
    );
    for (const d of devices) await cloud.registry.registerDevice(d);

    const per = Math.floor(o.events / o.agents);
    const producers: Producer[] = devices.map((d, i) => ({
      name: d.deviceId,
      child: undefined,
      acked: new Set(),
      budget: i === 0 ? o.events - per * (o.agents - 1) : per,
      depth: -1,
      dir: join(o.workDir, 'agents', d.deviceId),
    }));
    const spawnProducer = (p: Producer): void => {
      mkdirSync(p.dir, { recursive: true });
      const dev = pki.devices[`fault/${p.name}`]!;
      const remaining = Math.max(0, p.budget - p.acked.size);
      const child = registry.spawn(
        process.execPath,
        [
          '--conditions=@vigil/source',
          '--import',
          'tsx',
          join(root, 'tools/devstack/src/fault/producer.ts'),
          '--dir',
          p.dir,
          '--nats',
          `tls://localhost:${proxy.port}`,
          '--ca',
          pki.caCert,
          '--cert',
          dev.cert,
          '--key',
          dev.key,
          '--tenant',
          'fault',
          '--device',
          p.name,
          '--rate',
          String(o.rate),
          '--budget',
          String(remaining),
        ],
        { cwd: root },
      );
      p.child = child;
      p.depth = -1;
      let partial = '';
      child.stdout?.setEncoding('utf8');
      child.stdout?.on('data', (chunk: string) => {
        const lines = (partial + chunk).split('\n');
        partial = lines.pop() ?? ''; // a line cut by kill -9 was never acknowledged
        for (const l of lines) {
          if (l.startsWith('ack ')) p.acked.add(l.slice(4));
          else if (l.startsWith('depth ')) p.depth = Number(l.slice(6));
        }
      });
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (t: string) => {
        if (!/ExperimentalWarning|--trace-warnings/.test(t)) o.log(`  [${p.name}] ${t.trim().slice(0, 300)}`);
      });
    };
    producers.forEach(spawnProducer);
    cleanups.push(async () => {
      for (const p of producers) if (p.child) await stopChild(p.child, 3_000);
    });

    const produced = () => producers.reduce((n, p) => n + p.acked.size, 0);
    const done = () => producers.every((p) => p.acked.size >= p.budget);
    const next = {
      kill: Date.now() + o.killEveryMs,
      nats: Date.now() + o.natsRestartEveryMs,
      pg: Date.now() + o.pgRestartEveryMs,
      cut: Date.now() + o.cutEveryMs,
    };
    let lastReport = 0;
    while (!done()) {
      if (Date.now() > deadline)
        throw new Error(`fault run timed out while producing (${produced()} of ${o.events} acknowledged)`);
      const now = Date.now();
      if (now >= next.kill) {
        const p = producers[Math.floor(Math.random() * producers.length)]!;
        if (p.child?.pid) {
          p.child.kill('SIGKILL');
          counts.kills++;
          await sleep(300);
          spawnProducer(p);
        }
        next.kill = now + o.killEveryMs;
      }
      if (now >= next.nats) {
        await nats.kill();
        await sleep(1_000);
        await nats.restart();
        counts.natsRestarts++;
        next.nats = Date.now() + o.natsRestartEveryMs;
      }
      if (now >= next.pg) {
        await pg.kill();
        await sleep(1_000);
        await pg.start();
        counts.pgRestarts++;
        next.pg = Date.now() + o.pgRestartEveryMs;
      }
      if (now >= next.cut) {
        proxy.cut(o.cutForMs);
        next.cut = now + o.cutEveryMs;
      }
      if (now - lastReport > 5_000) {
        lastReport = now;
        o.log(
          `  ${produced()}/${o.events} acknowledged; kills ${counts.kills}, nats restarts ${counts.natsRestarts}, pg restarts ${counts.pgRestarts}, cuts ${proxy.cuts}`,
        );
      }
      await sleep(100);
    }
    o.log(`  all ${produced()} events acknowledged by the agents; draining`);
    // Drain: no more faults; every agent's outbox must empty (each entry left only on a commit receipt).
    for (;;) {
      if (Date.now() > deadline)
        throw new Error(
          `fault run timed out while draining (depths ${producers.map((p) => p.depth).join(',')})`,
        );
      for (const p of producers) if (p.child && p.child.exitCode !== null) spawnProducer(p);
      if (producers.every((p) => p.depth === 0)) break;
      await sleep(500);
    }

    db = createDb(database.url, 2) as unknown as Kysely<unknown>;
    const { rows } = await sql<{ event_id: string }>`select event_id::text as event_id from events`.execute(
      db,
    );
    const stored = new Set(rows.map((r) => r.event_id));
    const acked = new Set(producers.flatMap((p) => [...p.acked]));
    let lost = 0;
    for (const id of acked) if (!stored.has(id)) lost++;
    let extras = 0;
    for (const id of stored) if (!acked.has(id)) extras++;
    return {
      produced: acked.size,
      rows: rows.length,
      distinct: stored.size,
      lost,
      duplicates: rows.length - stored.size,
      unacknowledgedExtras: extras,
      kills: counts.kills,
      natsRestarts: counts.natsRestarts,
      pgRestarts: counts.pgRestarts,
      uplinkCuts: proxy.cuts,
      seconds: Math.round((Date.now() - started) / 1000),
    };
  } finally {
    await db?.destroy();
    await cloud?.stop().catch(() => undefined);
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  }
}
