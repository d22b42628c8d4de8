import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Tracer } from '@opentelemetry/api';
import { pino, type Logger } from 'pino';
import { Counter, Gauge } from 'prom-client';
import { openOutbox, type Outbox } from './buffer/index.js';
import type { AgentConfig } from './config/schema.js';
import { ModelRegistry, type LoadedModel, type ModelSpec } from './detect/index.js';
import { healthChecks } from './health/checks.js';
import { startHealthServer } from './health/http.js';
import { LatestSlot } from './ingest/latest-slot.js';
import { withModelScale } from './ingest/ffmpeg-args.js';
import {
  CameraSupervisor,
  type CameraState,
  type CameraStatusSnapshot,
  type Frame,
} from './ingest/supervisor.js';
import { createTracing, traceLogMixin } from './lib/tracing.js';
import { createUuidV7 } from './lib/uuidv7.js';
import { CameraPipeline } from './pipeline/camera-pipeline.js';
import { AgentMetrics } from './pipeline/metrics.js';
import { deviceHealthOf, HeartbeatPublisher } from './uplink/heartbeat.js';
import { createUplinkMetrics, inboxPrefixFor, Uplink } from './uplink/index.js';
import {
  natsPlan,
  resolveDeviceIdentity,
  startIdentityRenewal,
  type IdentityClient,
  type IdentityRenewer,
} from './identity/index.js';
import { AGENT_VERSION } from './version.js';
import { updateDir } from './updater/contract.js';
import { UpdateLink } from './updater/link.js';
import type { DetectionEvent, DeviceConfig, DeviceHealth } from '@vigil/proto';
import type { CameraConfig } from './config/schema.js';
import { ConfigJournal, configDir } from './remote-config/journal.js';
import { RemoteConfigManager, startRemoteConfig, type HealthVerdict } from './remote-config/manager.js';
import { grpcModelFetcher, type ModelFetcher } from './remote-config/models.js';
import type { ConfigPlan } from './remote-config/plan.js';
import { loadTrustSet } from './remote-config/trust.js';

export { AGENT_VERSION };
const STATES: CameraState[] = ['connecting', 'streaming', 'stalled', 'backing_off', 'stopped', 'ended'];

export interface AgentDeps {
  logger?: Logger;
  now?: () => Date;
  onSpawn?: (child: ChildProcess) => void;
  onEvent?: (cameraId: string, event: DetectionEvent, snapshot: Buffer | undefined) => void;
  /** The cloud's DeviceService for renewals (default: gRPC); tests substitute it. */
  identityClient?: IdentityClient;
  /** Models OTA source (default: gRPC FetchModel with the enrolled identity); tests substitute it. */
  modelFetcher?: ModelFetcher;
  /** Spans go here instead of the provider `tracing` config builds (tests: an in-memory exporter). */
  tracer?: Tracer;
  /**
   * The version this agent reports (default: its release stamp). Tests that stand in for the updater start the
   * "new release" with it, as the updater would start the new bundle.
   */
  agentVersion?: string;
}

export type CameraReport = CameraStatusSnapshot & {
  framesDropped: number;
  fps: number;
  framesProcessed: number;
  /** Of the processed frames: the detector ran / the motion gate skipped it. */
  framesDetected: number;
  framesSkipped: number;
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
  /** Signed remote config; undefined without NATS or with `remoteConfig.enabled: false`. */
  readonly remoteConfig: RemoteConfigManager | undefined;
  /** The config the agent runs now (the bootstrap, or with the applied remote config over it). */
  runningConfig(): AgentConfig;
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
export async function startAgent(bootstrap: Readonly<AgentConfig>, deps: AgentDeps = {}): Promise<Agent> {
  const config = bootstrap;
  const log = deps.logger ?? pino({ name: 'vigil-agent', level: config.log.level, mixin: traceLogMixin });
  const tracing = createTracing(config.tracing, {
    serviceName: 'vigil-agent',
    serviceVersion: AGENT_VERSION,
  });
  const tracer = deps.tracer ?? tracing.tracer;
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

  // The remote config journal decides what runs: the bootstrap, or the last applied remote config over it
  // (never a half-applied one: an interrupted apply is dropped here).
  const journal = new ConfigJournal(configDir(config.dataDir));
  const remoteStart = startRemoteConfig(config, journal, log.child({ component: 'remote-config' }));
  const agentVersion = deps.agentVersion ?? AGENT_VERSION;
  // The updater contract: the applied config's agent version is asked for, the updater's status reported.
  const updater = config.updater.enabled
    ? new UpdateLink({
        dir: config.updater.dir ?? updateDir(config.dataDir),
        agentVersion,
        registry: metrics.registry,
        log: log.child({ component: 'updater-link' }),
        now,
      })
    : undefined;
  const syncUpdate = (agent: DeviceConfig['agent']): void => {
    try {
      updater?.sync(agent);
    } catch (err) {
      log.error({ err }, 'could not write the agent update request (retried at the next config)');
    }
  };
  syncUpdate(remoteStart.applied?.body.agent);
  let running: AgentConfig = remoteStart.config;

  const outbox = openOutbox(running.buffer.file ?? join(config.dataDir, 'outbox.db'), {
    maxBytes: running.buffer.maxBytes,
    maxEvents: running.buffer.maxEvents,
    ttlMs: running.buffer.ttlHours * 3_600_000,
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
  const mediaDropped = new Counter({
    name: 'vigil_agent_media_retention_dropped_total',
    help: 'Held snapshots dropped by the edge media retention (their events stay), by reason (age, size)',
    labelNames: ['reason'],
    registers: [metrics.registry],
  });
  /** Edge retention of what the agent holds: events by TTL (buffer), snapshots by age and size budget. */
  const applyRetention = (): void => {
    outbox.expire();
    const r = running.retention;
    const dropped = outbox.dropMedia({ maxAgeMs: r.mediaMaxHours * 3_600_000, maxBytes: r.mediaMaxBytes });
    for (const [reason, n] of Object.entries(dropped)) if (n > 0) mediaDropped.inc({ reason }, n);
  };
  const expiry = setInterval(applyRetention, 60_000);
  expiry.unref();

  // Models: one session per model, shared by cameras; a broken model costs only its cameras' detection.
  // Each camera pipeline has at most one detect call (plus one face-redaction call) in flight, so a queue as
  // long as that can never overflow: MODEL_BUSY then only means a bug, not load. (With the default of 4 the
  // benchmark found 6 cameras on one model rejected frames while the CPU was far from busy.)
  // The queue bound covers the largest camera set a config may have (64), so a remote config that adds cameras
  // never needs a new registry.
  const models = new ModelRegistry({ maxQueue: Math.max(4, 2 * Math.max(running.cameras.length, 64)) });
  const loadModels = async (cfg: AgentConfig): Promise<void> => {
    await models.load(cfg.models.map((m): ModelSpec => ({ ...m })));
    for (const f of models.failures()) log.error({ model: f.name, code: f.error.code }, f.error.message);
    if (cfg.privacy.redactFaces && !(cfg.privacy.faceModel && models.get(cfg.privacy.faceModel)))
      log.error('face redaction is on but its model is not loaded: snapshots are disabled');
  };
  await loadModels(running);

  // Set once the uplink runs: a new event is published at once instead of at the uplink's next tick.
  let notifyUplink = (): void => {};
  const cameras = new Map<string, CameraRuntime>();

  /** Camera set manager: builds one camera (supervisor + pipeline) from the running config. */
  const createCamera = (cam: CameraConfig): CameraRuntime => {
    const cfg = running;
    const faceModel =
      cfg.privacy.redactFaces && cfg.privacy.faceModel ? models.get(cfg.privacy.faceModel) : undefined;
    let pipeline: CameraPipeline | undefined;
    let detectError: string | undefined;
    let detector: LoadedModel | undefined;
    if (cam.detect) {
      const model = models.get(cam.detect.model);
      detector = model;
      if (!model) {
        detectError = `model "${cam.detect.model}" is not loaded: ${models.failures().find((f) => f.name === cam.detect?.model)?.error.message ?? 'unknown'}`;
      } else {
        pipeline = new CameraPipeline({
          camera: { ...cam, detect: cam.detect },
          device,
          model,
          privacy: {
            ...(faceModel ? { faceModel } : {}),
            faceThreshold: cfg.privacy.faceThreshold,
            redaction: cfg.privacy.redaction,
            masks: cam.privacyMasks,
          },
          snapshots: {
            ...cfg.snapshots,
            enabled: cfg.snapshots.enabled && !(cfg.privacy.redactFaces && !faceModel),
          },
          outbox,
          newId,
          metrics,
          log,
          tracer,
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
        // ffmpeg also scales each frame to the model's content size: detection then skips its resize.
        source: withModelScale(cam, detector?.plugin),
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
    return runtime;
  };
  const startCamera = (cam: CameraConfig): void => {
    const rt = createCamera(cam);
    cameras.set(cam.id, rt);
    rt.pipeline?.start();
    rt.supervisor.start();
  };
  const stopCamera = async (id: string): Promise<void> => {
    const rt = cameras.get(id);
    if (!rt) return;
    cameras.delete(id);
    await rt.supervisor.stop();
    await rt.pipeline?.stop();
    for (const s of STATES) metrics.cameraState.remove({ camera: id, state: s });
  };
  /** Applies a plan to the running agent: only the cameras and models it names are touched. */
  const applyPlan = async (target: AgentConfig, plan: ConfigPlan): Promise<void> => {
    await Promise.all([...plan.cameras.remove, ...plan.cameras.restart.map((c) => c.id)].map(stopCamera));
    running = target;
    if (plan.models.load.length + plan.models.unload.length > 0 || plan.privacyChanged)
      await loadModels(target);
    if (plan.bufferChanged)
      outbox.setLimits({
        maxBytes: target.buffer.maxBytes,
        maxEvents: target.buffer.maxEvents,
        ttlMs: target.buffer.ttlHours * 3_600_000,
      });
    if (plan.bufferChanged || plan.retentionChanged) applyRetention();
    for (const cam of [...plan.cameras.add, ...plan.cameras.restart]) startCamera(cam);
  };
  /** Health gate of a freshly applied config. */
  const healthOf = (target: AgentConfig, plan: ConfigPlan): HealthVerdict => {
    const needed = new Set(target.cameras.filter((c) => c.enabled && c.detect).map((c) => c.detect!.model));
    if (target.privacy.redactFaces && target.privacy.faceModel) needed.add(target.privacy.faceModel);
    for (const name of needed)
      if (!models.get(name)) {
        const f = models.failures().find((x) => x.name === name);
        return {
          ok: false,
          fatal: true,
          reason: `model "${name}" is not loaded: ${f?.error.message ?? 'unknown'}`,
        };
      }
    const fresh = new Set([...plan.cameras.add, ...plan.cameras.restart].map((c) => c.id));
    for (const cam of target.cameras.filter((c) => c.enabled)) {
      const rt = cameras.get(cam.id);
      if (!rt) return { ok: false, reason: `camera "${cam.id}" is not running` };
      const st = rt.supervisor.status;
      // A file played once to its end (loop: false) did what it was configured to do.
      if (st.state !== 'streaming' && st.state !== 'ended')
        return {
          ok: false,
          reason: `camera "${cam.id}" is ${st.state}${st.lastError ? ` (${st.lastError})` : ''}`,
        };
      if (fresh.has(cam.id) && rt.pipeline && rt.pipeline.processed === 0)
        return { ok: false, reason: `camera "${cam.id}": no inference has succeeded yet` };
    }
    return { ok: true };
  };
  for (const cam of running.cameras.filter((c) => c.enabled)) cameras.set(cam.id, createCamera(cam));

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
        framesDetected: c.pipeline?.detected ?? 0,
        framesSkipped: c.pipeline?.skipped ?? 0,
        detectError: c.detectError,
      };
    });

  let remoteConfig: RemoteConfigManager | undefined;
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
      {
        ...device,
        agentVersion,
        startedAt,
        // Drains each pipeline's interval stats: only the heartbeat calls this.
        cameras: () =>
          statuses().map((s) => ({
            ...s,
            ...(cameras.get(s.cameraId)?.pipeline?.interval.drain(Date.now()) ?? {
              inferenceMsP50: 0,
              eventsPerMinute: 0,
            }),
          })),
        configVersion: () => remoteConfig?.appliedVersion ?? remoteStart.applied?.version ?? 0n,
        update: () => updater?.status(),
      },
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
        tracer,
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

  if (nc && config.remoteConfig.enabled) {
    const deviceHealth = (): DeviceHealth => deviceHealthOf(statuses().map((c) => c.state));
    remoteConfig = new RemoteConfigManager({
      nc,
      device,
      bootstrap: config,
      journal,
      trust: () => loadTrustSet(config, store, (m) => log.warn(m)),
      host: { running: () => running, apply: applyPlan, health: healthOf, deviceHealth },
      registry: metrics.registry,
      log: log.child({ component: 'remote-config' }),
      now,
      pollMs: config.remoteConfig.pollSeconds * 1000,
      healthTimeoutMs: config.remoteConfig.healthTimeoutSeconds * 1000,
      fetchModel:
        deps.modelFetcher ??
        (identity
          ? grpcModelFetcher(() => renewer?.identity ?? identity, config.identity.grpcEndpoint)
          : undefined),
      start: remoteStart,
      onApplied: (body) => syncUpdate(body.agent),
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
        version: agentVersion,
        cameras: cams,
        models: {
          loaded: models.names(),
          failed: models.failures().map((f) => ({ name: f.name, error: f.error.message })),
        },
        buffer: { depth: stats.depth, bytes: stats.bytes, evicted: stats.evicted, rejected: stats.rejected },
        // What vigil-updater's health gate requires of a new release (uplink, cameras, models, outbox).
        checks: healthChecks({
          uplink: uplink?.status().state ?? 'disabled',
          cameras: cams.map((c) => ({
            cameraId: c.cameraId,
            state: c.state,
            lastError: c.lastError,
            detects: cameras.get(c.cameraId)?.pipeline !== undefined || c.detectError !== undefined,
            framesProcessed: c.framesProcessed,
            detectError: c.detectError,
          })),
          modelFailures: models.failures().map((f) => ({ name: f.name, error: f.error.message })),
          outbox: outbox.probeWritable(),
        }),
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
  remoteConfig?.start();
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
    remoteConfig,
    runningConfig: () => running,
    cameraStatus: statuses,
    stop: async () => {
      await remoteConfig?.stop();
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
      // Last: the spans of the final events and publishes are exported before the process exits.
      await tracing.shutdown().catch((err: unknown) => log.warn({ err }, 'trace export at shutdown failed'));
    },
  };
}
