import type { NatsConnection } from '@nats-io/transport-node';
import {
  CameraState as WireCameraState,
  DeviceHealth,
  Heartbeat,
  subjectFor,
  UpdateState,
  type UpdateStatus as WireUpdateStatus,
} from '@vigil/proto';
import type { CameraState, CameraStatusSnapshot } from '../ingest/supervisor.js';
import type { UpdateStateName, UpdateStatus } from '../updater/contract.js';

const wireUpdateState: Record<UpdateStateName, UpdateState> = {
  idle: UpdateState.UPDATE_STATE_IDLE,
  downloading: UpdateState.UPDATE_STATE_DOWNLOADING,
  staging: UpdateState.UPDATE_STATE_STAGING,
  switching: UpdateState.UPDATE_STATE_SWITCHING,
  baking: UpdateState.UPDATE_STATE_BAKING,
  committed: UpdateState.UPDATE_STATE_COMMITTED,
  rolled_back: UpdateState.UPDATE_STATE_ROLLED_BACK,
  failed: UpdateState.UPDATE_STATE_FAILED,
};

/** The updater's status.json as a heartbeat carries it (the reason cut to 500 characters). */
export function wireUpdateStatus(s: UpdateStatus): WireUpdateStatus {
  return {
    state: wireUpdateState[s.state],
    current: s.current,
    previous: s.previous ?? '',
    target: s.target ?? '',
    reason: (s.reason ?? '').slice(0, 500),
    updatedAt: new Date(s.updatedAt),
  };
}

const wireState: Record<CameraState, WireCameraState> = {
  connecting: WireCameraState.CAMERA_STATE_CONNECTING,
  streaming: WireCameraState.CAMERA_STATE_STREAMING,
  stalled: WireCameraState.CAMERA_STATE_STALLED,
  backing_off: WireCameraState.CAMERA_STATE_BACKING_OFF,
  stopped: WireCameraState.CAMERA_STATE_STOPPED,
  ended: WireCameraState.CAMERA_STATE_ENDED,
};

export interface HeartbeatSource {
  tenantId: string;
  siteId: string;
  deviceId: string;
  agentVersion: string;
  startedAt: Date;
  /**
   * The cameras' state; called once per heartbeat, so interval signals (inference latency median, events per
   * minute) cover the time since the previous heartbeat.
   */
  cameras: () => Array<
    CameraStatusSnapshot & {
      framesDropped: number;
      fps: number;
      inferenceMsP50?: number;
      eventsPerMinute?: number;
    }
  >;
  /** Version of the remote config the agent runs (0 = its local config). */
  configVersion?: () => bigint;
  /** The updater's status (updater/link.ts); undefined: none (not installed, or refused). */
  update?: () => UpdateStatus | undefined;
}

/**
 * Pure: the device's health from its cameras. A camera is fine when it streams, or when it is a file that
 * was played to its end as configured (`ended`, loop: false): that is done, not broken.
 */
export function deviceHealthOf(states: readonly CameraState[]): DeviceHealth {
  const fine = states.filter((s) => s === 'streaming' || s === 'ended').length;
  if (fine === states.length) return DeviceHealth.DEVICE_HEALTH_OK;
  return fine === 0 ? DeviceHealth.DEVICE_HEALTH_FAILING : DeviceHealth.DEVICE_HEALTH_DEGRADED;
}

/** Pure: builds the heartbeat message from the agent's current state. */
export function buildHeartbeat(src: HeartbeatSource, now: Date): Heartbeat {
  const cameras = src.cameras();
  const health = deviceHealthOf(cameras.map((c) => c.state));
  const update = src.update?.();
  return Heartbeat.fromPartial({
    tenantId: src.tenantId,
    siteId: src.siteId,
    deviceId: src.deviceId,
    sentAt: now,
    agentVersion: src.agentVersion,
    uptimeSeconds: BigInt(Math.floor((now.getTime() - src.startedAt.getTime()) / 1000)),
    health,
    memoryRssBytes: BigInt(process.memoryUsage.rss()),
    configVersion: src.configVersion?.() ?? 0n,
    update: update && wireUpdateStatus(update),
    cameras: cameras.map((c) => ({
      cameraId: c.cameraId,
      state: wireState[c.state],
      framesDecoded: BigInt(c.framesDecoded),
      framesDropped: BigInt(c.framesDropped),
      fps: c.fps,
      lastFrameAt: c.lastFrameAt,
      lastError: c.lastError ?? '',
      restarts: c.restarts,
      inferenceMsP50: c.inferenceMsP50 ?? 0,
      eventsPerMinute: c.eventsPerMinute ?? 0,
    })),
  });
}

/**
 * Publishes heartbeats over core NATS at a fixed period. A lost heartbeat costs nothing: the next one
 * carries the full state (state-based, not deltas).
 */
export class HeartbeatPublisher {
  private timer: NodeJS.Timeout | undefined;
  sent = 0;
  /** Heartbeats not sent because the connection was closed. */
  skipped = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly src: HeartbeatSource,
    private readonly periodMs: number,
    private readonly now: () => Date = () => new Date(),
  ) {}

  start(): void {
    this.publish();
    this.timer = setInterval(() => this.publish(), this.periodMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Publishes one heartbeat; a closed or refusing connection skips it (counted), it never throws. */
  publish(): void {
    if (this.nc.isClosed()) {
      this.skipped++;
      return;
    }
    const subject = subjectFor(this.src.tenantId, this.src.deviceId, 'hb');
    try {
      this.nc.publish(subject, Heartbeat.encode(buildHeartbeat(this.src, this.now())).finish());
      this.sent++;
    } catch {
      this.skipped++;
    }
  }
}
