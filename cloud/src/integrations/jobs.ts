import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
} from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import type { EventView } from '../api/event-store.js';
import type { CloudConfig } from '../config/schema.js';
import {
  addWhenPlaceable,
  DENY_PURGE_AND_DELETE,
  updateConsumerIfChanged,
  updateStreamIfChanged,
} from '../ingest/streams.js';

/*
 * JOBS: the JetStream work-queue stream for background work (DESIGN.md "jobs"). One message per job; a job is
 * removed when a worker acks (done) or terms (dead) it, and nak'd with a delay to be retried later. Discard
 * new: when full, enqueuing fails (the outbox relay keeps the job and retries) rather than dropping queued jobs.
 * Webhook deliveries are `vigil.jobs.webhooks.deliver`, Nats-Msg-Id `<webhook id>:<event id>`, so the same
 * event enqueued twice for a webhook within the duplicate window is stored once.
 */

export const JOBS_STREAM = 'JOBS';
export const WEBHOOK_JOB_SUBJECT = 'vigil.jobs.webhooks.deliver';
/** Agency alert deliveries (CAP 1.2, cloud/src/alerts/): `{tenant_id, message_id}`, Nats-Msg-Id the outbox's. */
export const ALERT_JOB_SUBJECT = 'vigil.jobs.alerts.deliver';
/**
 * Only the job subjects that a consumer takes: a device can make JetStream publish a PubAck on any subject
 * (issue 12), and one stored on a subject nobody consumes would stay in JOBS for good, using its space.
 */
export const JOBS_SUBJECTS = [WEBHOOK_JOB_SUBJECT, ALERT_JOB_SUBJECT];
export const WEBHOOKS_CONSUMER = 'webhooks';
export const ALERTS_CONSUMER = 'alerts';
/** A job is an event view plus ids (~1-2 KiB); anything much bigger is a bug. */
export const JOBS_MAX_MSG_SIZE = 64 * 1024;
export const JOBS_MAX_MSGS = 1_000_000;
/** Deliveries of one job at most, short-circuited ones included; past it the job is dead (a safety net). */
export const MAX_JOB_DELIVERIES = 1000;

export interface WebhookJob {
  webhook_id: string;
  tenant_id: string;
  event: EventView;
}

const isText = (v: unknown, max: number): v is string =>
  typeof v === 'string' && v.length > 0 && v.length <= max;

/**
 * The webhook job in `data`, or null when it is not one this code wrote. A device can make JetStream publish a
 * PubAck (`{"stream","seq"}`, valid JSON) on any subject it names, `vigil.jobs.webhooks.deliver` included
 * (issue 12): such a message is not a job and must be dead at once.
 */
export function parseWebhookJob(data: Uint8Array): WebhookJob | null {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data));
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const j = v as Record<string, unknown>;
  const event = j.event as Record<string, unknown> | null | undefined;
  if (!isText(j.webhook_id, 200) || !isText(j.tenant_id, 200)) return null;
  if (typeof event !== 'object' || event === null || Array.isArray(event)) return null;
  if (!isText(event.event_id, 200)) return null;
  return v as WebhookJob;
}

type JobsConfig = Pick<CloudConfig, 'integrations' | 'streams'>;

export function jobsStreamConfig(cfg: JobsConfig) {
  return {
    name: JOBS_STREAM,
    description: 'Background jobs (webhook and agency alert deliveries), work queue: acked or termed = done',
    subjects: JOBS_SUBJECTS,
    storage: StorageType.File,
    retention: RetentionPolicy.Workqueue,
    discard: DiscardPolicy.New,
    max_bytes: cfg.integrations.jobsMaxBytes,
    max_msgs: JOBS_MAX_MSGS,
    max_msg_size: JOBS_MAX_MSG_SIZE,
    duplicate_window: nanos(cfg.streams.duplicateWindowSeconds * 1000),
    num_replicas: cfg.streams.replicas,
    // A PubAck aimed at `$JS.API.STREAM.PURGE.JOBS` / `MSG.DELETE.JOBS` must not drop queued jobs (issue 12).
    ...DENY_PURGE_AND_DELETE,
  };
}

/** ack_wait: longer than one attempt can take, so a job is never redelivered while a worker still runs it. */
export function webhooksConsumerConfig(
  cfg: JobsConfig,
  name = WEBHOOKS_CONSUMER,
  subject = WEBHOOK_JOB_SUBJECT,
) {
  return {
    durable_name: name,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: subject,
    ack_wait: nanos(cfg.integrations.timeoutMs * 2 + 10_000),
    // Unlimited here: the worker counts attempts itself (short-circuited deliveries are not attempts) and
    // terms a job that reaches MAX_JOB_DELIVERIES.
    max_deliver: -1,
    max_ack_pending: 1000,
  };
}

async function exists(info: () => Promise<unknown>, code: number): Promise<boolean> {
  try {
    await info();
    return true;
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === code) return false;
    throw err;
  }
}

/** Creates or updates JOBS and its `webhooks` and `alerts` consumers (idempotent, safe when several processes race). */
export async function ensureJobs(jsm: JetStreamManager, cfg: JobsConfig): Promise<void> {
  const stream = jobsStreamConfig(cfg);
  const { name, retention: _r, storage: _s, ...updatable } = stream;
  const streamFound = () => exists(() => jsm.streams.info(name), JetStreamApiCodes.StreamNotFound);
  if (!(await streamFound()))
    await addWhenPlaceable(() => jsm.streams.add(stream)).catch(async (err: unknown) => {
      if (!(await streamFound())) throw err;
    });
  await updateStreamIfChanged(jsm, name, updatable);
  for (const [durable, subject] of [
    [WEBHOOKS_CONSUMER, WEBHOOK_JOB_SUBJECT],
    [ALERTS_CONSUMER, ALERT_JOB_SUBJECT],
  ] as const) {
    const consumer = webhooksConsumerConfig(cfg, durable, subject);
    const { durable_name: _d, deliver_policy: _p, filter_subject: _f, ...changeable } = consumer;
    const found = () =>
      exists(() => jsm.consumers.info(JOBS_STREAM, durable), JetStreamApiCodes.ConsumerNotFound);
    if (!(await found()))
      await jsm.consumers.add(JOBS_STREAM, consumer).catch(async (err: unknown) => {
        if (!(await found())) throw err;
      });
    await updateConsumerIfChanged(jsm, JOBS_STREAM, durable, changeable);
  }
}
