import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** Every ingest metric, registered on the app's registry (names are part of the ops contract). */
export class IngestMetrics {
  readonly received: Counter;
  readonly redelivered: Counter;
  readonly inserted: Counter;
  readonly duplicates: Counter;
  readonly deadLettered: Counter<'reason'>;
  readonly batchSize: Histogram;
  readonly commitSeconds: Histogram;
  readonly freshnessSeconds: Histogram;
  readonly receiptsSent: Counter;
  readonly receiptQueries: Counter<'result'>;
  readonly errors: Counter<'stage'>;
  readonly consumerPending: Gauge;
  readonly consumerAckPending: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    this.received = new Counter({
      name: 'vigil_cloud_ingest_events_received_total',
      help: 'Messages delivered to ingest from EVENTS (including redeliveries)',
      registers,
    });
    this.redelivered = new Counter({
      name: 'vigil_cloud_ingest_redeliveries_total',
      help: 'Messages delivered to ingest more than once (after a nak, an expired ack wait or a restart)',
      registers,
    });
    this.inserted = new Counter({
      name: 'vigil_cloud_ingest_events_inserted_total',
      help: 'Events inserted into PostgreSQL',
      registers,
    });
    this.duplicates = new Counter({
      name: 'vigil_cloud_ingest_events_duplicate_total',
      help: 'Valid events that were already stored (same event id and occurred_at): acked, not inserted again',
      registers,
    });
    this.deadLettered = new Counter({
      name: 'vigil_cloud_ingest_dead_lettered_total',
      help: 'Messages moved to DEAD_LETTER, by reason',
      labelNames: ['reason'],
      registers,
    });
    this.batchSize = new Histogram({
      name: 'vigil_cloud_ingest_batch_size',
      help: 'Messages per fetched batch',
      buckets: [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000],
      registers,
    });
    this.commitSeconds = new Histogram({
      name: 'vigil_cloud_ingest_commit_seconds',
      help: 'Insert + commit time of one batch',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.freshnessSeconds = new Histogram({
      name: 'vigil_cloud_event_freshness_seconds',
      help: 'Capture to commit: commit time minus occurred_at of each newly inserted event (the freshness SLI; le="30" is the SLO threshold)',
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600],
      registers,
    });
    this.receiptsSent = new Counter({
      name: 'vigil_cloud_ingest_receipts_sent_total',
      help: 'Commit receipts pushed to devices after a commit',
      registers,
    });
    this.receiptQueries = new Counter({
      name: 'vigil_cloud_ingest_receipt_queries_total',
      help: 'Receipt queries from devices, by result (answered, too_large, invalid, mismatch, busy, error)',
      labelNames: ['result'],
      registers,
    });
    this.errors = new Counter({
      name: 'vigil_cloud_ingest_errors_total',
      help: 'Ingest failures that are retried, by stage (fetch, database, dead_letter, receipt, consumer_info, stranded)',
      labelNames: ['stage'],
      registers,
    });
    this.consumerPending = new Gauge({
      name: 'vigil_cloud_ingest_consumer_pending',
      help: 'Messages in EVENTS not yet delivered to the ingest consumer (num_pending, refreshed periodically)',
      registers,
    });
    this.consumerAckPending = new Gauge({
      name: 'vigil_cloud_ingest_consumer_ack_pending',
      help: 'Messages delivered to ingest and not yet acked (num_ack_pending, refreshed periodically)',
      registers,
    });
  }
}
