// A load-generating agent for the fault test: the agent's real outbox and uplink, fed with synthetic events
// instead of cameras. Records each batch in its ack file (ack-log.ts): `I` lines before the outbox appends, `A`
// lines after them, each fsync'd; `A` ids are the events the test may never lose. stdout only carries progress
// (`progress <acked> <depth>`), which may be cut by a kill. Run as its own process so it can be kill -9'd.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { createUuidV7, inboxPrefixFor, openOutbox, Uplink } from '@vigil/edge-agent';
import { DetectionEvent, subjectFor, TrackPhase } from '@vigil/proto';
import { AckLogWriter } from './ack-log.js';

const { values } = parseArgs({
  options: {
    dir: { type: 'string' },
    nats: { type: 'string' },
    ca: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    tenant: { type: 'string' },
    device: { type: 'string' },
    rate: { type: 'string', default: '200' },
    budget: { type: 'string', default: '0' },
    // The ack file's name in --dir, unique per process the parent starts (never by pid: pids are reused).
    'ack-file': { type: 'string' },
  },
});
const need = (k: keyof typeof values): string => {
  const v = values[k];
  if (typeof v !== 'string' || !v) throw new Error(`producer: --${k} is required`);
  return v;
};
const device = { tenantId: need('tenant'), deviceId: need('device') };
const rate = Number(values.rate);
// How many more events this process may produce (the parent tracks the total across restarts); 0 = drain only.
let budget = Number(values.budget);

const outbox = openOutbox(join(need('dir'), 'outbox.db'), { synchronous: 'FULL' });
// One file per process, named by the parent: never two writers on one file, and never one file for two
// processes (the parent sums each file once when its process dies).
const acks = new AckLogWriter(join(need('dir'), need('ack-file')));
let acked = 0;
const newId = createUuidV7();
const subject = subjectFor(device.tenantId, device.deviceId, 'evt', 'cam1');
const nc = await connect({
  // One URL, or every node's (comma-separated) for a cluster: the client fails over to a surviving node.
  servers: need('nats').split(','),
  tls: { caFile: need('ca'), certFile: need('cert'), keyFile: need('key') },
  maxReconnectAttempts: -1,
  reconnectTimeWait: 250,
  waitOnFirstConnect: true,
  inboxPrefix: inboxPrefixFor(device),
  noEcho: true,
});
const uplink = new Uplink({
  nc,
  outbox,
  device,
  options: { receiptTimeoutMs: 3_000, backoff: { initialMs: 200, maxMs: 2_000, jitter: 0.5 } },
});
uplink.start();

const tick = 50;
const perTick = Math.max(1, Math.round((rate * tick) / 1000));
const encode = (id: string): Uint8Array =>
  DetectionEvent.encode(
    DetectionEvent.fromPartial({
      eventId: id,
      tenantId: device.tenantId,
      siteId: 'lab',
      deviceId: device.deviceId,
      cameraId: 'cam1',
      occurredAt: new Date(),
      trackId: `t-${id.slice(-6)}`,
      phase: TrackPhase.TRACK_PHASE_START,
      label: 'person',
      score: 0.9,
      box: { x: 0.1, y: 0.1, w: 0.2, h: 0.5 },
    }),
  ).finish();

const timer = setInterval(() => {
  const batch = Array.from({ length: Math.min(perTick, budget) }, () => newId());
  if (batch.length > 0) {
    acks.write('I', batch);
    const appended: string[] = [];
    for (const id of batch) {
      const r = outbox.append({ id, priority: 1, kind: 'event', subject, payload: encode(id) });
      if (!r.accepted) {
        process.stderr.write(`append refused: ${r.reason}\n`);
        break;
      }
      appended.push(id);
    }
    acks.write('A', appended);
    budget -= appended.length;
    acked += appended.length;
  }
  uplink.notify();
}, tick);

// Depth reports let the parent know when this producer's outbox is empty.
const report = setInterval(() => process.stdout.write(`progress ${acked} ${outbox.stats().depth}\n`), 500);
process.once('SIGTERM', () => {
  clearInterval(timer);
  clearInterval(report);
  void uplink.stop().then(async () => {
    await nc.close();
    outbox.close();
    acks.close();
    process.exit(0);
  });
});
