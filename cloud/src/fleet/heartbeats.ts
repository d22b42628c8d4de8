import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { Heartbeat, parseSubject } from '@vigil/proto';
import type { FleetRegistry } from './registry.js';

/**
 * Consumes device heartbeats (`vigil.v1.<tenant>.<device>.hb`) and records last-seen in the registry.
 * The subject is the authenticated identity (NATS permissions bind a device to its own subjects), so a
 * payload that names another tenant or device is refused and counted, never trusted.
 */
export class HeartbeatConsumer {
  private sub: Subscription | undefined;
  private readonly received: Counter<'result'>;

  constructor(
    private readonly nc: NatsConnection,
    private readonly registry: FleetRegistry,
    private readonly log: Logger,
    metrics: Registry,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.received = new Counter({
      name: 'vigil_cloud_heartbeats_total',
      help: 'Device heartbeats received, by result (ok, undecodable, mismatch, unknown_device, error)',
      labelNames: ['result'],
      registers: [metrics],
    });
  }

  start(): void {
    this.sub = this.nc.subscribe('vigil.v1.*.*.hb', {
      callback: (err, msg) => {
        if (err) {
          this.log.error({ err }, 'heartbeat subscription failed');
          return;
        }
        void this.handle(msg.subject, msg.data);
      },
    });
  }

  async stop(): Promise<void> {
    await this.sub?.drain();
  }

  private async handle(subject: string, data: Uint8Array): Promise<void> {
    const route = parseSubject(subject);
    let hb: Heartbeat;
    try {
      hb = Heartbeat.decode(data);
    } catch (err) {
      this.received.inc({ result: 'undecodable' });
      this.log.warn({ subject, err: (err as Error).message }, 'undecodable heartbeat dropped');
      return;
    }
    if (!route || hb.tenantId !== route.tenant || hb.deviceId !== route.device) {
      this.received.inc({ result: 'mismatch' });
      this.log.warn(
        { subject, tenant: hb.tenantId, device: hb.deviceId },
        'heartbeat payload does not match its subject',
      );
      return;
    }
    try {
      const known = await this.registry.recordHeartbeat(
        route.tenant,
        route.device,
        this.now(),
        hb.agentVersion,
        hb.configVersion,
      );
      this.received.inc({ result: known ? 'ok' : 'unknown_device' });
      if (!known)
        this.log.warn(
          { tenant: route.tenant, device: route.device },
          'heartbeat from an unregistered device',
        );
    } catch (err) {
      this.received.inc({ result: 'error' });
      this.log.error({ err, subject }, 'recording a heartbeat failed');
    }
  }
}
