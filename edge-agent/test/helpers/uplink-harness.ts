import type { NatsConnection } from '@nats-io/transport-node';
import type { Tracer } from '@opentelemetry/api';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import type { DevPkiPaths } from '@vigil/certs';
import type { NatsServer } from '@vigil/testkit';
import type { Outbox } from '../../src/buffer/index.js';
import { createUplinkMetrics, Uplink, type UplinkOptions, type UplinkState } from '../../src/uplink/index.js';
import { ReceiptResponder, type ReceiptResponderOptions } from './receipt-responder.js';
import { connectDevice, DEVICE, tempOutbox, type TempOutbox } from './uplink-env.js';

/** One device (its own connection, a temp outbox, an Uplink with metrics) plus a receipt responder. */
export interface UplinkRig {
  outbox: Outbox;
  dir: string;
  nc: NatsConnection;
  uplink: Uplink;
  responder: ReceiptResponder;
  registry: Registry;
  /** Every state the uplink entered, in order. */
  states: UplinkState[];
  /** Value of a metric (summed over label sets that match `labels`). */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  /** Everything both sides know, for a failure message: why did the outbox not drain? */
  diagnose(): Promise<string>;
  dispose(): Promise<void>;
}

export async function startRig(opts: {
  pki: DevPkiPaths;
  server: NatsServer;
  cloud: NatsConnection;
  uplink?: Partial<UplinkOptions>;
  responder?: Partial<Omit<ReceiptResponderOptions, 'nc'>>;
  /** Start the responder now (default true); otherwise the test calls `responder.start()`. */
  startResponder?: boolean;
  /** Called before the uplink starts (e.g. append events that are already waiting at start). */
  beforeStart?: (box: TempOutbox) => void;
  /** Records the uplink's spans (default: none). */
  tracer?: Tracer;
}): Promise<UplinkRig> {
  const box = tempOutbox();
  const responder = new ReceiptResponder({ nc: opts.cloud, ...opts.responder });
  if (opts.startResponder ?? true) await responder.start();
  const nc = await connectDevice(opts.pki, opts.server);
  const registry = new Registry();
  const states: UplinkState[] = [];
  const uplink = new Uplink({
    nc,
    outbox: box.outbox,
    device: DEVICE,
    options: { tickMs: 50, ...opts.uplink },
    logger: pino({ level: process.env.UPLINK_TEST_LOG ?? 'silent' }),
    metrics: createUplinkMetrics(registry),
    onStateChange: (s) => states.push(s),
    tracer: opts.tracer,
  });
  opts.beforeStart?.(box);
  uplink.start();
  return {
    outbox: box.outbox,
    dir: box.dir,
    nc,
    uplink,
    responder,
    registry,
    states,
    async metric(name, labels = {}) {
      const m = registry.getSingleMetric(name);
      if (!m) throw new Error(`no metric ${name}`);
      const { values } = await m.get();
      return values
        .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
        .filter((v) => {
          const n = (v as { metricName?: string }).metricName;
          return n === undefined || n.endsWith('_count'); // a histogram counts its observations
        })
        .reduce((sum, v) => sum + v.value, 0);
    },
    async diagnose() {
      const rsp = responder;
      const uplinkMetrics = (await registry.metrics())
        .split('\n')
        .filter((l) => l.startsWith('vigil_agent_uplink_') && !l.includes('_bucket'))
        .join('\n');
      return [
        `outbox depth ${box.outbox.stats().depth}; uplink ${JSON.stringify(uplink.status())}`,
        `states ${states.join(' > ')}`,
        `responder committed=${rsp.committed.size} receiptsSent=${rsp.receiptsSent} dropped=${rsp.receiptsDropped} ` +
          `queries=${rsp.queriesAnswered} lastError=${String(rsp.lastError)}`,
        uplinkMetrics,
      ].join('\n');
    },
    async dispose() {
      await uplink.stop();
      await responder.stop();
      await nc.close();
      box.dispose();
    },
  };
}
