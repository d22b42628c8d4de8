import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { Tracer } from '@opentelemetry/api';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { AuditLog } from '../audit/audit-log.js';
import type { CloudConfig } from '../config/schema.js';
import { PartitionJob } from '../events/partitions.js';
import { EventStore, type CommitHook, type NewEvent } from '../events/store.js';
import { MediaConsumer } from '../media/consumer.js';
import type { MediaStore } from '../media/store.js';
import { defaultsFromConfig } from '../privacy/policies.js';
import { partitionKeepsEvents } from '../privacy/retention-job.js';
import type { Database } from '../storage/tables.js';
import { CommittedFeed } from '../realtime/feed.js';
import { IngestConsumer } from './consumer.js';
import { DeviceCache } from './devices.js';
import { IngestMetrics } from './metrics.js';
import { ReceiptPublisher, ReceiptResponder } from './receipts.js';
import { StrandedRepair } from './stranded.js';
import {
  ensureIngestConsumer,
  ensureMediaConsumer,
  ensureStreams,
  STREAM_ADMIN_TIMEOUT_MS,
} from './streams.js';
import { IngestTracing } from './tracing.js';

export interface IngestDeps {
  nc: NatsConnection;
  /**
   * The connection that answers receipt queries: the responder user in JWT mode (publishes only into device
   * inboxes). Default `nc` (tests without JWT auth).
   */
  responderNc?: NatsConnection;
  db: Kysely<Database>;
  config: Readonly<Pick<CloudConfig, 'ingest' | 'streams' | 'media'> & Partial<Pick<CloudConfig, 'events'>>>;
  /** Records partitions dropped by retention; default: not recorded. */
  audit?: AuditLog | undefined;
  /** Where the media consumer writes objects; undefined (media.dir unset): acked and dropped, counted. */
  mediaStore?: MediaStore;
  log: Logger;
  metrics: Registry;
  /** Ingest spans (default: no-op). */
  tracer?: Tracer;
  now?: () => Date;
  random?: () => number;
  /** Also told about committed events, after the realtime feed; must not throw. */
  onCommitted?: ((rows: readonly NewEvent[]) => void) | undefined;
  /** Writes each batch's webhook jobs in its transaction (integrations/outbox.ts). */
  outbox?: CommitHook | undefined;
  /**
   * Which parts run (default all): `events` (the ingest role), `media` (the media role), `partitions` (the
   * partition upkeep beside the event consumer; false when the scheduler role runs it behind the lease).
   */
  parts?: Partial<{ events: boolean; media: boolean; partitions: boolean }> | undefined;
}

export interface IngestRole {
  stop(): Promise<void>;
}

/**
 * Starts the ingest and media roles: ensures the EVENTS, DEAD_LETTER, TELEMETRY and MEDIA streams (always, so
 * that devices can publish whichever roles run where), then, when `ingest.enabled`: for `parts.events` the
 * partition upkeep job (unless the scheduler runs it), the receipt-query responder, the event consumer loop (its
 * batches commit with their webhook jobs: `outbox`) and the stranded-message repair (stranded.ts); for
 * `parts.media` the media consumer loop. Several processes share each durable consumer (pull: JetStream hands
 * every message to one of them). `stop()` finishes the object (media) and the batch (events) in hand.
 */
export async function startIngest(deps: IngestDeps): Promise<IngestRole> {
  const { nc, db, config, metrics } = deps;
  const log = deps.log.child({ component: 'ingest' });
  const now = deps.now ?? (() => new Date());
  const jsm = await jetstreamManager(nc, { timeout: STREAM_ADMIN_TIMEOUT_MS });
  await ensureStreams(jsm, config);
  const parts = { events: true, media: true, partitions: true, ...deps.parts };
  const consumeEvents = config.ingest.enabled && parts.events;
  const consumeMedia = config.ingest.enabled && parts.media;
  if (!consumeEvents && !consumeMedia) {
    log.info('ingest disabled: streams ensured, not consuming');
    return { stop: () => Promise.resolve() };
  }
  const js = jetstream(nc);
  const devices = new DeviceCache(db, 60_000, 100_000, () => now().getTime());
  const stops: Array<() => Promise<void>> = [];
  if (consumeEvents)
    stops.push(await startEvents(deps, { jsm, js, devices, log, now, partitions: parts.partitions }));
  if (consumeMedia) {
    await ensureMediaConsumer(jsm);
    const media = new MediaConsumer({
      js,
      jsm,
      db,
      store: deps.mediaStore,
      devices,
      log: deps.log,
      metrics,
      config,
      now,
      random: deps.random,
    });
    media.start();
    stops.unshift(() => media.stop());
  }
  return {
    stop: async () => {
      for (const stop of stops) await stop();
    },
  };
}

/** The event path: the `ingest` consumer, receipts and their queries, stranded repair, partition upkeep. */
async function startEvents(
  deps: IngestDeps,
  ctx: {
    jsm: JetStreamManager;
    js: JetStreamClient;
    devices: DeviceCache;
    log: Logger;
    now: () => Date;
    partitions: boolean;
  },
): Promise<() => Promise<void>> {
  const { nc, db, config, metrics } = deps;
  const { jsm, js, devices, log, now } = ctx;
  await ensureIngestConsumer(jsm, config);
  const store = new EventStore(db);
  const partitions = ctx.partitions
    ? new PartitionJob(store, log, metrics, {
        now,
        retentionDays: config.events?.retentionDays ?? 0,
        audit: deps.audit,
        // Legal holds and longer retention policies keep a day's partition (privacy/retention-job.ts).
        keepsEvents: (day, at) =>
          partitionKeepsEvents(
            db,
            defaultsFromConfig({
              events: { retentionDays: config.events?.retentionDays ?? 0 },
              media: config.media,
            }),
            day,
            at,
          ),
      })
    : undefined;
  await partitions?.start();

  const ingestMetrics = new IngestMetrics(metrics);
  const receipts = new ReceiptPublisher(nc, ingestMetrics, log, now);
  // Device requests are answered on the responder connection (it may publish only into device inboxes).
  const responder = new ReceiptResponder(
    deps.responderNc ?? nc,
    store,
    receipts,
    ingestMetrics,
    log,
    now,
    metrics,
  );
  responder.start();
  const feed = new CommittedFeed(nc, log, metrics, now);
  const consumer = new IngestConsumer({
    js,
    jsm,
    store,
    devices,
    receipts,
    metrics: ingestMetrics,
    log,
    config,
    now,
    random: deps.random ?? Math.random,
    tracing: new IngestTracing(deps.tracer, metrics),
    outbox: deps.outbox,
    // After ack and receipts: the live feed for the websocket hubs of every API process (realtime/).
    onCommitted: (rows) => {
      feed.publish(rows);
      deps.onCommitted?.(rows);
    },
  });
  consumer.start();
  // At start and periodically: messages left below the ack floor (stranded.ts).
  const repair = new StrandedRepair({
    js,
    jsm,
    store,
    ingest: consumer,
    metrics,
    ingestMetrics,
    log,
    config,
    now,
  });
  repair.start();
  log.info(
    { batchSize: config.ingest.batchSize, maxAckPending: config.ingest.maxAckPending },
    'ingest consuming EVENTS',
  );
  return async () => {
    await repair.stop();
    await consumer.stop();
    await responder.stop();
    await partitions?.stop();
  };
}
