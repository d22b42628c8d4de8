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

export const TELEMETRY_STREAM = 'TELEMETRY';
export const HEARTBEATS_CONSUMER = 'heartbeats';
/** Where devices core-publish heartbeats (the stream captures them): vigil.v1.<tenant>.<device>.hb. */
export const TELEMETRY_SUBJECT = 'vigil.v1.*.*.hb';
export const TELEMETRY_SUBJECTS = [TELEMETRY_SUBJECT];
/** Heartbeats kept per device: only the latest state matters, a few cover a short cloud outage. */
export const TELEMETRY_MAX_MSGS_PER_SUBJECT = 5;
/** A heartbeat older than this says nothing useful any more (devices are offline after seconds). */
export const TELEMETRY_MAX_AGE_MS = 3_600_000;
export const TELEMETRY_MAX_BYTES = 256 * 1024 * 1024;
/** A heartbeat is a few hundred bytes (a little more per camera); anything bigger is refused. */
export const TELEMETRY_MAX_MSG_SIZE = 64 * 1024;
/** Recording a heartbeat is one UPDATE: redeliver if it is not acked within this. */
export const HEARTBEATS_ACK_WAIT_MS = 10_000;
/** Unacked heartbeats the `heartbeats` consumer may have out (across every cloud process). */
export const HEARTBEATS_MAX_ACK_PENDING = 1000;

export const MEDIA_STREAM = 'MEDIA';
export const MEDIA_CONSUMER = 'media';
/** Where devices publish media objects (Nats-Msg-Id = media_id): vigil.v1.<tenant>.<device>.media.<camera>. */
export const MEDIA_SUBJECT = 'vigil.v1.*.*.media.*';
export const MEDIA_SUBJECTS = [MEDIA_SUBJECT];
/** Room in a MEDIA message for the MediaObject's other fields (ids, times, hash, trace) around `data`. */
export const MEDIA_FIELDS_ALLOWANCE_BYTES = 4096;
/** Storing one object is a file write and fsync plus one INSERT: redeliver if not acked within this. */
export const MEDIA_ACK_WAIT_MS = 30_000;
/** Unacked objects (up to maxObjectBytes each) the `media` consumer may have out, across cloud processes. */
export const MEDIA_MAX_ACK_PENDING = 256;
/**
 * Deliveries of one object before the media consumer gives up on storing it and dead-letters it
 * (`store_failed`, original bytes kept for a replay). The consumer naks failures with a backoff capped at
 * a minute, so this covers a PostgreSQL or disk outage of roughly three quarters of an hour.
 */
export const MEDIA_MAX_DELIVER = 50;

/**
 * Every stream refuses purges (deny_purge): nothing in the cloud or its tools purges, and a device can aim the
 * PubAck of its own publish (`{"stream","seq"}`, "purge up to seq"; an error PubAck has no seq: "purge all")
 * at `$JS.API.STREAM.PURGE.<stream>` (issue 12). Streams that no code deletes single messages from also
 * refuse that (deny_delete; `$JS.API.STREAM.MSG.DELETE.<stream>` with a PubAck deletes message `seq`).
 * Both flags can be set on an existing stream but never cleared again (nats-server refuses the update):
 * to empty a stream, delete it and let the cloud recreate it.
 */
export const DENY_PURGE = { deny_purge: true } as const;
export const DENY_PURGE_AND_DELETE = { deny_purge: true, deny_delete: true } as const;

/**
 * JetStream API timeout for creating and updating streams and consumers. In a cluster such a request goes through
 * the meta leader and the stream's own raft group (scaling an existing stream to R3 copies it to two new peers):
 * seconds on a loaded host, where the client's 5 s default failed the cloud's start-up.
 */
export const STREAM_ADMIN_TIMEOUT_MS = 10_000;

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;

type StreamsConfig = Pick<CloudConfig, 'streams' | 'ingest' | 'media'>;
type ReplicasConfig = { streams: Pick<CloudConfig['streams'], 'replicas'> };

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
    // Not deny_delete: the stranded repair (stranded.ts) deletes committed messages by sequence.
    ...DENY_PURGE,
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
    // Not deny_delete: `vigil dlq replay` (tools/cli/src/dlq.ts) deletes each letter it replayed.
    ...DENY_PURGE,
  };
}

/**
 * Device heartbeats, consumed by the `heartbeats` consumer (fleet/heartbeats.ts). Limits retention, a
 * handful of the newest per device and at most an hour: it carries state, not history, so when full the
 * oldest go (discard old) and a device's publish never fails because of it.
 */
export function telemetryStreamConfig(cfg: ReplicasConfig): StreamSpec {
  return {
    name: TELEMETRY_STREAM,
    description: 'Device heartbeats (latest few per device), consumed by the heartbeats consumer',
    subjects: TELEMETRY_SUBJECTS,
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_msgs_per_subject: TELEMETRY_MAX_MSGS_PER_SUBJECT,
    max_msgs: -1,
    max_bytes: TELEMETRY_MAX_BYTES,
    max_age: nanos(TELEMETRY_MAX_AGE_MS),
    max_msg_size: TELEMETRY_MAX_MSG_SIZE,
    // Devices core-publish heartbeats and need no PubAck. Without no_ack the stream would send one to any
    // reply subject the publisher names, with the server's own rights (a device could aim it at
    // `$JS.API.STREAM.PURGE.<stream>` or another device's subjects): issue 12.
    no_ack: true,
    num_replicas: cfg.streams.replicas,
    ...DENY_PURGE_AND_DELETE,
  };
}

/**
 * Media objects from devices (snapshots), consumed by the `media` consumer (media/consumer.ts). Work queue:
 * acked = stored (file + row). When full, the device's publish fails and it backs off: back-pressure, not
 * loss. DEAD_LETTER has no max message size of its own (the server's max_payload bounds it), so a refused
 * object of up to max_msg_size fits there with its reason headers.
 */
export function mediaStreamConfig(cfg: Pick<CloudConfig, 'streams' | 'media'>): StreamSpec {
  return {
    name: MEDIA_STREAM,
    description: 'Media objects (snapshots) from devices, consumed by the media consumer (acked = stored)',
    subjects: MEDIA_SUBJECTS,
    storage: StorageType.File,
    retention: RetentionPolicy.Workqueue,
    discard: DiscardPolicy.New,
    max_bytes: cfg.media.streamMaxBytes,
    max_msgs: -1,
    max_age: 0,
    max_msg_size: cfg.media.maxObjectBytes + MEDIA_FIELDS_ALLOWANCE_BYTES,
    // Nats-Msg-Id = media_id: a device's resend after a lost PubAck is stored once.
    duplicate_window: nanos(cfg.streams.duplicateWindowSeconds * 1000),
    num_replicas: cfg.streams.replicas,
    ...DENY_PURGE_AND_DELETE,
  };
}

/**
 * Creates EVENTS, DEAD_LETTER, TELEMETRY and MEDIA, or updates them to this configuration (an existing stream
 * gains deny_purge / deny_delete here). Idempotent; safe to race.
 */
export async function ensureStreams(jsm: JetStreamManager, cfg: StreamsConfig): Promise<StreamInfo[]> {
  return [
    await ensureStream(jsm, eventsStreamConfig(cfg)),
    await ensureStream(jsm, deadLetterStreamConfig(cfg)),
    await ensureStream(jsm, telemetryStreamConfig(cfg)),
    await ensureStream(jsm, mediaStreamConfig(cfg)),
  ];
}

/**
 * Creates TELEMETRY when it does not exist; never updates it (that is {@link ensureStreams}' job, at every
 * cloud start). The heartbeat consumer calls this, so it needs no ingest role and cannot undo, racing
 * ensureStreams, a configuration that ensureStreams just applied.
 */
export async function ensureTelemetryStreamExists(jsm: JetStreamManager, cfg: ReplicasConfig): Promise<void> {
  if (await exists(() => jsm.streams.info(TELEMETRY_STREAM), JetStreamApiCodes.StreamNotFound)) return;
  try {
    await addWhenPlaceable(() => jsm.streams.add(telemetryStreamConfig(cfg)));
  } catch (err) {
    // Another cloud process (or ensureStreams) created it in between.
    if (!(await exists(() => jsm.streams.info(TELEMETRY_STREAM), JetStreamApiCodes.StreamNotFound)))
      throw err;
  }
}

async function ensureStream(jsm: JetStreamManager, config: StreamSpec): Promise<StreamInfo> {
  const { name, retention: _r, storage: _s, ...updatable } = config;
  if (!(await exists(() => jsm.streams.info(name), JetStreamApiCodes.StreamNotFound))) {
    try {
      return await addWhenPlaceable(() => jsm.streams.add(config));
    } catch (err) {
      // Another cloud process created it in between: fall through to the update.
      if (!(await exists(() => jsm.streams.info(name), JetStreamApiCodes.StreamNotFound))) throw err;
    }
  }
  return updateStreamIfChanged(jsm, name, updatable);
}

/**
 * Updates a stream only when a field the cloud sets differs from what the server has. In a cluster, an update
 * sent while another process's create of the same stream is still forming its raft group got no answer at all
 * (nats-server 2.10.27: the JetStream API request timed out, and the cloud's start-up with it), and two cloud
 * processes starting together do exactly that. An unchanged stream needs no request; a changed one (more
 * replicas, a new deny flag) is updated once.
 */
export async function updateStreamIfChanged(
  jsm: JetStreamManager,
  name: string,
  wanted: Partial<StreamConfig>,
): Promise<StreamInfo> {
  for (let attempt = 1; ; attempt++) {
    const info = await jsm.streams.info(name);
    const current = info.config as unknown as Record<string, unknown>;
    if (Object.entries(wanted).every(([k, v]) => sameValue(current[k], v))) return info;
    try {
      return await jsm.streams.update(name, wanted);
    } catch (err) {
      // Two processes applying the same change at once: one request may go unanswered (as above). Look again:
      // the other one's update may have done it.
      if (!(err instanceof Error && err.name === 'TimeoutError') || attempt >= UPDATE_ATTEMPTS) throw err;
    }
  }
}

/** As {@link updateStreamIfChanged}, for a durable consumer (two ingest processes start together). */
export async function updateConsumerIfChanged(
  jsm: JetStreamManager,
  stream: string,
  durable: string,
  wanted: Record<string, unknown>,
): Promise<ConsumerInfo> {
  for (let attempt = 1; ; attempt++) {
    const info = await jsm.consumers.info(stream, durable);
    const current = info.config as unknown as Record<string, unknown>;
    if (Object.entries(wanted).every(([k, v]) => sameValue(current[k], v))) return info;
    try {
      return await jsm.consumers.update(stream, durable, wanted);
    } catch (err) {
      if (!(err instanceof Error && err.name === 'TimeoutError') || attempt >= UPDATE_ATTEMPTS) throw err;
    }
  }
}

/**
 * A cluster that just started (or lost a node) answers a create of an R3 stream with "no suitable peers for
 * placement" until its meta leader has heard from enough peers: seconds. Retried for up to PLACEMENT_WAIT_MS, so a
 * cloud started with its NATS cluster waits instead of exiting; past it the error stands (too few nodes).
 */
export async function addWhenPlaceable<T>(add: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + PLACEMENT_WAIT_MS;
  for (;;) {
    try {
      return await add();
    } catch (err) {
      if (!(err instanceof Error && /no suitable peers/i.test(err.message)) || Date.now() > deadline)
        throw err;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

const PLACEMENT_WAIT_MS = 30_000;

/** Tries of one stream update that timed out (each waits STREAM_ADMIN_TIMEOUT_MS). */
const UPDATE_ATTEMPTS = 4;

function sameValue(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) && Array.isArray(b))
    return a.length === b.length && a.every((x, i) => sameValue(x, b[i]));
  // The server omits false flags and empty values from a stream's config.
  if (b === false && a === undefined) return true;
  return a === b;
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
    return updateConsumerIfChanged(jsm, EVENTS_STREAM, INGEST_CONSUMER, updatable);
  }
  return jsm.consumers.add(EVENTS_STREAM, config);
}

/**
 * The heartbeat consumer's configuration: durable pull, explicit acks, unlimited deliveries (a database
 * outage is retried for as long as TELEMETRY keeps the message, max_age). The deliver policy only applies
 * when the consumer is created: from then on the durable resumes where it was, so heartbeats that arrive
 * while every cloud process is down are processed when one starts. At creation (first deploy, or a consumer
 * lost with a wiped server), last_per_subject delivers each device's newest heartbeat and not the older
 * ones, which would only be overwritten.
 */
export function heartbeatsConsumerConfig(): {
  durable_name: string;
  ack_policy: AckPolicy;
  deliver_policy: DeliverPolicy;
  filter_subject: string;
  ack_wait: number;
  max_deliver: number;
  max_ack_pending: number;
} {
  return {
    durable_name: HEARTBEATS_CONSUMER,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.LastPerSubject,
    // The whole stream; nats-server 2.9 wants a filter with last_per_subject.
    filter_subject: TELEMETRY_SUBJECT,
    ack_wait: nanos(HEARTBEATS_ACK_WAIT_MS),
    max_deliver: -1,
    max_ack_pending: HEARTBEATS_MAX_ACK_PENDING,
  };
}

/** Creates the durable `heartbeats` consumer on TELEMETRY, or updates it to this configuration. */
export async function ensureHeartbeatsConsumer(jsm: JetStreamManager): Promise<ConsumerInfo> {
  const config = heartbeatsConsumerConfig();
  const { durable_name: _d, deliver_policy: _p, filter_subject: _f, ...updatable } = config;
  const found = () =>
    exists(
      () => jsm.consumers.info(TELEMETRY_STREAM, HEARTBEATS_CONSUMER),
      JetStreamApiCodes.ConsumerNotFound,
    );
  if (!(await found())) {
    try {
      return await jsm.consumers.add(TELEMETRY_STREAM, config);
    } catch (err) {
      // Another cloud process created it in between: fall through to the update.
      if (!(await found())) throw err;
    }
  }
  return updateConsumerIfChanged(jsm, TELEMETRY_STREAM, HEARTBEATS_CONSUMER, updatable);
}

/**
 * The media consumer's configuration: durable pull on the whole MEDIA stream, explicit acks, at most
 * MEDIA_MAX_DELIVER deliveries (the consumer dead-letters an object on its last failed delivery).
 */
export function mediaConsumerConfig(): {
  durable_name: string;
  ack_policy: AckPolicy;
  deliver_policy: DeliverPolicy;
  filter_subject: string;
  ack_wait: number;
  max_deliver: number;
  max_ack_pending: number;
} {
  return {
    durable_name: MEDIA_CONSUMER,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: MEDIA_SUBJECT,
    ack_wait: nanos(MEDIA_ACK_WAIT_MS),
    max_deliver: MEDIA_MAX_DELIVER,
    max_ack_pending: MEDIA_MAX_ACK_PENDING,
  };
}

/** Creates the durable `media` consumer on MEDIA, or updates it to this configuration. */
export async function ensureMediaConsumer(jsm: JetStreamManager): Promise<ConsumerInfo> {
  const config = mediaConsumerConfig();
  const { durable_name: _d, deliver_policy: _p, filter_subject: _f, ...updatable } = config;
  const found = () =>
    exists(() => jsm.consumers.info(MEDIA_STREAM, MEDIA_CONSUMER), JetStreamApiCodes.ConsumerNotFound);
  if (!(await found())) {
    try {
      return await jsm.consumers.add(MEDIA_STREAM, config);
    } catch (err) {
      // Another cloud process created it in between: fall through to the update.
      if (!(await found())) throw err;
    }
  }
  return updateConsumerIfChanged(jsm, MEDIA_STREAM, MEDIA_CONSUMER, updatable);
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
