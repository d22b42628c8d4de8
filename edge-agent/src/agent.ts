import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino, type Logger } from 'pino';
import { Gauge } from 'prom-client';
import { openOutbox, type Outbox } from './buffer/index.js';
import type { AgentConfig } from './config/schema.js';
import { ModelRegistry, type ModelSpec } from './detect/index.js';
import { startHealthServer } from './health/http.js';
import { LatestSlot } from './ingest/latest-slot.js';
import {
  CameraSupervisor,
  type CameraState,
  type CameraStatusSnapshot,
  type Frame,
} from './ingest/supervisor.js';
import { createUuidV7 } from './lib/uuidv7.js';
import { CameraPipeline } from './pipeline/camera-pipeline.js';
import { AgentMetrics } from './pipeline/metrics.js';
import { HeartbeatPublisher } from './uplink/heartbeat.js';
import { createUplinkMetrics, inboxPrefixFor, Uplink } from './uplink/index.js';
import {
  natsPlan,
  resolveDeviceIdentity,
  startIdentityRenewal,
  type IdentityClient,
  type IdentityRenewer,
} from './identity/index.js';
import { AGENT_VERSION } from './version.js';
import type { DetectionEvent } from '@vigil/proto';

export { AGENT_VERSION };
const STATES: CameraState[] = ['connecting', 'streaming', 'stalled', 'backing_off', 'stopped'];

export interface AgentDeps {
  logger?: Logger;
  now?: () => Date;
  onSpawn?: (child: ChildProcess) => void;
  onEvent?: (cameraId: string, event: DetectionEvent, snapshot: Buffer | undefined) => void;
  /** The cloud's DeviceService for renewals (default: gRPC); tests substitute it. */
  identityClient?: IdentityClient;
}

export type CameraReport = CameraStatusSnapshot & {
  framesDropped: number;
  fps: number;
  framesProcessed: number;
  detectError?: string;
};

export interface Agent {
  readonly httpPort: number;
  readonly nc: NatsConnection | undefined;
  readonly outbox: Outbox;
  readonly metrics: AgentMetrics;
  /** Outbox -> JetStream; undefined without `nats` or with `uplink.enabled: false`. */
  readonly uplink: Uplink | undefined;
  /** Renews the enrolled identity; undefined without one or with `identity.renew.enabled: false`. */
  readonly renewer: IdentityRenewer | undefined;
  cameraStatus(): CameraReport[];
  stop(): Promise<void>;
}

interface CameraRuntime {
  supervisor: CameraSupervisor;
  slot: LatestSlot<Frame>;
  pipeline: CameraPipeline | undefined;
  detectError: string | undefined;
  fpsWindow: { at: number; frames: number; fps: number };
}

/** Composition root of the edge agent: cameras -> detection -> tracking -> outbox; heartbeats; health. */
export async function startAgent(config: Readonly<AgentConfig>, deps: AgentDeps = {}): Promise<Agent> {
  const log = deps.logger ?? pino({ name: 'vigil-agent', level: config.log.level });
  const now = deps.now ?? (() => new Date());
  const startedAt = now();
  const metrics = new AgentMetrics();
  const newId = createUuidV7(() => now().getTime());
  // First, before anything is opened: an agent that does not know who it is must not start at all.
  const { device, identity, store } = resolveDeviceIdentity(config, (m) => log.warn(m));
  if (identity && identity.notAfter.getTime() <= now().getTime())
    log.error(
      { notAfter: identity.notAfter.toISOString() },
      'the device certificate has expired: NATS will refuse it; enroll again (vigil-agent enroll --force)',
    );

  const outbox = openOutbox(config.buffer.file ?? join(config.dataDir, 'outbox.db'), {
    maxBytes: config.buffer.maxBytes,
    maxEvents: config.buffer.maxEvents,
    ttlMs: config.buffer.ttlHours * 3_600_000,
    eviction: config.buffer.eviction,
    synchronous: config.buffer.synchronous,
    now: () => now().getTime(),
  });
  new Gauge({
    name: 'vigil_agent_buffer_depth',
    help: 'Events waiting in the outbox',
    registers: [metrics.registry],
    collect() {
      this.set(outbox.stats().depth);
    },
  });
  new Gauge({
    name: 'vigil_agent_buffer_bytes',
    help: 'Bytes (events + media) in the outbox',
    registers: [metrics.registry],
    collect() {
      this.set(outbox.stats().bytes);
    },
  });
  new Gauge({
    name: 'vigil_agent_buffer_evicted',
    help: 'Outbox entries evicted since start, by reason (capacity, ttl)',
    labelNames: ['reason'],
    registers: [metrics.registry],
    collect() {
      for (const [reason, n] of Object.entries(outbox.stats().evicted)) this.set({ reason }, n);
    },
  });
  const expiry = setInterval(() => outbox.expire(), 60_000);
  expiry.unref();

  // Models: one session per model, shared by cameras; a broken model costs only its cameras' detection.
  // Each camera pipeline has at most one detect call (plus one face-redaction call) in flight, so a queue as
  // long as that can never overflow: MODEL_BUSY then only means a bug, not load. (With the default of 4 the
  // benchmark found 6 cameras on one model rejected frames while the CPU was far from busy.)
  const models = new ModelRegistry({ maxQueue: Math.max(4, 2 * config.cameras.length) });
  await models.load(config.models.map((m): ModelSpec => ({ ...m })));
  for (const f of models.failures()) log.error({ model: f.name, code: f.error.code }, f.error.message);
  const faceModel =
    config.privacy.redactFaces && config.privacy.faceModel ? models.get(config.privacy.faceModel) : undefined;
  if (config.privacy.redactFaces && !faceModel)
    log.error('face redaction is on but its model is not loaded: snapshots are disabled');

  // Set once the uplink runs: a new event is published at once instead of at the uplink's next tick.
  let notifyUplink = (): void => {};
  const cameras = new Map<string, CameraRuntime>();
  for (const cam of config.cameras.filter((c) => c.enabled)) {
    let pipeline: CameraPipeline | undefined;
    let detectError: string | undefined;
    if (cam.detect) {
      const model = models.get(cam.detect.model);
      if (!model) {
        detectError = `model "${cam.detect.model}" is not loaded: ${models.failures().find((f) => f.name === cam.detect?.model)?.error.message ?? 'unknown'}`;
      } else {
        pipeline = new CameraPipeline({
          camera: { ...cam, detect: cam.detect },
          device,
          model,
          faceModel,
          faceThreshold: config.privacy.faceThreshold,
          snapshots: {
            ...config.snapshots,
            enabled: config.snapshots.enabled && !(config.privacy.redactFaces && !faceModel),
          },
          outbox,
          newId,
          metrics,
          log,
          onEvent: (e, m) => {
            notifyUplink();
            deps.onEvent?.(cam.id, e, m);
          },
        });
      }
    }
    const slot = pipeline?.slot ?? new LatestSlot<Frame>();
    const runtime: CameraRuntime = {
      slot,
      pipeline,
      detectError,
      fpsWindow: { at: Date.now(), frames: 0, fps: 0 },
      supervisor: new CameraSupervisor({
        source: cam,
        now,
        onSpawn: deps.onSpawn,
        onFrame: (frame) => {
          metrics.framesDecoded.inc({ camera: cam.id });
          runtime.fpsWindow.frames++;
          slot.offer(frame);
        },
        onState: (state, status) => {
          for (const s of STATES) metrics.cameraState.set({ camera: cam.id, state: s }, s === state ? 1 : 0);
          if (state === 'backing_off') metrics.cameraRestarts.inc({ camera: cam.id });
          const level = state === 'stalled' || state === 'backing_off' ? 'warn' : 'info';
          log[level](
            { camera: cam.id, state, lastError: status.lastError, gapMs: status.lastGapMs || undefined },
            `camera ${state}`,
          );
        },
      }),
    };
    cameras.set(cam.id, runtime);
  }

  // Cameras without detection still report frames; their slot is simply emptied.
  const drain = setInterval(() => {
    for (const c of cameras.values()) if (!c.pipeline) c.slot.take();
  }, 100);
  drain.unref();

  const statuses = (): CameraReport[] =>
    [...cameras.values()].map((c) => {
      const w = c.fpsWindow;
      const elapsed = (Date.now() - w.at) / 1000;
      if (elapsed >= 5) {
        w.fps = w.frames / elapsed;
        w.frames = 0;
        w.at = Date.now();
      }
      return {
        ...c.supervisor.status,
        framesDropped: c.slot.dropped,
        fps: w.fps,
        framesProcessed: c.pipeline?.processed ?? 0,
        detectError: c.detectError,
      };
    });

  let nc: NatsConnection | undefined;
  let heartbeats: HeartbeatPublisher | undefined;
  let uplink: Uplink | undefined;
  let renewer: IdentityRenewer | undefined;
  const plan = natsPlan(config, identity);
  if (!plan && identity) log.warn('the enrolled identity lists no NATS servers: running offline');
  if (plan) {
    nc = await connect({
      ...plan.options,
      name: `vigil-agent/${device.deviceId}`,
      maxReconnectAttempts: -1,
      waitOnFirstConnect: true,
      // nats.js closes the connection for good after the same authorization error twice. A gateway must
      // not give up: its JWT may have expired while the cloud was unreachable and a renewal will fix it.
      // A revoked device keeps trying (one TLS handshake per reconnectTimeWait) and keeps buffering.
      ignoreAuthErrorAbort: true,
      reconnectTimeWait: 5_000,
      // Replies (PubAcks, receipt query answers) under the device's own inbox prefix, which its NATS
      // permissions allow; no echo, so the agent does not receive its own ReceiptQuery requests.
      inboxPrefix: inboxPrefixFor(device),
      noEcho: true,
    });
    heartbeats = new HeartbeatPublisher(
      nc,
      { ...device, agentVersion: AGENT_VERSION, startedAt, cameras: statuses },
      config.heartbeatSeconds * 1000,
      now,
    );
    heartbeats.start();
    log.info({ server: nc.getServer(), credentials: plan.source }, 'connected to NATS');
    if (config.uplink.enabled) {
      const { enabled: _enabled, backoff, ...options } = config.uplink;
      uplink = new Uplink({
        nc,
        outbox,
        device,
        options: { ...options, backoff: { ...backoff, jitter: 0.5 } },
        logger: log.child({ component: 'uplink' }),
        now: () => now().getTime(),
        metrics: createUplinkMetrics(metrics.registry),
      });
      uplink.start();
      const started = uplink;
      notifyUplink = () => started.notify();
    }
  }

  if (identity && config.identity.renew.enabled) {
    renewer = startIdentityRenewal({
      config,
      store,
      identity,
      nc: plan?.source === 'identity' ? nc : undefined,
      registry: metrics.registry,
      log: log.child({ component: 'identity' }),
      client: deps.identityClient,
      now,
    });
  }

  const { server, port } = await startHealthServer(
    config.http.host,
    config.http.port,
    metrics.registry,
    () => {
      const cams = statuses();
      const stats = outbox.stats();
      return {
        ok: cams.every((c) => c.state !== 'stopped' && !c.detectError),
        version: AGENT_VERSION,
        cameras: cams,
        models: {
          loaded: models.names(),
          failed: models.failures().map((f) => ({ name: f.name, error: f.error.message })),
        },
        buffer: { depth: stats.depth, bytes: stats.bytes, evicted: stats.evicted, rejected: stats.rejected },
        nats: nc ? !nc.isClosed() : 'disabled',
        uplink: uplink?.status() ?? 'disabled',
        identity: identity
          ? {
              deviceId: device.deviceId,
              notAfter: (renewer?.identity ?? identity).notAfter,
              renewal: renewer?.status().state ?? 'disabled',
            }
          : 'none',
      };
    },
  );
  for (const c of cameras.values()) {
    c.pipeline?.start();
    c.supervisor.start();
  }
  log.info(
    { cameras: [...cameras.keys()], health: `http://${config.http.host}:${port}/healthz` },
    'agent started',
  );

  return {
    httpPort: port,
    nc,
    outbox,
    metrics,
    uplink,
    renewer,
    cameraStatus: statuses,
    stop: async () => {
      await renewer?.stop();
      clearInterval(drain);
      clearInterval(expiry);
      heartbeats?.stop();
      await Promise.all([...cameras.values()].map((c) => c.supervisor.stop()));
      for (const c of cameras.values()) if (c.pipeline) await c.pipeline.stop();
      await uplink?.stop();
      await nc?.drain().catch(() => undefined);
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await models.dispose();
      outbox.close();
    },
  };
}
