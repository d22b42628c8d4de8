// Shared harness for the ingest tests: a real nats-server (mTLS + JetStream), a real PostgreSQL database
// and the real cloud (startCloud); devices publish with their own client certificates, as agents do.
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { sql } from 'kysely';
import { pino, type Logger } from 'pino';
import { afterAll, beforeAll } from 'vitest';
import {
  CommitReceipt,
  DetectionEvent,
  deviceInboxPrefix,
  Priority,
  subjectFor,
  TrackPhase,
} from '@vigil/proto';
import {
  natsConfig,
  printLogsOnFailure,
  useNats,
  usePki,
  uuidV7 as uuidv7,
  type NatsServer,
} from '@vigil/testkit';
import { parseCloudConfig, startCloud, type CloudApp, type CloudDeps } from '../../src/index.js';
import { traceLogMixin } from '../../src/lib/tracing.js';

export interface TestDevice {
  tenantId: string;
  siteId: string;
  deviceId: string;
}

export { uuidv7 };

/** A valid event of `device` on camera cam1, as the agent builds it. */
export function makeEvent(device: TestDevice, overrides: Partial<DetectionEvent> = {}): DetectionEvent {
  const at = overrides.occurredAt ?? new Date();
  return DetectionEvent.fromPartial({
    eventId: uuidv7(at.getTime()),
    tenantId: device.tenantId,
    siteId: device.siteId,
    deviceId: device.deviceId,
    cameraId: 'cam1',
    occurredAt: at,
    trackId: 't-1',
    phase: TrackPhase.TRACK_PHASE_START,
    label: 'person',
    score: 0.9,
    box: { x: 0.1, y: 0.2, w: 0.3, h: 0.4 },
    zones: ['door'],
    model: { name: 'yolox-nano', sha256: 'ab'.repeat(32) },
    priority: Priority.PRIORITY_NORMAL,
    attributes: { duration_ms: '120' },
    ...overrides,
  });
}

export function evtSubject(device: TestDevice, camera = 'cam1'): string {
  return subjectFor(device.tenantId, device.deviceId, 'evt', camera);
}

/** A device's own NATS connection (its client certificate) with JetStream and collected receipts. */
export interface DeviceLink {
  nc: NatsConnection;
  js: JetStreamClient;
  /** Every event id listed by a CommitReceipt pushed to this device. */
  receipted: Set<string>;
  receipts: CommitReceipt[];
  publish(ev: DetectionEvent, msgID?: string): Promise<{ duplicate: boolean; seq: number }>;
  publishRaw(subject: string, data: Uint8Array, msgID: string): Promise<{ duplicate: boolean; seq: number }>;
  close(): Promise<void>;
}

export interface IngestStack {
  cloud(): CloudApp;
  nats(): NatsServer;
  natsUrl(): string;
  /** The cloud service's own connection for inspecting streams (JetStream API). */
  jsm(): JetStreamManager;
  device(d: TestDevice): Promise<DeviceLink>;
  rowCount(): Promise<number>;
  metric(name: string, labels?: string): Promise<number>;
  logs(): string;
  /** Starts another cloud process on the same NATS and database (stopped after the file's tests). */
  startCloud(config?: Record<string, unknown>, deps?: Omit<CloudDeps, 'logger'>): Promise<CloudApp>;
}

/**
 * Starts PKI, nats-server and the cloud for one test file. `databaseUrl` is read in beforeAll (after the
 * caller's own beforeAll hooks registered earlier have run). Devices in `registered` are registered.
 */
export function useIngestStack(opts: {
  devices: TestDevice[];
  registered: TestDevice[];
  databaseUrl: () => string;
  config?: Record<string, unknown>;
  /** Passed to startCloud (e.g. a tracer over an in-memory exporter). */
  deps?: Omit<CloudDeps, 'logger'>;
  /** Level of the captured cloud log (default info). */
  logLevel?: string;
}): IngestStack {
  const pki = usePki({ devices: opts.devices, services: ['cloud'] });
  const nats = useNats({
    config: (ctx) =>
      natsConfig({
        tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
      })(ctx),
  });
  const lines: string[] = [];
  const logger: Logger = pino(
    // The mixin as the cloud's own logger has it: lines inside an active span carry its ids.
    { level: opts.logLevel ?? 'info', mixin: traceLogMixin },
    {
      write: (line: string) => {
        lines.push(line);
        if (lines.length > 3000) lines.shift();
      },
    },
  );
  printLogsOnFailure('cloud', () => lines.join(''));
  let cloud: CloudApp | undefined;
  let inspector: NatsConnection | undefined;
  let jsm: JetStreamManager | undefined;
  const links: DeviceLink[] = [];
  const extra: CloudApp[] = [];
  const natsUrl = (): string => `tls://localhost:${nats().port}`;
  const cloudTls = () => {
    const svc = pki().services.cloud!;
    return { caFile: pki().caCert, certFile: svc.cert, keyFile: svc.key };
  };
  const cloudConfig = (config: Record<string, unknown> | undefined) =>
    parseCloudConfig({
      http: { port: 0 },
      database: { url: opts.databaseUrl() },
      nats: { servers: [natsUrl()], tls: cloudTls() },
      // The REST API is another role (and needs a JWKS): off here.
      api: { enabled: false },
      ...config,
    });

  beforeAll(async () => {
    const tls = cloudTls();
    cloud = await startCloud(cloudConfig(opts.config), { ...opts.deps, logger });
    for (const d of opts.registered) await cloud.registry.registerDevice(d);
    inspector = await connect({
      servers: [natsUrl()],
      tls,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    });
    jsm = await jetstreamManager(inspector);
  });
  afterAll(async () => {
    for (const link of links) await link.close();
    await inspector?.close();
    for (const c of extra) await c.stop();
    await cloud?.stop();
  });

  return {
    cloud: () => cloud!,
    nats,
    natsUrl,
    jsm: () => jsm!,
    logs: () => lines.join(''),
    async startCloud(config, deps) {
      const app = await startCloud(cloudConfig(config), { ...deps, logger });
      extra.push(app);
      return app;
    },
    async device(d) {
      const paths = pki().devices[`${d.tenantId}/${d.deviceId}`]!;
      const nc = await connect({
        servers: [natsUrl()],
        tls: { caFile: pki().caCert, certFile: paths.cert, keyFile: paths.key },
        // As an agent does: the cloud answers requests only into the requesting device's own inbox.
        inboxPrefix: deviceInboxPrefix(d.tenantId, d.deviceId),
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
      });
      const js = jetstream(nc);
      const receipted = new Set<string>();
      const receipts: CommitReceipt[] = [];
      nc.subscribe(subjectFor(d.tenantId, d.deviceId, 'rcpt'), {
        callback: (err, msg) => {
          // The device's own ReceiptQuery requests arrive here too (same subject): they have a reply
          // subject and must never be taken for receipts.
          if (err || msg.reply) return;
          const r = CommitReceipt.decode(msg.data);
          receipts.push(r);
          for (const id of r.eventIds) receipted.add(id);
        },
      });
      const publishRaw = async (subject: string, data: Uint8Array, msgID: string) => {
        const ack = await js.publish(subject, data, { msgID });
        return { duplicate: ack.duplicate, seq: ack.seq };
      };
      const link: DeviceLink = {
        nc,
        js,
        receipted,
        receipts,
        publishRaw,
        publish: (ev, msgID) =>
          publishRaw(
            subjectFor(ev.tenantId, ev.deviceId, 'evt', ev.cameraId),
            DetectionEvent.encode(ev).finish(),
            msgID ?? ev.eventId,
          ),
        close: () => nc.close(),
      };
      links.push(link);
      return link;
    },
    async rowCount() {
      const { rows } = await sql<{ n: string }>`select count(*) as n from events`.execute(cloud!.db);
      return Number(rows[0]?.n ?? 0);
    },
    async metric(name, labels = '') {
      const text = await (await fetch(`http://127.0.0.1:${cloud!.httpPort}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
      return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
    },
  };
}

/** Publishes with bounded concurrency (like the agent's in-flight window). */
export async function publishAll<T>(
  items: T[],
  window: number,
  publish: (item: T) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++]!;
      await publish(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, items.length) }, worker));
}
