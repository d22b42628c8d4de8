import { ConfigStatus, parseSubject, SignedConfig } from '@vigil/proto';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { DeviceReplier, type DeviceRequest } from '../fleet/device-reply.js';
import type { ConfigIssuer } from './issuer.js';

/** Queue group of the status responders: several cloud processes share the polls. */
export const CONFIG_QUEUE_GROUP = 'config';
const EMPTY = new Uint8Array(0);

/**
 * State-based config delivery. Devices send ConfigStatus on `vigil.v1.<t>.<d>.status` as a request (at
 * connect, after a reconnect, periodically and after each apply); the answer is the device's current
 * SignedConfig when its version is greater than both `version` and `applied_version` of the status, else an
 * empty message. The subject is the identity: a status naming another tenant or device is refused (empty
 * reply, nothing recorded, counted). A status whose reply subject is not the device's own inbox is dropped
 * before anything else (fleet/device-reply.ts): `nc` should be the responder connection, which may publish
 * only into device inboxes. Every accepted status is recorded in device_config_state. Work is
 * bounded: a few statuses run at once, a bounded number wait (a fleet reconnecting at once), the rest are
 * dropped unanswered and counted (`busy`; the device polls again).
 */
export class ConfigStatusResponder {
  private sub: Subscription | undefined;
  private inFlight = 0;
  private readonly waiting: Array<{ msg: Msg; request: DeviceRequest }> = [];
  private readonly statuses: Counter<'result'>;
  private readonly idle = new Set<() => void>();
  private readonly replier: DeviceReplier;

  constructor(
    private readonly nc: NatsConnection,
    private readonly issuer: ConfigIssuer,
    private readonly log: Logger,
    metrics: Registry,
    /** Statuses answered at once (each is two queries); more wait, up to maxWaiting, the rest are dropped. */
    private readonly maxInFlight = 16,
    private readonly maxWaiting = 20_000,
  ) {
    const name = 'vigil_cloud_config_status_total';
    this.statuses =
      (metrics.getSingleMetric(name) as Counter<'result'> | undefined) ??
      new Counter({
        name,
        help: 'Config status reports by result (config: answered with a config, current: nothing newer, mismatch, invalid, busy, error)',
        labelNames: ['result'],
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
        if (this.inFlight < this.maxInFlight) this.run(msg, request);
        else if (this.waiting.length < this.maxWaiting) this.waiting.push({ msg, request });
        // The device polls again; an empty reply would read as "nothing newer", so none is sent.
        else this.statuses.inc({ result: 'busy' });
      },
    });
  }

  private run(msg: Msg, request: DeviceRequest): void {
    this.inFlight += 1;
    void this.answer(msg, request)
      .catch((e: unknown) => {
        this.statuses.inc({ result: 'error' });
        this.log.warn({ err: e, subject: msg.subject }, 'answering a config status failed');
      })
      .finally(() => {
        this.inFlight -= 1;
        const next = this.waiting.shift();
        if (next) this.run(next.msg, next.request);
        else if (this.inFlight === 0) for (const resolve of this.idle) resolve();
      });
  }

  async stop(): Promise<void> {
    await this.sub?.drain();
    this.waiting.length = 0;
    if (this.inFlight > 0) await new Promise<void>((resolve) => this.idle.add(resolve));
  }

  private async answer(msg: Msg, request: DeviceRequest): Promise<void> {
    const route = parseSubject(msg.subject);
    if (!route || route.kind !== 'status' || route.camera !== undefined) return;
    const reply = (data: Uint8Array, result: string): void => {
      request.respond(data);
      this.statuses.inc({ result });
    };
    let status: ConfigStatus;
    try {
      status = ConfigStatus.decode(msg.data);
    } catch {
      return reply(EMPTY, 'invalid');
    }
    if (
      (status.tenantId !== '' && status.tenantId !== route.tenant) ||
      (status.deviceId !== '' && status.deviceId !== route.device)
    ) {
      this.log.warn(
        { subject: msg.subject, tenant: status.tenantId, device: status.deviceId },
        'config status names another device: refused',
      );
      return reply(EMPTY, 'mismatch');
    }
    await this.issuer.recordStatus(route.tenant, route.device, status);
    const current = await this.issuer.current(route.tenant, route.device);
    const have = status.version > status.appliedVersion ? status.version : status.appliedVersion;
    if (current && current.version > have)
      return reply(
        SignedConfig.encode({ jws: current.jws, keyId: current.keyId, version: current.version }).finish(),
        'config',
      );
    reply(EMPTY, 'current');
  }
}
