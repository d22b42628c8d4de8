import { ConfigStatus, parseSubject, SignedConfig } from '@vigil/proto';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { DeviceReplier, type DeviceRequest } from '../fleet/device-reply.js';
import type { ConfigIssuer } from './issuer.js';

/** Queue group of the status responders: several cloud processes share the polls. */
export const CONFIG_QUEUE_GROUP = 'config';
const EMPTY = new Uint8Array(0);

/** How long a status may wait for its turn: the device gives up after 5 s (edge-agent remote-config, fleet-sim). */
export const STATUS_MAX_AGE_MS = 4_000;
/** Statuses answered by one statement at most (8 parameters each). */
export const STATUS_BATCH_MAX = 64;

export interface ConfigStatusResponderOptions {
  /**
   * Batches (one statement each) running at once: each holds one database connection, so keep it below the
   * pool size (app.ts: half the pool). Statuses that arrive meanwhile wait and go out together in the next batch.
   */
  maxInFlight?: number | undefined;
  /** Statuses waiting at most; beyond, dropped unanswered (`busy`). */
  maxWaiting?: number | undefined;
  /** A status that waited longer is dropped unanswered (`expired`): its device stopped waiting for the answer. */
  maxAgeMs?: number | undefined;
  batchMax?: number | undefined;
  /** The clock (ms) that ages waiting statuses. */
  now?: (() => number) | undefined;
}

interface Waiting {
  msg: Msg;
  request: DeviceRequest;
  at: number;
}

/**
 * State-based config delivery. Devices send ConfigStatus on `vigil.v1.<t>.<d>.status` as a request (at
 * connect, after a reconnect, periodically and after each apply); the answer is the device's current
 * SignedConfig when its version is greater than both `version` and `applied_version` of the status, else an
 * empty message. The subject is the identity: a status naming another tenant or device is refused (empty
 * reply, nothing recorded, counted). A status whose reply subject is not the device's own inbox is dropped
 * before anything else (fleet/device-reply.ts): `nc` should be the responder connection, which may publish
 * only into device inboxes. Every accepted status is recorded in device_config_state.
 *
 * Work is bounded and batched: statuses that arrive together are recorded and answered by one statement
 * (ConfigIssuer.recordStatuses), a few batches run at once, a bounded number of statuses wait (a fleet
 * reconnecting at once), the rest are dropped unanswered (`busy`; the device polls again). A status that
 * waited past its device's request timeout is dropped too (`expired`): answering it would spend the
 * database on a reply nobody reads while the statuses behind it age out in turn (the 10,000-device stall).
 */
export class ConfigStatusResponder {
  private sub: Subscription | undefined;
  private inFlight = 0;
  private waiting: Waiting[] = [];
  private readonly statuses: Counter<'result'>;
  private readonly waitingGauge: Gauge;
  private readonly idle = new Set<() => void>();
  private readonly replier: DeviceReplier;
  private readonly maxInFlight: number;
  private readonly maxWaiting: number;
  private readonly maxAgeMs: number;
  private readonly batchMax: number;
  private readonly now: () => number;

  constructor(
    private readonly nc: NatsConnection,
    private readonly issuer: ConfigIssuer,
    private readonly log: Logger,
    metrics: Registry,
    opts: ConfigStatusResponderOptions = {},
  ) {
    this.maxInFlight = Math.max(1, opts.maxInFlight ?? 4);
    this.maxWaiting = Math.max(0, opts.maxWaiting ?? 20_000);
    this.maxAgeMs = opts.maxAgeMs ?? STATUS_MAX_AGE_MS;
    this.batchMax = Math.max(1, opts.batchMax ?? STATUS_BATCH_MAX);
    this.now = opts.now ?? Date.now;
    const name = 'vigil_cloud_config_status_total';
    this.statuses =
      (metrics.getSingleMetric(name) as Counter<'result'> | undefined) ??
      new Counter({
        name,
        help: 'Config status reports by result (config: answered with a config, current: nothing newer, mismatch, invalid, busy: queue full, expired: waited past the device timeout, error)',
        labelNames: ['result'],
        registers: [metrics],
      });
    for (const result of ['busy', 'expired']) this.statuses.inc({ result }, 0);
    const waitingName = 'vigil_cloud_config_status_waiting';
    this.waitingGauge =
      (metrics.getSingleMetric(waitingName) as Gauge | undefined) ??
      new Gauge({
        name: waitingName,
        help: 'Config statuses waiting for a batch (bounded; beyond: busy; older than the device timeout: expired)',
        registers: [metrics],
      });
    this.replier = new DeviceReplier('config_status', metrics, log);
  }

  start(): void {
    this.sub = this.nc.subscribe('vigil.v1.*.*.status', {
      queue: CONFIG_QUEUE_GROUP,
      callback: (err, msg) => {
        if (err) {
          this.log.error({ err }, 'config status subscription failed');
          return;
        }
        // Refused before queueing: a hostile reply costs no database work and no queue slot.
        const request = this.replier.accept(msg);
        if (!request) return;
        // The device polls again; an empty reply would read as "nothing newer", so none is sent.
        if (this.waiting.length >= this.maxWaiting) return this.statuses.inc({ result: 'busy' });
        this.waiting.push({ msg, request, at: this.now() });
        this.pump();
        this.waitingGauge.set(this.waiting.length);
      },
    });
  }

  /** Statuses waiting for a batch (for tests and metrics). */
  get queued(): number {
    return this.waiting.length;
  }

  /** Starts batches while there is room: each takes the oldest waiting statuses that are still fresh. */
  private pump(): void {
    while (this.inFlight < this.maxInFlight && this.waiting.length > 0) {
      this.dropExpired();
      if (this.waiting.length === 0) break;
      this.run(this.waiting.splice(0, this.batchMax));
    }
    if (this.inFlight === 0) for (const resolve of this.idle) resolve();
  }

  /** The queue is in arrival order, so the expired ones are a prefix. */
  private dropExpired(): void {
    const limit = this.now() - this.maxAgeMs;
    let n = 0;
    while (n < this.waiting.length && this.waiting[n]!.at < limit) n++;
    if (n === 0) return;
    this.waiting.splice(0, n);
    this.statuses.inc({ result: 'expired' }, n);
  }

  private run(batch: Waiting[]): void {
    this.inFlight += 1;
    void this.answer(batch)
      .catch((e: unknown) => {
        this.statuses.inc({ result: 'error' });
        this.log.warn({ err: e, statuses: batch.length }, 'answering config statuses failed');
      })
      .finally(() => {
        this.inFlight -= 1;
        this.pump();
        this.waitingGauge.set(this.waiting.length);
      });
  }

  async stop(): Promise<void> {
    await this.sub?.drain();
    this.waiting = [];
    if (this.inFlight > 0) await new Promise<void>((resolve) => this.idle.add(resolve));
  }

  private async answer(batch: Waiting[]): Promise<void> {
    const valid: Array<{ request: DeviceRequest; status: ConfigStatus; tenantId: string; deviceId: string }> =
      [];
    for (const { msg, request } of batch) {
      const route = parseSubject(msg.subject);
      if (!route || route.kind !== 'status' || route.camera !== undefined) continue;
      let status: ConfigStatus;
      try {
        status = ConfigStatus.decode(msg.data);
      } catch {
        this.reply(request, EMPTY, 'invalid');
        continue;
      }
      if (
        (status.tenantId !== '' && status.tenantId !== route.tenant) ||
        (status.deviceId !== '' && status.deviceId !== route.device)
      ) {
        this.log.warn(
          { subject: msg.subject, tenant: status.tenantId, device: status.deviceId },
          'config status names another device: refused',
        );
        this.reply(request, EMPTY, 'mismatch');
        continue;
      }
      valid.push({ request, status, tenantId: route.tenant, deviceId: route.device });
    }
    if (valid.length === 0) return;
    let current: Awaited<ReturnType<ConfigIssuer['recordStatuses']>>;
    try {
      current = await this.issuer.recordStatuses(valid);
    } catch (err) {
      // Unanswered: the devices poll again (an empty reply would read as "nothing newer").
      this.statuses.inc({ result: 'error' }, valid.length);
      this.log.warn({ err, statuses: valid.length }, 'answering config statuses failed');
      return;
    }
    valid.forEach(({ request, status }, i) => {
      const c = current[i];
      const have = status.version > status.appliedVersion ? status.version : status.appliedVersion;
      if (c && c.version > have)
        this.reply(
          request,
          SignedConfig.encode({ jws: c.jws, keyId: c.keyId, version: c.version }).finish(),
          'config',
        );
      else this.reply(request, EMPTY, 'current');
    });
  }

  private reply(request: DeviceRequest, data: Uint8Array, result: string): void {
    // Only ever a DeviceRequest from replier.accept(): its reply subject was checked to be the device's own inbox.
    request.respond(data);
    this.statuses.inc({ result });
  }
}
