import { compactVerify, createLocalJWKSet, type JSONWebKeySet } from 'jose';
import { connect, jwtAuthenticator, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import {
  ConfigState,
  ConfigStatus,
  configStatusOf,
  DeviceConfig,
  DeviceHealth,
  deviceInboxPrefix,
  Heartbeat,
  reportAfter,
  SignedConfig,
  startReport,
  subjectFor,
  UpdateState,
  type ConfigEvent,
  type ConfigReport,
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
  /** The agent version it starts with (reported in heartbeats). */
  agentVersion: string;
  /** Bounds (ms) of a simulated agent upgrade: download, switch and bake, from the request to committed. */
  upgradeMinMs: number;
  upgradeMaxMs: number;
  /**
   * Share (0..1) of devices whose upgrade fails its health gate and rolls back (which ones: a hash of the device
   * id and the version, so the same devices fail the same version every run).
   */
  upgradeRollbackShare: number;
  /**
   * Statuses and heartbeat times each agent keeps for tests to inspect (newest; the oldest dropped). A
   * 10,000-device run keeps few, so that the sim's RSS is the agents' and not their history's.
   */
  keepStatuses: number;
  keepHeartbeats: number;
}

export const DEFAULT_BEHAVIOUR: SimBehaviour = {
  applyMinMs: 50,
  applyMaxMs: 500,
  heartbeatMs: 5000,
  pollMs: 10_000,
  fps: 5,
  inferenceMs: 14,
  eventsPerMinute: 3,
  agentVersion: '1.0.0',
  upgradeMinMs: 1000,
  upgradeMaxMs: 5000,
  upgradeRollbackShare: 0,
  keepStatuses: 200,
  keepHeartbeats: 1000,
};

/** The simulated updater's status.json (edge-agent/src/updater/contract.ts), as heartbeats carry it. */
export interface SimUpdateStatus {
  state: 'downloading' | 'committed' | 'rolled_back';
  current: string;
  previous: string | null;
  target: string;
  reason: string | null;
  updatedAt: Date;
}

const UPDATE_STATES: Readonly<Record<SimUpdateStatus['state'], UpdateState>> = {
  downloading: UpdateState.UPDATE_STATE_DOWNLOADING,
  committed: UpdateState.UPDATE_STATE_COMMITTED,
  rolled_back: UpdateState.UPDATE_STATE_ROLLED_BACK,
};

/** Deterministic [0, 1) from a string (FNV-1a): which devices roll back which version. */
function unitHash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h / 2 ** 32;
}

export interface AgentCounters {
  applied: number;
  rejected: number;
  rolledBack: number;
  /** Agent upgrades started, committed and rolled back. */
  upgrades: number;
  upgradesCommitted: number;
  upgradesRolledBack: number;
  /** Heartbeats published; first connections that failed and were tried again. */
  heartbeats: number;
  dialRetries: number;
  /** Status requests answered, and status rounds that got no answer in any of their tries. */
  statusesAnswered: number;
  statusesUnanswered: number;
}

/**
 * One simulated agent: a real NATS client with the device's enrolled certificate, key and user JWT. It takes
 * configs pushed on its cfg subject or returned to its status polls, verifies the JWS (ES256, the JWKS from
 * enrollment, addressee, monotonic version, expiry), "applies" after a random delay and reports the outcome.
 *
 * It behaves as the edge agent does (edge-agent/src/remote-config/manager.ts), not more kindly: its status is
 * @vigil/proto's config report (the same functions the agent uses), so every status, polls included, repeats
 * the last outcome (a failed version stays reported); it reports PENDING when an apply starts; a refused
 * version (bad signature, replay, expired, invalid) is reported FAILED; it heartbeats on its own period only
 * (never right after an apply), its heartbeat carrying the version it runs.
 *
 * Config attributes steer it:
 * - `sim.fail = "true"` (or `"health"`): the apply turns unhealthy, the previous config runs again
 *   (ROLLED_BACK); `sim.fail = "refuse"`: the body is invalid for this device (FAILED, nothing applied);
 * - `sim.fps_factor = "0.3"`, `sim.inference_factor = "3"`, `sim.events_factor = "0"`: it applies and reports
 *   APPLIED, but its cameras run at that share of their fps / that multiple of their inference latency /
 *   that share of their event rate;
 * - `sim.health_after_ms = "1500"`: it applies healthy, and its health turns FAILING that long after;
 * - `sim.only = "sim-0001,sim-0004"`: the attributes above steer only these devices (the others apply the
 *   config plainly), so that one rollout body can fail some devices and not others.
 */
export class SimAgent {
  nc: NatsConnection | undefined;
  /** The attributes of the config it runs, and every version it ran (in order). */
  attributes: Record<string, string> = {};
  readonly history: Array<{ version: bigint; attributes: Record<string, string> }> = [];
  /** Every status it sent (newest last, at most 200) and when each heartbeat went out (ms). */
  readonly statuses: ConfigStatus[] = [];
  readonly heartbeats: number[] = [];
  /** When each apply ended (ms), for the heartbeat-period check. */
  readonly appliedAt: number[] = [];
  private report_: ConfigReport = startReport(0n);
  private highWater = 0n;
  private lastJws = '';
  private fpsFactor = 1;
  private inferenceFactor = 1;
  private eventsFactor = 1;
  private health = DeviceHealth.DEVICE_HEALTH_OK;
  private healthTimer: NodeJS.Timeout | undefined;
  private applying: Promise<void> = Promise.resolve();
  private readonly timers: NodeJS.Timeout[] = [];
  private sub: Subscription | undefined;
  private servers: string[] = [];
  private readonly jwks: ReturnType<typeof createLocalJWKSet>;
  private readonly started = Date.now();
  /** Called after each applied/refused config (for measurements). */
  onApplied: ((agent: SimAgent, version: bigint, state: ConfigState) => void) | undefined;
  readonly counters: AgentCounters = {
    applied: 0,
    rejected: 0,
    rolledBack: 0,
    upgrades: 0,
    upgradesCommitted: 0,
    upgradesRolledBack: 0,
    heartbeats: 0,
    dialRetries: 0,
    statusesAnswered: 0,
    statusesUnanswered: 0,
  };
  /** The status sent at the last connect, answered or given up on (connect() does not wait for it). */
  firstStatus: Promise<boolean> = Promise.resolve(false);
  /** The agent version it runs, and its simulated updater's status (undefined: never asked to update). */
  agentVersion: string;
  update: SimUpdateStatus | undefined;
  /** Every agent version it was asked for (version, rollout, when), in order. */
  readonly upgradeRequests: Array<{ version: string; rolloutId: string; at: number }> = [];
  /** Called when a simulated upgrade ends (for measurements). */
  onUpgraded: ((agent: SimAgent, version: string, state: SimUpdateStatus['state']) => void) | undefined;
  /** Share of devices whose upgrades roll back (from the behaviour; a scenario may change it). */
  upgradeRollbackShare: number;
  private upgradeKey = '';
  private upgradeTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly device: EnrolledDevice,
    private readonly caPem: string,
    private readonly behaviour: SimBehaviour = DEFAULT_BEHAVIOUR,
  ) {
    this.agentVersion = behaviour.agentVersion;
    this.upgradeRollbackShare = behaviour.upgradeRollbackShare;
    this.jwks = createLocalJWKSet(JSON.parse(device.configSigningJwks || '{"keys":[]}') as JSONWebKeySet);
  }

  /** The version it runs (0 = its local config). */
  get appliedVersion(): bigint {
    return this.report_.appliedVersion;
  }

  /** What its next status says. */
  status(): ConfigStatus {
    return configStatusOf(this.report_, this.device, this.health, new Date());
  }

  get id(): string {
    return this.device.deviceId;
  }

  /**
   * Connects; like the agent: a status at connect, then one per poll period, a heartbeat per period. Resolves
   * once connected and subscribed: the agent polls in the background (remote-config/manager.ts start()), so a
   * slow status answer does not hold the connection step (`firstStatus` says when it ended).
   */
  async connect(servers: string[]): Promise<void> {
    const d = this.device;
    this.servers = servers;
    this.nc = await this.dial(servers);
    this.sub = this.nc.subscribe(subjectFor(d.tenantId, d.deviceId, 'cfg'), {
      callback: (err, msg) => {
        if (!err) this.enqueue(msg.data);
      },
    });
    this.heartbeat();
    this.timers.push(setInterval(() => this.heartbeat(), this.behaviour.heartbeatMs));
    this.timers.push(setInterval(() => void this.poll(), this.behaviour.pollMs));
    this.firstStatus = this.poll();
  }

  /** Goes offline (the gateway loses its uplink): no status, no heartbeat, no config until `online()`. */
  async offline(): Promise<void> {
    for (const t of this.timers.splice(0)) clearInterval(t);
    this.sub?.unsubscribe();
    this.sub = undefined;
    const nc = this.nc;
    this.nc = undefined;
    await nc?.close().catch(() => undefined);
  }

  /** Back online: connects again (a status at once, as the agent does after a reconnect). */
  async online(): Promise<void> {
    await this.connect(this.servers);
  }

  /**
   * The first connection, retried: thousands of TLS + JWT handshakes (each through the auth callout) on a busy
   * machine can time out; a 10,000-device run should not end for one unlucky device.
   */
  private async dial(servers: string[]): Promise<NatsConnection> {
    const d = this.device;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.dialOnce(servers);
      } catch (err) {
        if (attempt >= 8) throw new Error(`${d.deviceId}: cannot connect to NATS`, { cause: err });
        this.counters.dialRetries++;
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
      // In the order given (SimFleet rotates the list per agent to spread them over a cluster's nodes).
      noRandomize: true,
      timeout: 30_000,
      name: `fleet-sim-${d.deviceId}`,
    });
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    clearTimeout(this.healthTimer);
    clearTimeout(this.upgradeTimer);
    this.sub?.unsubscribe();
    await this.applying.catch(() => undefined);
    await this.nc?.close().catch(() => undefined);
  }

  /** A status poll: reports the current state (the last outcome) and takes a newer config from the reply. */
  /** true: answered. */
  poll(): Promise<boolean> {
    return this.report();
  }

  private record(e: ConfigEvent): void {
    this.report_ = reportAfter(this.report_, e);
  }

  private async report(): Promise<boolean> {
    const status = this.status();
    this.statuses.push(status);
    if (this.statuses.length > this.behaviour.keepStatuses) this.statuses.shift();
    const nc = this.nc;
    if (!nc || nc.isClosed()) return false;
    const d = this.device;
    const data = ConfigStatus.encode(status).finish();
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const reply = await nc.request(subjectFor(d.tenantId, d.deviceId, 'status'), data, { timeout: 5000 });
        this.counters.statusesAnswered++;
        if (reply.data.length > 0) this.enqueue(reply.data);
        return true;
      } catch {
        if (nc.isClosed()) return false;
        await new Promise((r) => setTimeout(r, 200 + Math.random() * 800));
      }
    }
    this.counters.statusesUnanswered++;
    return false;
  }

  /** Hands a SignedConfig to the device, as a push or a poll reply would (one at a time, in order). */
  deliver(data: Uint8Array): Promise<void> {
    this.enqueue(data);
    return this.applying;
  }

  private enqueue(data: Uint8Array): void {
    this.applying = this.applying.then(() => this.take(data)).catch(() => undefined);
  }

  /** Refuses a version: FAILED, reported (as the agent's fail()). */
  private async refuse(version: bigint, reason: string): Promise<void> {
    this.counters.rejected++;
    this.record({ kind: 'refused', version, reason });
    await this.report();
    this.onApplied?.(this, version, ConfigState.CONFIG_STATE_FAILED);
  }

  private async take(data: Uint8Array): Promise<void> {
    const d = this.device;
    let signed: SignedConfig;
    try {
      signed = SignedConfig.decode(data);
    } catch {
      this.counters.rejected++;
      return; // the agent drops an undecodable message unreported too
    }
    if (signed.jws === this.lastJws) return; // the same delivery twice (push and poll reply)
    this.lastJws = signed.jws;
    let config: DeviceConfig;
    try {
      const { payload, protectedHeader } = await compactVerify(signed.jws, this.jwks, {
        algorithms: ['ES256'],
      });
      if (protectedHeader.typ !== 'vigil-config+jws') throw new Error('typ: not a config');
      config = DeviceConfig.decode(payload);
    } catch (err) {
      return this.refuse(signed.version, `signature: ${(err as Error).message}`);
    }
    if (config.tenantId !== d.tenantId || config.deviceId !== d.deviceId)
      return this.refuse(config.version, 'addressee: not this device');
    if (config.version <= this.highWater)
      return this.refuse(
        config.version,
        `replay: version ${config.version} is not newer than the highest accepted version ${this.highWater}`,
      );
    if (config.expiresAt && config.expiresAt.getTime() <= Date.now())
      return this.refuse(config.version, 'expired: config expired');
    this.highWater = config.version;
    const only = config.attributes['sim.only'];
    const steered = only === undefined || only.split(',').includes(d.deviceId);
    // The config's attributes as this device reads them: steering (sim.*) attributes only when they target it.
    const attrs = steered
      ? config.attributes
      : Object.fromEntries(
          Object.entries(config.attributes).filter(([k]) => !k.startsWith('sim.') || k === 'sim.rev'),
        );
    const version = config.version;
    if (attrs['sim.fail'] === 'refuse') return this.refuse(version, 'invalid config: sim.fail=refuse');
    this.record({ kind: 'applying', version });
    await this.report();
    const b = this.behaviour;
    await new Promise((r) => setTimeout(r, b.applyMinMs + Math.random() * (b.applyMaxMs - b.applyMinMs)));
    if (attrs['sim.fail'] === 'true' || attrs['sim.fail'] === 'health') {
      // The new config never became healthy: the previous one runs again (its health, its signals).
      this.counters.rolledBack++;
      this.record({ kind: 'rolled_back', version, reason: 'health check failed: sim.fail' });
      await this.report();
      this.onApplied?.(this, version, ConfigState.CONFIG_STATE_ROLLED_BACK);
      return;
    }
    const factor = (key: string): number => {
      const n = Number(attrs[key] ?? '1');
      return Number.isFinite(n) && n >= 0 ? n : 1;
    };
    this.fpsFactor = factor('sim.fps_factor');
    this.inferenceFactor = factor('sim.inference_factor');
    this.eventsFactor = factor('sim.events_factor');
    this.health = DeviceHealth.DEVICE_HEALTH_OK;
    clearTimeout(this.healthTimer);
    const after = Number(attrs['sim.health_after_ms']);
    if (Number.isFinite(after) && after >= 0)
      this.healthTimer = setTimeout(() => {
        if (this.appliedVersion === version) this.health = DeviceHealth.DEVICE_HEALTH_FAILING;
      }, after);
    this.attributes = { ...config.attributes };
    this.history.push({ version, attributes: this.attributes });
    this.counters.applied++;
    this.record({ kind: 'applied', version });
    this.appliedAt.push(Date.now());
    // No heartbeat here: the agent's heartbeat runs on its own period.
    await this.report();
    this.onApplied?.(this, version, ConfigState.CONFIG_STATE_APPLIED);
    this.upgradeTo(config.agent);
  }

  /**
   * What the agent and its updater do with the config's agent section (edge-agent/src/updater/link.ts): another
   * version is requested once per (version, rollout); after a random delay the simulated updater commits it (the
   * device then runs and reports it) or, for `upgradeRollbackShare` of the devices, rolls back.
   */
  private upgradeTo(agent: DeviceConfig['agent']): void {
    if (!agent || agent.version === '' || agent.version === this.agentVersion) return;
    const key = `${agent.version}/${agent.rolloutId}`;
    if (key === this.upgradeKey) return;
    this.upgradeKey = key;
    this.upgradeRequests.push({ version: agent.version, rolloutId: agent.rolloutId, at: Date.now() });
    this.counters.upgrades++;
    const target = agent.version;
    const from = this.agentVersion;
    this.update = {
      state: 'downloading',
      current: from,
      previous: null,
      target,
      reason: null,
      updatedAt: new Date(),
    };
    const b = this.behaviour;
    clearTimeout(this.upgradeTimer);
    this.upgradeTimer = setTimeout(
      () => {
        if (unitHash(`${this.id}/${target}`) < this.upgradeRollbackShare) {
          this.counters.upgradesRolledBack++;
          this.update = {
            state: 'rolled_back',
            current: from,
            previous: null,
            target,
            reason: 'health gate failed during bake (fleet-sim upgradeRollbackShare)',
            updatedAt: new Date(),
          };
        } else {
          this.counters.upgradesCommitted++;
          this.agentVersion = target;
          this.update = {
            state: 'committed',
            current: target,
            previous: from,
            target,
            reason: null,
            updatedAt: new Date(),
          };
        }
        this.onUpgraded?.(this, target, this.update.state);
      },
      b.upgradeMinMs + Math.random() * (b.upgradeMaxMs - b.upgradeMinMs),
    );
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
    const eventsPerMinute = this.behaviour.eventsPerMinute * this.eventsFactor;
    const cameras = ['cam-1', 'cam-2'];
    const hb = Heartbeat.fromPartial({
      deviceId: d.deviceId,
      tenantId: d.tenantId,
      siteId: d.siteId,
      sentAt: new Date(),
      agentVersion: this.agentVersion,
      update: this.update && {
        state: UPDATE_STATES[this.update.state],
        current: this.update.current,
        previous: this.update.previous ?? '',
        target: this.update.target,
        reason: this.update.reason ?? '',
        updatedAt: this.update.updatedAt,
      },
      uptimeSeconds: Math.floor((Date.now() - this.started) / 1000),
      configVersion: this.appliedVersion,
      health: this.health,
      cameras: cameras.map((cameraId) => ({
        cameraId,
        fps: fps * (0.95 + Math.random() * 0.1),
        inferenceMsP50: inferenceMs * (0.9 + Math.random() * 0.2),
        // The agent's rate covers the interval since the previous heartbeat; an applied config restarts the
        // cameras it changes, so the first heartbeat after an apply already covers the new config only.
        eventsPerMinute: eventsPerMinute / cameras.length,
      })),
    });
    try {
      nc.publish(subjectFor(d.tenantId, d.deviceId, 'hb'), Heartbeat.encode(hb).finish());
      this.counters.heartbeats++;
      this.heartbeats.push(Date.now());
      if (this.heartbeats.length > this.behaviour.keepHeartbeats) this.heartbeats.shift();
    } catch {
      // reconnecting: the next heartbeat goes out
    }
  }
}
