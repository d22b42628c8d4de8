import { setTimeout as sleep } from 'node:timers/promises';
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type Consumer,
  type ConsumerMessages,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import { nanos, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { CommitReceipt, DetectionEvent, parseSubject, ReceiptQuery, subjectFor } from '@vigil/proto';

/*
 * A stand-in for the cloud ingest in edge-agent tests, written to the uplink contract (DESIGN.md "Edge data
 * path"; proto/vigil/v1/receipt.proto): a durable pull consumer on EVENTS "commits" each event id into a Set
 * (idempotent, like INSERT ... ON CONFLICT DO NOTHING), then acks the messages, then publishes a CommitReceipt
 * per device on vigil.v1.<tenant>.<device>.rcpt; ReceiptQuery requests on the same subjects are answered with
 * the committed subset. Replace it with the real cloud in an end-to-end test.
 *
 * Test-only: the bookkeeping maps grow with the events of one test.
 */

export const EVENTS_STREAM = 'EVENTS';
export const EVENTS_SUBJECTS = ['vigil.v1.*.*.evt.*'];

/** EVENTS as the cloud creates it: file storage, work queue, discard new when full. */
export async function createEventsStream(
  nc: NatsConnection,
  opts: { maxBytes?: number; duplicateWindowMs?: number } = {},
): Promise<JetStreamManager> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.delete(EVENTS_STREAM).catch(() => false);
  await jsm.streams.add({
    name: EVENTS_STREAM,
    subjects: EVENTS_SUBJECTS,
    storage: StorageType.File,
    retention: RetentionPolicy.Workqueue,
    discard: DiscardPolicy.New,
    max_bytes: opts.maxBytes ?? -1,
    max_msg_size: 1024 * 1024,
    duplicate_window: nanos(opts.duplicateWindowMs ?? 120_000),
  });
  return jsm;
}

/**
 * Bytes that EVENTS accounts for one message (subject, headers, payload and the file store's record overhead),
 * measured with a throwaway EVENTS stream that is deleted again. Used to size a "full" stream in events.
 */
export async function storedMessageBytes(
  nc: NatsConnection,
  subject: string,
  payload: Uint8Array,
): Promise<number> {
  const jsm = await createEventsStream(nc);
  // A UUID-long msg id, as the agent sends.
  await jetstream(nc).publish(subject, payload, { msgID: '00000000-0000-7000-8000-000000000000' });
  const bytes = (await jsm.streams.info(EVENTS_STREAM)).state.bytes;
  // Purged before the delete: once (clean-clone CI, 2026-12-08, nats-server 2.10.27) the EVENTS stream created
  // right after this delete held this probe message, which the test's responder then refused (its msg id is not
  // its event id) and nothing drained. Empty first, the probe cannot come back.
  await jsm.streams.purge(EVENTS_STREAM);
  await jsm.streams.delete(EVENTS_STREAM);
  return bytes;
}

export interface ReceiptResponderOptions {
  /** A connection with the cloud service's certificate. */
  nc: NatsConnection;
  durable?: string;
  /** Messages fetched and committed per batch. */
  batchSize?: number;
  /** Wait this long before committing each batch (a slow cloud). */
  commitDelayMs?: number;
  /** Return true to lose the pushed receipt for these ids (queries are still answered). */
  dropReceipt?: (ids: readonly string[]) => boolean;
  /** Answer ReceiptQuery requests (default true). */
  answerQueries?: boolean;
  /** Start without consuming (call `resume()`). */
  paused?: boolean;
}

export class ReceiptResponder {
  /** Event ids committed, in commit order of first insert. */
  readonly committed = new Set<string>();
  /** Per event id: how many times it was stored in EVENTS (first deliveries of a stream message). */
  readonly stored = new Map<string, number>();
  /** Per event id: deliveries, redeliveries included. */
  readonly deliveries = new Map<string, number>();
  receiptsSent = 0;
  receiptsDropped = 0;
  queriesAnswered = 0;
  /** Ids asked about in queries (sum over queries). */
  idsQueried = 0;
  lastError: unknown;

  private readonly opts: Required<Omit<ReceiptResponderOptions, 'dropReceipt'>> &
    Pick<ReceiptResponderOptions, 'dropReceipt'>;
  private paused: boolean;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private messages: ConsumerMessages | undefined;
  private sub: Subscription | undefined;
  private readonly sequence = new Map<string, bigint>();

  constructor(opts: ReceiptResponderOptions) {
    this.opts = {
      durable: 'test-ingest',
      batchSize: 100,
      commitDelayMs: 0,
      answerQueries: true,
      paused: false,
      ...opts,
    };
    this.paused = this.opts.paused;
  }

  async start(): Promise<this> {
    const jsm = await jetstreamManager(this.opts.nc);
    await jsm.consumers.add(EVENTS_STREAM, {
      durable_name: this.opts.durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(5_000),
      max_deliver: -1,
    });
    const consumer = await jetstream(this.opts.nc).consumers.get(EVENTS_STREAM, this.opts.durable);
    this.sub = this.opts.nc.subscribe('vigil.v1.*.*.rcpt', {
      callback: (err, msg) => this.onQuery(err, msg),
    });
    this.loop = this.run(consumer);
    return this;
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
  }

  setCommitDelay(ms: number): void {
    this.opts.commitDelayMs = ms;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.sub?.unsubscribe();
    this.messages?.stop();
    await this.loop;
  }

  private async run(consumer: Consumer): Promise<void> {
    while (!this.stopped) {
      if (this.paused) {
        await sleep(20);
        continue;
      }
      try {
        // Micro-batching like an ingest: what arrives within ~2 ms, up to batchSize; commits run one at a time.
        let batch: JsMsg[] = [];
        let timer: NodeJS.Timeout | undefined;
        let chain = Promise.resolve();
        const flush = (): void => {
          clearTimeout(timer);
          timer = undefined;
          if (batch.length === 0) return;
          const b = batch;
          batch = [];
          chain = chain
            .then(() => this.commit(b))
            .catch((err: unknown) => {
              this.lastError = err; // the messages come back after ack_wait
            });
        };
        const messages = await consumer.consume({
          max_messages: this.opts.batchSize * 2,
          expires: 2_000,
          callback: (m) => {
            batch.push(m);
            if (batch.length >= this.opts.batchSize) flush();
            else timer ??= setTimeout(flush, 2);
          },
        });
        this.messages = messages;
        let closed = false;
        void messages.closed().then(
          () => (closed = true),
          (err: unknown) => {
            this.lastError = err;
            closed = true;
          },
        );
        while (!closed && !this.paused && !this.stopped) await sleep(20);
        messages.stop(); // pulled but unprocessed messages come back after ack_wait
        flush();
        await chain;
      } catch (err) {
        // nats-server restarting, connection reconnecting: try again.
        this.lastError = err;
        await sleep(100);
      }
    }
  }

  /** Commit, then ack, then receipts (per device), as the cloud ingest does. */
  private async commit(batch: JsMsg[]): Promise<void> {
    if (this.opts.commitDelayMs > 0) await sleep(this.opts.commitDelayMs);
    const byDevice = new Map<string, { tenant: string; device: string; ids: string[] }>();
    for (const m of batch) {
      const id = DetectionEvent.decode(m.data).eventId;
      const header = m.headers?.get('Nats-Msg-Id');
      if (header !== id) throw new Error(`Nats-Msg-Id ${header} differs from event_id ${id}`);
      this.deliveries.set(id, (this.deliveries.get(id) ?? 0) + 1);
      if (m.info.deliveryCount === 1) this.stored.set(id, (this.stored.get(id) ?? 0) + 1);
      this.committed.add(id);
      const parts = parseSubject(m.subject);
      if (!parts) throw new Error(`unexpected subject ${m.subject}`);
      const key = `${parts.tenant}/${parts.device}`;
      const entry = byDevice.get(key) ?? { tenant: parts.tenant, device: parts.device, ids: [] };
      entry.ids.push(id);
      byDevice.set(key, entry);
    }
    await Promise.all(batch.map((m) => m.ackAck()));
    for (const { tenant, device, ids } of byDevice.values()) {
      if (this.opts.dropReceipt?.(ids)) {
        this.receiptsDropped++;
        continue;
      }
      this.opts.nc.publish(subjectFor(tenant, device, 'rcpt'), this.receipt(tenant, device, ids));
      this.receiptsSent++;
    }
  }

  private receipt(tenant: string, device: string, ids: string[]): Uint8Array {
    const key = `${tenant}/${device}`;
    const seq = (this.sequence.get(key) ?? 0n) + 1n;
    this.sequence.set(key, seq);
    return CommitReceipt.encode({
      tenantId: tenant,
      deviceId: device,
      eventIds: ids,
      committedAt: new Date(),
      sequence: seq,
    }).finish();
  }

  private onQuery(err: Error | null, msg: Msg): void {
    if (err || !msg.reply || !this.opts.answerQueries || this.stopped) return; // receipts have no reply
    const parts = parseSubject(msg.subject);
    const q = ReceiptQuery.decode(msg.data);
    if (!parts || parts.tenant !== q.tenantId || parts.device !== q.deviceId) return;
    this.queriesAnswered++;
    this.idsQueried += q.eventIds.length;
    msg.respond(
      this.receipt(
        q.tenantId,
        q.deviceId,
        q.eventIds.filter((id) => this.committed.has(id)),
      ),
    );
  }
}
