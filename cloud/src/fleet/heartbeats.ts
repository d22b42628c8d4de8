import {
  JetStreamApiCodes,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  type Consumer,
  type ConsumerMessages,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { CameraState, DeviceHealth, Heartbeat, parseSubject, UpdateState } from '@vigil/proto';
import type { CloudConfig } from '../config/schema.js';
import type { CameraSummary } from '../storage/tables.js';
import {
  HEARTBEATS_CONSUMER,
  TELEMETRY_STREAM,
  ensureHeartbeatsConsumer,
  ensureTelemetryStreamExists,
  STREAM_ADMIN_TIMEOUT_MS,
} from '../ingest/streams.js';
import { Backoff, sleep } from '../lib/backoff.js';
import { heartbeatKey, type FleetRegistry, type HeartbeatRow } from './registry.js';

/** Heartbeats taken per fetch, at most (the first is waited for, the rest are those already pending). */
const BATCH_SIZE = 256;
/** How long one fetch waits for a first heartbeat (NATS minimum: 1000). */
const FETCH_EXPIRES_MS = 5_000;
/** A fetch that has not ended this long after its expiry is abandoned (its messages get redelivered). */
const FETCH_GRACE_MS = 15_000;

type Outcome = 'ok' | 'undecodable' | 'mismatch' | 'unknown_device' | 'error';

export type HeartbeatConsumerConfig = { streams: Pick<CloudConfig['streams'], 'replicas'> };

/**
 * Records device heartbeats (`vigil.v1.<tenant>.<device>.hb`) as last-seen in the registry. Devices
 * core-publish them; the TELEMETRY stream captures them, and this reads the durable pull consumer
 * `heartbeats` on it, so heartbeats that arrive while the cloud is down are recorded when it is back. The
 * consumer is shared: with several cloud processes each heartbeat is handled by one of them.
 *
 * Seen time is the stream's timestamp of the message (nats-server's receive time: the cloud side's clock,
 * never the device's), capped at the cloud clock `now()`. A heartbeat processed late (after an outage)
 * therefore does not make a device look online at processing time: status (fleet/status.ts) stays bound by
 * offlineAfterSeconds after the device's last heartbeat as the server received it.
 *
 * The subject is the authenticated identity (NATS permissions bind a device to its own subjects), so a
 * payload that names another tenant or device is refused and counted, never trusted. Refusals (undecodable,
 * mismatch, unknown device) are acked: retrying cannot change them. A batch is written by one statement
 * while the next one is fetched. A database error naks the whole batch with a backed-off delay, and the batch
 * fetched meanwhile with it, untried; they are redelivered (the stream keeps them for up to an hour).
 * Redeliveries can still come back after newer heartbeats of the same device (and several cloud processes
 * share the consumer): recording must never move last_seen_at backwards, which
 * FleetRegistry.recordHeartbeats guarantees (it keeps the greatest seen time).
 */
export class HeartbeatConsumer {
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private current: ConsumerMessages | undefined;
  private readonly received: Counter<'result'>;
  private readonly pending: Gauge;
  private readonly fetchBackoff = new Backoff(250, 10_000);
  private readonly dbBackoff = new Backoff(250, 10_000);
  private readonly log: Logger;

  constructor(
    private readonly nc: NatsConnection,
    private readonly registry: FleetRegistry,
    log: Logger,
    metrics: Registry,
    private readonly now: () => Date = () => new Date(),
    /** Replicas for TELEMETRY if this has to create it; ensureStreams (ingest/start.ts) sets them anyway. */
    private readonly config: HeartbeatConsumerConfig = { streams: { replicas: 1 } },
  ) {
    this.log = log.child({ component: 'heartbeats' });
    this.received = new Counter({
      name: 'vigil_cloud_heartbeats_total',
      help: 'Device heartbeats received, by result (ok, undecodable, mismatch, unknown_device, error)',
      labelNames: ['result'],
      registers: [metrics],
    });
    this.pending = new Gauge({
      name: 'vigil_cloud_heartbeats_pending',
      help: 'Heartbeats in TELEMETRY not yet delivered to the heartbeats consumer, as of the last fetch',
      registers: [metrics],
    });
  }

  /** Starts the consume loop in the background (it ensures TELEMETRY and the consumer first). */
  start(): void {
    this.loop ??= this.run();
  }

  /** Stops fetching, finishes the batch in hand (ack or nak), then resolves. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.current?.close().catch(() => undefined);
    await this.loop;
  }

  private get stopping(): boolean {
    return this.abort.signal.aborted;
  }

  private async run(): Promise<void> {
    let consumer: Consumer | undefined;
    let jsm: JetStreamManager | undefined;
    let ensured = false;
    // The batch being written (resolves to the retry delay after a database error): the next one is fetched
    // meanwhile, so that fetch round trips and writes overlap; one write at a time.
    let writing: Promise<number | undefined> | undefined;
    while (!this.stopping) {
      try {
        jsm ??= await jetstreamManager(this.nc, { timeout: STREAM_ADMIN_TIMEOUT_MS });
        if (!ensured) {
          // At every start: the consumer's configuration may have changed since it was created.
          await this.ensure(jsm);
          ensured = true;
        }
        consumer ??= await this.getConsumer(jsm);
        const batch = await this.fetch(consumer);
        this.fetchBackoff.reset();
        const written = writing;
        writing = undefined;
        const failed = await written;
        if (failed !== undefined) {
          // The database is likely down: this batch goes back untried, with the same delay.
          for (const msg of batch) msg.nak(failed);
          await sleep(failed, this.abort.signal);
          continue;
        }
        if (batch.length > 0) writing = this.process(batch);
      } catch (err) {
        consumer = undefined;
        if (this.stopping) break;
        const delay = this.fetchBackoff.next();
        this.log.warn(
          { err, delayMs: delay, failures: this.fetchBackoff.failures },
          'fetching heartbeats from TELEMETRY failed; retrying',
        );
        await sleep(delay, this.abort.signal);
      }
    }
    await writing?.catch(() => undefined);
  }

  private async ensure(jsm: JetStreamManager): Promise<void> {
    await ensureTelemetryStreamExists(jsm, this.config);
    await ensureHeartbeatsConsumer(jsm);
  }

  /** The consumer handle; recreates the stream and the consumer if they are gone (e.g. a wiped server). */
  private async getConsumer(jsm: JetStreamManager): Promise<Consumer> {
    const js = jetstream(this.nc);
    try {
      return await js.consumers.get(TELEMETRY_STREAM, HEARTBEATS_CONSUMER);
    } catch (err) {
      const missing =
        err instanceof JetStreamApiError &&
        (err.code === JetStreamApiCodes.ConsumerNotFound || err.code === JetStreamApiCodes.StreamNotFound);
      if (!missing) throw err;
      this.log.warn('TELEMETRY stream or heartbeats consumer missing; creating them again');
      await this.ensure(jsm);
      return js.consumers.get(TELEMETRY_STREAM, HEARTBEATS_CONSUMER);
    }
  }

  /** Waits for the first heartbeat, then takes at once what is already pending behind it. */
  private async fetch(consumer: Consumer): Promise<JsMsg[]> {
    const batch: JsMsg[] = [];
    await this.pull(consumer, 1, batch);
    const pending = batch[0]?.info.pending ?? 0;
    if (pending > 0 && !this.stopping) await this.pull(consumer, Math.min(BATCH_SIZE - 1, pending), batch);
    const last = batch[batch.length - 1];
    // An empty fetch waited FETCH_EXPIRES_MS: nothing was pending.
    this.pending.set(last?.info.pending ?? 0);
    return batch;
  }

  private async pull(consumer: Consumer, max: number, batch: JsMsg[]): Promise<void> {
    const iter = await consumer.fetch({ max_messages: max, expires: FETCH_EXPIRES_MS });
    this.current = iter;
    const had = batch.length;
    const guard = setTimeout(
      () => void iter.close().catch(() => undefined),
      FETCH_EXPIRES_MS + FETCH_GRACE_MS,
    );
    try {
      for await (const m of iter) batch.push(m);
    } catch (err) {
      // Heartbeats already in hand are processed; the error surfaces on the next fetch if it persists.
      if (batch.length === 0) throw err;
      this.log.warn({ err, messages: batch.length - had }, 'heartbeat fetch ended early');
    } finally {
      clearTimeout(guard);
      this.current = undefined;
    }
  }

  /**
   * One batch, one statement (FleetRegistry.recordHeartbeats): refusals are acked at once, the rest are
   * written together and acked after the write. After a database error the whole batch is nak'd with a
   * backed-off delay (the database is likely down) and resolves to that delay, which the loop then waits out.
   * Never rejects.
   */
  private async process(batch: JsMsg[]): Promise<number | undefined> {
    const rows: Array<{ msg: JsMsg; row: HeartbeatRow }> = [];
    for (const msg of batch) {
      const row = this.decode(msg);
      if (typeof row === 'string') {
        this.received.inc({ result: row });
        msg.ack();
      } else rows.push({ msg, row });
    }
    if (rows.length === 0) return undefined;
    let known: Set<string>;
    try {
      known = await this.registry.recordHeartbeats(rows.map((r) => r.row));
    } catch (err) {
      const delay = this.dbBackoff.next();
      this.log.error(
        { err, heartbeats: rows.length, delayMs: delay },
        'recording heartbeats failed; they will be redelivered',
      );
      this.received.inc({ result: 'error' }, rows.length);
      for (const { msg } of rows) msg.nak(delay);
      return delay;
    }
    this.dbBackoff.reset();
    const unknown = new Set<string>();
    for (const { msg, row } of rows) {
      const k = heartbeatKey(row.tenantId, row.deviceId);
      const ok = known.has(k);
      if (!ok) unknown.add(k);
      this.received.inc({ result: ok ? 'ok' : 'unknown_device' });
      msg.ack();
    }
    for (const k of unknown) {
      const [tenant, device] = k.split('\u0000');
      this.log.warn({ tenant, device }, 'heartbeat from an unregistered device');
    }
    return undefined;
  }

  /** The heartbeat as the registry records it, or why it is refused. */
  private decode(msg: JsMsg): HeartbeatRow | Exclude<Outcome, 'ok' | 'unknown_device' | 'error'> {
    const { subject } = msg;
    const route = parseSubject(subject);
    let hb: Heartbeat;
    try {
      hb = Heartbeat.decode(msg.data);
    } catch (err) {
      this.log.warn({ subject, err: (err as Error).message }, 'undecodable heartbeat dropped');
      return 'undecodable';
    }
    if (!route || hb.tenantId !== route.tenant || hb.deviceId !== route.device) {
      this.log.warn(
        { subject, tenant: hb.tenantId, device: hb.deviceId },
        'heartbeat payload does not match its subject',
      );
      return 'mismatch';
    }
    return {
      tenantId: route.tenant,
      deviceId: route.device,
      seenAt: this.seenAt(msg),
      agentVersion: hb.agentVersion,
      configVersion: hb.configVersion,
      signals: heartbeatSignals(hb),
      cameras: cameraSummaries(hb),
      update: heartbeatUpdate(hb),
    };
  }

  /**
   * When the server stored the heartbeat, but never later than the cloud clock: a nats-server clock ahead
   * of the cloud's must not keep a device online beyond offlineAfterSeconds (status is derived from now()).
   */
  private seenAt(msg: JsMsg): Date {
    const stored = Number(msg.timestampNanos / 1_000_000n);
    return new Date(Math.min(stored, this.now().getTime()));
  }
}

const HEALTH_NAMES: Readonly<Record<number, string>> = {
  [DeviceHealth.DEVICE_HEALTH_OK]: 'ok',
  [DeviceHealth.DEVICE_HEALTH_DEGRADED]: 'degraded',
  [DeviceHealth.DEVICE_HEALTH_FAILING]: 'failing',
};

export interface HeartbeatSignals {
  health: string;
  /** Mean fps over the cameras; null without cameras. */
  meanFps: number | null;
  /** Mean of the cameras' median detect latency (ms), over cameras that ran inference; null when none did. */
  meanInferenceMs: number | null;
  /** Events per minute over the heartbeat's interval, summed over the cameras (0 without cameras). */
  eventsPerMinute: number;
}

const mean = (xs: readonly number[]): number | null =>
  xs.length === 0 ? null : xs.reduce((a, b) => a + b, 0) / xs.length;

/** At most this many cameras of a heartbeat are kept (devices.last_cameras), their texts cut to 200 characters. */
export const MAX_KEPT_CAMERAS = 64;
const cut = (s: string): string => (s.length > 200 ? `${s.slice(0, 199)}…` : s);
const num = (x: number): number => (Number.isFinite(x) ? x : 0);

/** The cameras of a heartbeat for devices.last_cameras (migration 0023): bounded, finite numbers only. */
export function cameraSummaries(hb: Heartbeat): CameraSummary[] {
  return hb.cameras.slice(0, MAX_KEPT_CAMERAS).map((c) => ({
    id: cut(c.cameraId),
    state: CAMERA_STATE_NAMES[c.state] ?? 'unknown',
    fps: num(c.fps),
    inference_ms_p50: num(c.inferenceMsP50),
    events_per_minute: num(c.eventsPerMinute),
    last_error: cut(c.lastError),
  }));
}

const CAMERA_STATE_NAMES: Readonly<Record<number, string>> = {
  [CameraState.CAMERA_STATE_CONNECTING]: 'connecting',
  [CameraState.CAMERA_STATE_STREAMING]: 'streaming',
  [CameraState.CAMERA_STATE_STALLED]: 'stalled',
  [CameraState.CAMERA_STATE_BACKING_OFF]: 'backing_off',
  [CameraState.CAMERA_STATE_STOPPED]: 'stopped',
  [CameraState.CAMERA_STATE_ENDED]: 'ended',
};

/** What rollout gates read from a heartbeat: the agent's health and its cameras' analytics signals. */
export function heartbeatSignals(hb: Heartbeat): HeartbeatSignals {
  const finite = (x: number): boolean => Number.isFinite(x);
  return {
    health: HEALTH_NAMES[hb.health] ?? 'unknown',
    meanFps: mean(hb.cameras.map((c) => c.fps).filter(finite)),
    meanInferenceMs: mean(hb.cameras.map((c) => c.inferenceMsP50).filter((x) => finite(x) && x > 0)),
    eventsPerMinute: hb.cameras
      .map((c) => c.eventsPerMinute)
      .filter((x) => finite(x) && x > 0)
      .reduce((a, b) => a + b, 0),
  };
}

const UPDATE_STATE_NAMES: Readonly<Record<number, string>> = {
  [UpdateState.UPDATE_STATE_IDLE]: 'idle',
  [UpdateState.UPDATE_STATE_DOWNLOADING]: 'downloading',
  [UpdateState.UPDATE_STATE_STAGING]: 'staging',
  [UpdateState.UPDATE_STATE_SWITCHING]: 'switching',
  [UpdateState.UPDATE_STATE_BAKING]: 'baking',
  [UpdateState.UPDATE_STATE_COMMITTED]: 'committed',
  [UpdateState.UPDATE_STATE_ROLLED_BACK]: 'rolled_back',
  [UpdateState.UPDATE_STATE_FAILED]: 'failed',
};

/** The updater's status as a heartbeat carries it (Heartbeat.update); null when it carries none. */
export interface HeartbeatUpdate {
  state: string;
  current: string | null;
  previous: string | null;
  target: string | null;
  reason: string | null;
  at: Date | null;
}

/**
 * The heartbeat's updater status, bounded: the device is not trusted with the registry's column sizes, so
 * versions longer than 64 characters and reasons longer than 500 are cut (the agent bounds them too), and an
 * unknown state is recorded as `unknown` rather than refused (the rest of the heartbeat is still good).
 */
export function heartbeatUpdate(hb: Heartbeat): HeartbeatUpdate | null {
  const u = hb.update;
  if (!u || u.state === UpdateState.UPDATE_STATE_UNSPECIFIED) return null;
  const text = (s: string, max: number): string | null => (s === '' ? null : s.slice(0, max));
  return {
    state: UPDATE_STATE_NAMES[u.state] ?? 'unknown',
    current: text(u.current, 64),
    previous: text(u.previous, 64),
    target: text(u.target, 64),
    reason: text(u.reason, 500),
    at: u.updatedAt && Number.isFinite(u.updatedAt.getTime()) ? u.updatedAt : null,
  };
}
