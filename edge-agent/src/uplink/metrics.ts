import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { MEDIA_PUBLISH_RESULTS } from './media.js';
import { PUBLISH_ERROR_REASONS, UPLINK_STATES } from './sync.js';
import type { UplinkMetricsHooks } from './uplink.js';

/** The uplink's metrics, registered on the agent's Registry, exposed as the Uplink's hooks. */
export type UplinkMetrics = Required<UplinkMetricsHooks>;

/**
 * Registers the uplink's metrics on `registry` (once per registry: prom-client refuses duplicate names) and
 * returns the hooks that feed them:
 * - vigil_agent_uplink_published_total: JetStream publishes started (resends included)
 * - vigil_agent_uplink_pubacks_total{duplicate}: PubAcks, `duplicate="true"` when JetStream had the msg id
 * - vigil_agent_uplink_publish_errors_total{reason}: timeout, no_stream, stream_full, disconnected, ...
 * - vigil_agent_uplink_receipts_total{source}: CommitReceipts accepted (`receipt` pushed, `query` answers)
 * - vigil_agent_uplink_receipts_rejected_total{reason}: invalid, foreign
 * - vigil_agent_uplink_acked_total: outbox entries deleted on receipts
 * - vigil_agent_uplink_queries_total{reason}: ReceiptQueries sent (startup, reconnect, receipt_timeout)
 * - vigil_agent_uplink_query_errors_total{reason}
 * - vigil_agent_uplink_requeued_total: entries resent because a query answer did not list them
 * - vigil_agent_uplink_in_flight / vigil_agent_uplink_in_flight_bytes: the window in use
 * - vigil_agent_uplink_state{state}: 1 for the current state
 * - vigil_agent_uplink_commit_latency_seconds: outbox arrival -> receipt, for entries this run sent
 * - vigil_agent_media_published_total{result}: MediaObject publishes (ok, duplicate, too_large, error)
 * - vigil_agent_media_published_bytes_total: media bytes (the JPEGs) of the `ok` ones
 */
export function createUplinkMetrics(registry: Registry): UplinkMetrics {
  const registers = [registry];
  const published = new Counter({
    name: 'vigil_agent_uplink_published_total',
    help: 'JetStream publishes of outbox entries started (resends included)',
    registers,
  });
  const pubacks = new Counter({
    name: 'vigil_agent_uplink_pubacks_total',
    help: 'JetStream PubAcks received; duplicate="true" when the stream already had the msg id',
    labelNames: ['duplicate'],
    registers,
  });
  const publishErrors = new Counter({
    name: 'vigil_agent_uplink_publish_errors_total',
    help: 'Failed JetStream publishes by reason (timeout, no_stream, stream_full, disconnected, permission, ...)',
    labelNames: ['reason'],
    registers,
  });
  const receipts = new Counter({
    name: 'vigil_agent_uplink_receipts_total',
    help: 'CommitReceipts accepted: pushed by the cloud (source="receipt") or answering a query (source="query")',
    labelNames: ['source'],
    registers,
  });
  const rejected = new Counter({
    name: 'vigil_agent_uplink_receipts_rejected_total',
    help: 'Messages on the receipt subject ignored: undecodable (invalid) or for another device (foreign)',
    labelNames: ['reason'],
    registers,
  });
  const acked = new Counter({
    name: 'vigil_agent_uplink_acked_total',
    help: 'Outbox entries deleted because the cloud confirmed their commit',
    registers,
  });
  const queries = new Counter({
    name: 'vigil_agent_uplink_queries_total',
    help: 'ReceiptQuery requests sent, by reason (startup, reconnect, receipt_timeout)',
    labelNames: ['reason'],
    registers,
  });
  const queryErrors = new Counter({
    name: 'vigil_agent_uplink_query_errors_total',
    help: 'ReceiptQuery requests without a usable answer, by reason',
    labelNames: ['reason'],
    registers,
  });
  const requeued = new Counter({
    name: 'vigil_agent_uplink_requeued_total',
    help: 'In-flight entries released for a resend because the cloud did not list them as committed',
    registers,
  });
  const inFlight = new Gauge({
    name: 'vigil_agent_uplink_in_flight',
    help: 'Outbox entries published and not yet confirmed committed',
    registers,
  });
  const inFlightBytes = new Gauge({
    name: 'vigil_agent_uplink_in_flight_bytes',
    help: 'Bytes (payload + media) of the in-flight entries',
    registers,
  });
  const state = new Gauge({
    name: 'vigil_agent_uplink_state',
    help: "1 for the uplink's current state (offline, syncing, online, backing_off)",
    labelNames: ['state'],
    registers,
  });
  const latency = new Histogram({
    name: 'vigil_agent_uplink_commit_latency_seconds',
    help: "From an event's arrival in the outbox to the cloud's commit receipt",
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600],
    registers,
  });
  const media = new Counter({
    name: 'vigil_agent_media_published_total',
    help:
      'MediaObject publishes by result: ok, duplicate (MEDIA had the media id), ' +
      'too_large (dropped, the event went without it), error (the entry is retried)',
    labelNames: ['result'],
    registers,
  });
  const mediaBytes = new Counter({
    name: 'vigil_agent_media_published_bytes_total',
    help: 'Media bytes (snapshot data, without the envelope) of MediaObjects published with result="ok"',
    registers,
  });
  // Known label values start at 0 so that rate() and absent() work from the first scrape.
  for (const reason of PUBLISH_ERROR_REASONS) publishErrors.inc({ reason }, 0);
  for (const d of ['true', 'false']) pubacks.inc({ duplicate: d }, 0);
  for (const s of UPLINK_STATES) state.set({ state: s }, 0);
  for (const result of MEDIA_PUBLISH_RESULTS) media.inc({ result }, 0);

  return {
    published: () => published.inc(),
    puback: (duplicate) => pubacks.inc({ duplicate: String(duplicate) }),
    publishError: (reason) => publishErrors.inc({ reason }),
    receipt: (source) => receipts.inc({ source }),
    receiptRejected: (reason) => rejected.inc({ reason }),
    acked: (n) => acked.inc(n),
    commitLatency: (seconds) => latency.observe(seconds),
    querySent: (reason) => queries.inc({ reason }),
    queryError: (reason) => queryErrors.inc({ reason }),
    requeued: (n) => requeued.inc(n),
    state: (current) => {
      for (const s of UPLINK_STATES) state.set({ state: s }, s === current ? 1 : 0);
    },
    inFlight: (entries, bytes) => {
      inFlight.set(entries);
      inFlightBytes.set(bytes);
    },
    mediaPublished: (result, bytes) => {
      media.inc({ result });
      if (result === 'ok') mediaBytes.inc(bytes);
    },
  };
}
