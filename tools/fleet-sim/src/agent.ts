import { compactVerify, createLocalJWKSet, type JSONWebKeySet } from 'jose';
import { connect, jwtAuthenticator, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import {
  ConfigState,
  ConfigStatus,
  DeviceConfig,
  DeviceHealth,
  deviceInboxPrefix,
  Heartbeat,
  SignedConfig,
  subjectFor,
} from '@vigil/proto';
import type { EnrolledDevice } from './enroll.js';

/** How a simulated agent behaves; every field has a default. */
export interface SimBehaviour {
  /** Apply delay bounds (ms). */
  applyMinMs: number;
  applyMaxMs: number;
  /** Heartbeat period (ms). */
  heartbeatMs: number;
  /** Status poll period (ms): the fallback when a push is missed. */
  pollMs: number;
  /** Frames per second per camera when healthy. */
  fps: number;
  /** Median inference latency (ms) per camera when healthy (reported with ±10 % noise). */
  inferenceMs: number;
  /** Events per minute per device (split over its cameras). */
  eventsPerMinute: number;
}

export const DEFAULT_BEHAVIOUR: SimBehaviour = {
  applyMinMs: 50,
  applyMaxMs: 500,
  heartbeatMs: 5000,
  pollMs: 10_000,
  fps: 5,
  inferenceMs: 14,
  eventsPerMinute: 3,
};

export interface AgentCounters {
  applied: number;
  rejected: number;
  rolledBack: number;
}

/**
 * One simulated agent: a real NATS client with the device's enrolled certificate, key and user JWT. It takes
 * configs pushed on its cfg subject or returned to its status polls, verifies the JWS (ES256, the JWKS from
 * enrollment, addressee, monotonic version), "applies" after a random delay and reports the outcome.
 *
 * Config attributes steer it: `sim.fail = "true"` -> it refuses the config and reports ROLLED_BACK with health
 * FAILING; `sim.fps_factor = "0.3"` -> it reports APPLIED but its cameras run at that share of their fps;
 * `sim.inference_factor = "3"` -> it reports APPLIED but its cameras' inference latency is that multiple.
 */
export class SimAgent {
  nc: NatsConnection | undefined;
  /** The version it runs (0 = bootstrap) and the highest it ever accepted (replay protection). */
  appliedVersion = 0n;
  /** The attributes of the config it runs, and every version it ran (in order). */
  attributes: Record<string, string> = {};
  readonly history: Array<{ version: bigint; attributes: Record<string, string> }> = [];
  private highWater = 0n;
  private fpsFactor = 1;
  private inferenceFactor = 1;
  private health = DeviceHealth.DEVICE_HEALTH_OK;
  private applying: Promise<void> = Promise.resolve();
  private readonly timers: NodeJS.Timeout[] = [];
  private sub: Subscription | undefined;
  private readonly jwks: ReturnType<typeof createLocalJWKSet>;
  private readonly started = Date.now();
  /** Called after each applied/refused config (for measurements). */
  onApplied: ((agent: SimAgent, version: bigint, state: ConfigState) => void) | undefined;
  readonly counters: AgentCounters = { applied: 0, rejected: 0, rolledBack: 0 };

  constructor(
    readonly device: EnrolledDevice,
    private readonly caPem: string,
    private readonly behaviour: SimBehaviour = DEFAULT_BEHAVIOUR,
  ) {
    this.jwks = createLocalJWKSet(JSON.parse(device.configSigningJwks || '{"keys":[]}') as JSONWebKeySet);
  }

  get id(): string {
    return this.device.deviceId;
  }

  async connect(servers: string[]): Promise<void> {
    const d = this.device;
    this.nc = await this.dial(servers);
    this.sub = this.nc.subscribe(subjectFor(d.tenantId, d.deviceId, 'cfg'), {
      callback: (err, msg) => {
        if (!err) this.enqueue(msg.data);
      },
    });
    this.heartbeat();
    this.timers.push(setInterval(() => this.heartbeat(), this.behaviour.heartbeatMs));
    this.timers.push(setInterval(() => void this.poll(), this.behaviour.pollMs));
    await this.poll();
  }

  /** The first connection, retried: a thousand TLS + JWT handshakes at once can time out. */
  private async dial(servers: string[]): Promise<NatsConnection> {
    const d = this.device;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.dialOnce(servers);
      } catch (err) {
        if (attempt >= 5) throw new Error(`${d.deviceId}: cannot connect to NATS`, { cause: err });
        await new Promise((r) => setTimeout(r, 500 * attempt + Math.random() * 1000));
      }
    }
  }

  private dialOnce(servers: string[]): Promise<NatsConnection> {
    const d = this.device;
    return connect({
      servers,
      tls: { ca: this.caPem, cert: d.certificatePem, key: d.keyPem },
      authenticator: jwtAuthenticator(d.natsUserJwt, new TextEncoder().encode(d.natsSeed)),
      inboxPrefix: deviceInboxPrefix(d.tenantId, d.deviceId),
      maxReconnectAttempts: -1,
      timeout: 30_000,
      name: `fleet-sim-${d.deviceId}`,
    });
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.sub?.unsubscribe();
    await this.applying.catch(() => undefined);
    await this.nc?.close().catch(() => undefined);
  }

  /** Reports the current state and takes a newer config from the reply. */
  async poll(): Promise<void> {
    await this.report(this.appliedVersion, ConfigState.CONFIG_STATE_APPLIED, '');
  }

  private async report(version: bigint, state: ConfigState, reason: string): Promise<void> {
    const nc = this.nc;
    if (!nc || nc.isClosed()) return;
    const d = this.device;
    const status = ConfigStatus.encode({
      deviceId: d.deviceId,
      tenantId: d.tenantId,
      version,
      appliedVersion: this.appliedVersion,
      state,
      reason,
      health: this.health,
      reportedAt: new Date(),
    }).finish();
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const reply = await nc.request(subjectFor(d.tenantId, d.deviceId, 'status'), status, {
          timeout: 5000,
        });
        if (reply.data.length > 0) this.enqueue(reply.data);
        return;
      } catch {
        if (nc.isClosed()) return;
        await new Promise((r) => setTimeout(r, 200 + Math.random() * 800));
      }
    }
  }

  private enqueue(data: Uint8Array): void {
    this.applying = this.applying.then(() => this.take(data)).catch(() => undefined);
  }

  private async take(data: Uint8Array): Promise<void> {
    const d = this.device;
    let config: DeviceConfig;
    try {
      const signed = SignedConfig.decode(data);
      const { payload, protectedHeader } = await compactVerify(signed.jws, this.jwks, {
        algorithms: ['ES256'],
      });
      if (protectedHeader.typ !== 'vigil-config+jws') throw new Error('typ');
      config = DeviceConfig.decode(payload);
      if (config.tenantId !== d.tenantId || config.deviceId !== d.deviceId) throw new Error('addressee');
      if (config.expiresAt && config.expiresAt.getTime() < Date.now()) throw new Error('expired');
    } catch {
      this.counters.rejected++;
      return;
    }
    if (config.version <= this.highWater) return; // a replay or a duplicate push
    this.highWater = config.version;
    const b = this.behaviour;
    await new Promise((r) => setTimeout(r, b.applyMinMs + Math.random() * (b.applyMaxMs - b.applyMinMs)));
    const attrs = config.attributes;
    if (attrs['sim.fail'] === 'true') {
      this.counters.rolledBack++;
      this.health = DeviceHealth.DEVICE_HEALTH_FAILING;
      await this.report(
        config.version,
        ConfigState.CONFIG_STATE_ROLLED_BACK,
        'sim.fail: health check failed',
      );
      this.onApplied?.(this, config.version, ConfigState.CONFIG_STATE_ROLLED_BACK);
      return;
    }
    const factor = Number(attrs['sim.fps_factor'] ?? '1');
    this.fpsFactor = Number.isFinite(factor) && factor >= 0 ? factor : 1;
    const inference = Number(attrs['sim.inference_factor'] ?? '1');
    this.inferenceFactor = Number.isFinite(inference) && inference >= 0 ? inference : 1;
    this.health = DeviceHealth.DEVICE_HEALTH_OK;
    this.appliedVersion = config.version;
    this.attributes = { ...attrs };
    this.history.push({ version: config.version, attributes: this.attributes });
    this.counters.applied++;
    await this.report(config.version, ConfigState.CONFIG_STATE_APPLIED, '');
    this.heartbeat();
    this.onApplied?.(this, config.version, ConfigState.CONFIG_STATE_APPLIED);
  }

  /**
   * Publishes a heartbeat: config version, health and two cameras at the current fps and inference latency,
   * sharing the device's event rate.
   */
  heartbeat(): void {
    const nc = this.nc;
    if (!nc || nc.isClosed()) return;
    const d = this.device;
    const fps = this.behaviour.fps * this.fpsFactor;
    const inferenceMs = this.behaviour.inferenceMs * this.inferenceFactor;
    const cameras = ['cam-1', 'cam-2'];
    const hb = Heartbeat.fromPartial({
      deviceId: d.deviceId,
      tenantId: d.tenantId,
      siteId: d.siteId,
      sentAt: new Date(),
      agentVersion: 'fleet-sim',
      uptimeSeconds: Math.floor((Date.now() - this.started) / 1000),
      configVersion: this.appliedVersion,
      health: this.health,
      cameras: cameras.map((cameraId) => ({
        cameraId,
        fps: fps * (0.95 + Math.random() * 0.1),
        inferenceMsP50: inferenceMs * (0.9 + Math.random() * 0.2),
        eventsPerMinute: this.behaviour.eventsPerMinute / cameras.length,
      })),
    });
    try {
      nc.publish(subjectFor(d.tenantId, d.deviceId, 'hb'), Heartbeat.encode(hb).finish());
    } catch {
      // reconnecting: the next heartbeat goes out
    }
  }
}
