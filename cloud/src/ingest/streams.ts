import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type ConsumerInfo,
  type JetStreamManager,
  type StreamConfig,
  type StreamInfo,
} from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import type { CloudConfig } from '../config/schema.js';

export const EVENTS_STREAM = 'EVENTS';
export const DEAD_LETTER_STREAM = 'DEAD_LETTER';
export const INGEST_CONSUMER = 'ingest';
/** What devices publish events on: vigil.v1.<tenant>.<device>.evt.<camera>. */
export const EVENTS_SUBJECTS = ['vigil.v1.*.*.evt.*'];
export const DEAD_LETTER_SUBJECTS = ['vigil.dlq.>'];
/** Largest event that EVENTS accepts (a device's publish of a bigger one fails). */
export const EVENTS_MAX_MSG_SIZE = 1024 * 1024;
/** How long ingest may hold a delivered message before JetStream redelivers it. */
export const INGEST_ACK_WAIT_MS = 30_000;

const GIB = 1024 * 1024 * 1024;

type StreamsConfig = Pick<CloudConfig, 'streams' | 'ingest'>;

/** A stream's configuration as the cloud wants it (fields not named keep the server's defaults). */
export type StreamSpec = Partial<StreamConfig> & { name: string };

export function eventsStreamConfig(cfg: StreamsConfig): StreamSpec {
  return {
    name: EVENTS_STREAM,
    description:
      'Detection events from devices, consumed by ingest (work queue: acked = committed in PostgreSQL)',
    subjects: EVENTS_SUBJECTS,
    storage: StorageType.File,
    retention: RetentionPolicy.Workqueue,
    // When full, the device's publish fails and the event stays in its outbox: back-pressure, not loss.
    discard: DiscardPolicy.New,
    max_bytes: cfg.streams.eventsMaxBytes,
    max_msgs: -1,
    max_age: 0,
    max_msg_size: EVENTS_MAX_MSG_SIZE,
    duplicate_window: nanos(cfg.streams.duplicateWindowSeconds * 1000),
    num_replicas: cfg.streams.replicas,
  };
}

export function deadLetterStreamConfig(cfg: StreamsConfig): StreamSpec {
  return {
    name: DEAD_LETTER_STREAM,
    description: 'Messages that ingest refused, with the reason in headers (original bytes as data)',
    subjects: DEAD_LETTER_SUBJECTS,
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_bytes: GIB,
    max_msgs: -1,
    max_age: nanos(cfg.streams.deadLetterMaxAgeDays * 86_400_000),
    // Nats-Msg-Id = dlq-<original stream seq>: a dead-lettering retried after a lost PubAck is stored once.
    duplicate_window: nanos(cfg.streams.duplicateWindowSeconds * 1000),
    num_replicas: cfg.streams.replicas,
  };
}

/** Creates EVENTS and DEAD_LETTER, or updates them to this configuration. Idempotent; safe to race. */
export async function ensureStreams(jsm: JetStreamManager, cfg: StreamsConfig): Promise<StreamInfo[]> {
  return [
    await ensureStream(jsm, eventsStreamConfig(cfg)),
    await ensureStream(jsm, deadLetterStreamConfig(cfg)),
  ];
}

async function ensureStream(jsm: JetStreamManager, config: StreamSpec): Promise<StreamInfo> {
  const { name, retention: _r, storage: _s, ...updatable } = config;
  if (!(await exists(() => jsm.streams.info(name), JetStreamApiCodes.StreamNotFound))) {
    try {
      return await jsm.streams.add(config);
    } catch (err) {
      // Another cloud process created it in between: fall through to the update.
      if (!(await exists(() => jsm.streams.info(name), JetStreamApiCodes.StreamNotFound))) throw err;
    }
  }
  return jsm.streams.update(name, updatable);
}

/** The ingest consumer's configuration: durable pull, explicit acks, unlimited deliveries. */
export function ingestConsumerConfig(cfg: StreamsConfig): {
  durable_name: string;
  ack_policy: AckPolicy;
  deliver_policy: DeliverPolicy;
  ack_wait: number;
  max_deliver: number;
  max_ack_pending: number;
} {
  return {
    durable_name: INGEST_CONSUMER,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(INGEST_ACK_WAIT_MS),
    // Unlimited: a database outage redelivers for as long as it lasts. Poison is decided by validation.
    max_deliver: -1,
    max_ack_pending: cfg.ingest.maxAckPending,
  };
}

/** Creates the durable `ingest` consumer on EVENTS, or updates it to this configuration. */
export async function ensureIngestConsumer(jsm: JetStreamManager, cfg: StreamsConfig): Promise<ConsumerInfo> {
  const config = ingestConsumerConfig(cfg);
  if (
    await exists(() => jsm.consumers.info(EVENTS_STREAM, INGEST_CONSUMER), JetStreamApiCodes.ConsumerNotFound)
  ) {
    const { durable_name: _d, deliver_policy: _p, ...updatable } = config;
    return jsm.consumers.update(EVENTS_STREAM, INGEST_CONSUMER, updatable);
  }
  return jsm.consumers.add(EVENTS_STREAM, config);
}

async function exists(info: () => Promise<unknown>, notFoundCode: number): Promise<boolean> {
  try {
    await info();
    return true;
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === notFoundCode) return false;
    throw err;
  }
}
