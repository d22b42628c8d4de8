import {
  JetStreamApiCodes,
  JetStreamApiError,
  type Consumer,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import { context, type Context, type Span } from '@opentelemetry/api';
import type { TraceHeaders } from '../lib/tracing.js';
import type { Logger } from 'pino';
import type { CloudConfig } from '../config/schema.js';
import { utcDay, type CommitHook, type EventStore, type NewEvent } from '../events/store.js';
import { Backoff, sleep } from '../lib/backoff.js';
import { failpoint } from '../lib/failpoint.js';
import { publishDeadLetter, type DeadLetter } from './dead-letter.js';
import {
  deviceKey,
  registryRefusal,
  type DeviceCache,
  type DeviceKey,
  type RegisteredDevice,
} from './devices.js';
import type { IngestMetrics } from './metrics.js';
import type { ReceiptPublisher } from './receipts.js';
import { EVENTS_STREAM, INGEST_CONSUMER, ensureIngestConsumer, ensureStreams } from './streams.js';
import { IngestTracing } from './tracing.js';
import { validateEvent } from './validate.js';

export interface IngestConsumerDeps {
  js: JetStreamClient;
  jsm: JetStreamManager;
  store: EventStore;
  devices: DeviceCache;
  receipts: ReceiptPublisher;
  metrics: IngestMetrics;
  log: Logger;
  config: Readonly<Pick<CloudConfig, 'ingest' | 'streams' | 'media'>>;
  now: () => Date;
  random: () => number;
  /** Spans per event and per batch (default: no-op spans, nothing counted). */
  tracing?: IngestTracing;
  /** Gets the newly inserted rows of each batch after its ack and receipts (the realtime feed). */
  onCommitted?: ((rows: readonly NewEvent[]) => void) | undefined;
  /** Writes what must commit with each batch, in its transaction (the webhook outbox). */
  outbox?: CommitHook | undefined;
}

/** A fetch that has not ended this long after its expiry is abandoned (its messages get redelivered). */
const FETCH_GRACE_MS = 15_000;
/** Delay before a message whose dead-lettering failed is delivered again. */
const DEAD_LETTER_RETRY_MS = 5_000;
const CONSUMER_INFO_INTERVAL_MS = 5_000;
/** The set of days whose partition is known to exist is reset when it grows past this. */
const MAX_ENSURED_DAYS = 512;

interface Candidate {
  msg: JsMsg;
  row: NewEvent;
  /** The payload's trace context (the batch span links to the device's context). */
  trace: TraceHeaders | undefined;
}

interface Poison {
  msg: JsMsg;
  letter: DeadLetter;
  /** `vigil.ingest.event`, ended once the message is dead-lettered. */
  span: Span;
}

/**
 * The ingest loop on the durable pull consumer `ingest` of EVENTS:
 *
 *   fetch up to batchSize -> decode + validate -> ensure day partitions (outside the transaction)
 *   -> one INSERT ... SELECT FROM unnest(...) ON CONFLICT (event_id, occurred_at) DO NOTHING (in one
 *   transaction with the webhook outbox rows when there are webhooks) -> COMMIT
 *   -> ack -> push commit receipts; poison -> DEAD_LETTER (await PubAck) -> term.
 * The next batch is fetched while one commits (run()).
 *
 * A message is acked only after its row is committed, so an ack means "in PostgreSQL". If the database
 * fails, the batch is nak'd with a delay and the loop backs off (capped exponential with jitter) and keeps
 * going; redeliveries are harmless (ON CONFLICT). NATS outages end the fetch with an error or an empty
 * batch; the durable consumer keeps its state on the server and the loop resumes after the reconnect.
 */
export class IngestConsumer {
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private current: ConsumerMessages | undefined;
  private infoTimer: NodeJS.Timeout | undefined;
  private readonly ensuredDays = new Set<string>();
  private readonly fetchBackoff: Backoff;
  private readonly dbBackoff: Backoff;
  private readonly log: Logger;
  private readonly tracing: IngestTracing;

  constructor(private readonly deps: IngestConsumerDeps) {
    this.tracing = deps.tracing ?? new IngestTracing();
    this.fetchBackoff = new Backoff(250, 10_000, deps.random);
    this.dbBackoff = new Backoff(250, 10_000, deps.random);
    this.log = deps.log;
  }

  start(): void {
    this.loop = this.run();
    this.infoTimer = setInterval(() => void this.refreshConsumerInfo(), CONSUMER_INFO_INTERVAL_MS);
    this.infoTimer.unref();
    void this.refreshConsumerInfo();
  }

  /** Stops fetching, finishes the batch in hand (ack or nak), then resolves. */
  async stop(): Promise<void> {
    this.abort.abort();
    clearInterval(this.infoTimer);
    await this.current?.close().catch(() => undefined);
    await this.loop;
  }

  private get stopping(): boolean {
    return this.abort.signal.aborted;
  }

  /**
   * Fetches batch N+1 (pull, decode happens in process) while batch N commits: at most
   * `ingest.commitsInFlight` batches are between fetch and ack at once. An ack still follows its own batch's
   * COMMIT; two batches in flight holding one event (a redelivery) are safe: the second INSERT waits for the
   * first's row lock and then skips it (ON CONFLICT DO NOTHING), so only the first writes its outbox rows.
   */
  private async run(): Promise<void> {
    let consumer: Consumer | undefined;
    const inFlight = new Set<Promise<void>>();
    // Settles when the batch fetched last is done: the next one's commit hook may wait for it (order).
    let previous: Promise<void> = Promise.resolve();
    const limit = this.deps.config.ingest.commitsInFlight;
    while (!this.stopping) {
      try {
        consumer ??= await this.getConsumer();
        const batch = await this.fetch(consumer);
        this.fetchBackoff.reset();
        while (inFlight.size >= limit) await Promise.race(inFlight);
        if (batch.length > 0) {
          const p = this.process(batch, previous).catch((err: unknown) => {
            // process() handles database and dead-letter failures itself; anything else leaves the batch
            // unacked (redelivered after ack_wait).
            this.deps.metrics.errors.inc({ stage: 'process' });
            this.log.error(
              { err, messages: batch.length },
              'processing a batch failed; it will be redelivered',
            );
          });
          inFlight.add(p);
          previous = p;
          void p.finally(() => inFlight.delete(p));
        }
      } catch (err) {
        consumer = undefined;
        if (this.stopping) break;
        this.deps.metrics.errors.inc({ stage: 'fetch' });
        const delay = this.fetchBackoff.next();
        this.log.warn(
          { err, delayMs: delay, failures: this.fetchBackoff.failures },
          'fetching from EVENTS failed; retrying',
        );
        await sleep(delay, this.abort.signal);
      }
    }
    await Promise.all(inFlight);
  }

  /** The consumer handle; recreates the streams and the consumer if they are gone (e.g. a wiped server). */
  private async getConsumer(): Promise<Consumer> {
    try {
      return await this.deps.js.consumers.get(EVENTS_STREAM, INGEST_CONSUMER);
    } catch (err) {
      const missing =
        err instanceof JetStreamApiError &&
        (err.code === JetStreamApiCodes.ConsumerNotFound || err.code === JetStreamApiCodes.StreamNotFound);
      if (!missing) throw err;
      this.log.warn('EVENTS stream or ingest consumer missing; creating them again');
      await ensureStreams(this.deps.jsm, this.deps.config);
      await ensureIngestConsumer(this.deps.jsm, this.deps.config);
      return this.deps.js.consumers.get(EVENTS_STREAM, INGEST_CONSUMER);
    }
  }

  /**
   * One batch: wait (up to fetchExpiresMs) for the first message, then take at once what is already
   * pending behind it, up to batchSize. A lone event is stored as soon as it arrives instead of waiting for
   * a fetch of batchSize to expire, and under load every batch is full.
   */
  private async fetch(consumer: Consumer): Promise<JsMsg[]> {
    const { batchSize } = this.deps.config.ingest;
    const batch: JsMsg[] = [];
    await this.pull(consumer, 1, batch);
    const pending = batch[0]?.info.pending ?? 0;
    if (pending > 0 && batchSize > 1 && !this.stopping)
      await this.pull(consumer, Math.min(batchSize - 1, pending), batch);
    return batch;
  }

  private async pull(consumer: Consumer, max: number, batch: JsMsg[]): Promise<void> {
    const { fetchExpiresMs } = this.deps.config.ingest;
    const iter = await consumer.fetch({ max_messages: max, expires: fetchExpiresMs });
    this.current = iter;
    const had = batch.length;
    const guard = setTimeout(() => void iter.close().catch(() => undefined), fetchExpiresMs + FETCH_GRACE_MS);
    try {
      for await (const m of iter) batch.push(m);
    } catch (err) {
      // Messages already in hand are processed; the error surfaces on the next fetch if it persists.
      if (batch.length === 0) throw err;
      this.log.warn({ err, messages: batch.length - had }, 'fetch ended early');
    } finally {
      clearTimeout(guard);
      this.current = undefined;
    }
  }

  /** `before` settles when the batch fetched before this one is done (see CommitHook). */
  private async process(batch: JsMsg[], before?: Promise<void>): Promise<void> {
    const { metrics, config } = this.deps;
    const now = this.deps.now();
    metrics.batchSize.observe(batch.length);
    metrics.received.inc(batch.length);
    const redelivered = batch.filter((m) => m.redelivered).length;
    if (redelivered > 0) metrics.redelivered.inc(redelivered);

    let candidates: Candidate[] = [];
    const poison: Poison[] = [];
    for (const msg of batch) {
      const v = validateEvent(msg.subject, msg.data, msg.info.streamSequence, now, config.ingest);
      if (v.ok) candidates.push({ msg, row: v.row, trace: v.trace });
      else poison.push({ msg, letter: v, span: this.tracing.startDeadLetter(msg, v, v.reason) });
    }

    let retryDelay: number | undefined;
    let fresh: NewEvent[] = [];
    let batchSpan: Span | undefined;
    if (candidates.length > 0) {
      const tx = this.tracing.startBatch(candidates.length);
      batchSpan = tx.span;
      try {
        // Active for the log lines written meanwhile; the spans themselves get their parent explicitly.
        await this.tracing.within(tx.ctx, async () => {
          candidates = await this.checkRegistry(candidates, poison);
          this.tracing.linkEvents(tx.span, candidates);
          await this.ensurePartitions(candidates.map((c) => c.row));
          fresh = await this.commit(
            candidates.map((c) => c.row),
            tx.ctx,
            before,
          );
        });
        this.dbBackoff.reset();
        // Crash tests: committed in PostgreSQL, nothing acked, nothing enqueued yet.
        failpoint('ingest.after_commit');
      } catch (err) {
        this.tracing.end(tx.span, err);
        batchSpan = undefined;
        retryDelay = this.dbBackoff.next();
        this.ensuredDays.clear();
        metrics.errors.inc({ stage: 'database' });
        this.log.error(
          { err, messages: candidates.length, delayMs: retryDelay, failures: this.dbBackoff.failures },
          'storing a batch failed; it will be redelivered',
        );
        for (const c of candidates) c.msg.nak(retryDelay);
        candidates = [];
      }
    }

    // Committed: now, and only now, ack; then tell the devices. The batch span ends after both.
    for (const c of candidates) c.msg.ack();
    this.pushReceipts(candidates, this.deps.now());
    if (batchSpan) this.tracing.end(batchSpan);
    this.notifyCommitted(fresh);
    await this.deadLetter(poison, now);
    if (retryDelay !== undefined) await sleep(retryDelay, this.abort.signal);
  }

  /**
   * Stores rows validated elsewhere in this process (the stranded-message repair, stranded.ts) through the same
   * partition upkeep, insert, outbox and live feed as a fetched batch. Returns the rows inserted now; throws
   * if the database fails (nothing committed then).
   */
  async storeRows(rows: readonly NewEvent[]): Promise<NewEvent[]> {
    try {
      await this.ensurePartitions(rows);
      const fresh = await this.commit(rows, context.active());
      this.notifyCommitted(fresh);
      return fresh;
    } catch (err) {
      this.ensuredDays.clear();
      throw err;
    }
  }

  /** Registered devices among `rows` (by deviceKey, with their site), through the ingest loop's cache. */
  registered(rows: readonly NewEvent[]): Promise<Map<string, RegisteredDevice>> {
    return this.deps.devices.registered(rows.map((r) => ({ tenantId: r.tenant_id, deviceId: r.device_id })));
  }

  private notifyCommitted(fresh: readonly NewEvent[]): void {
    if (fresh.length === 0 || !this.deps.onCommitted) return;
    try {
      this.deps.onCommitted(fresh);
    } catch (err) {
      this.log.error({ err }, 'onCommitted failed (the batch is committed and acked)');
    }
  }

  /**
   * The registry, not the payload, says who and where: moves candidates of unregistered devices, and those
   * whose site is not the device's registered site, to `poison`; returns the rest. (Tenant and device are
   * the subject's, checked against the payload by validateEvent.)
   */
  private async checkRegistry(candidates: Candidate[], poison: Poison[]): Promise<Candidate[]> {
    // Nearly every batch is one device's (or a few): look each device up once, not once per event.
    const devices: DeviceKey[] = [];
    let last: NewEvent | undefined;
    for (const { row } of candidates) {
      if (last?.tenant_id === row.tenant_id && last.device_id === row.device_id) continue;
      devices.push({ tenantId: row.tenant_id, deviceId: row.device_id });
      last = row;
    }
    const registered = await this.deps.devices.registered(devices);
    let accepted: NewEvent | undefined;
    return candidates.filter((c) => {
      const row = c.row;
      // Same device and site as the row accepted just before: accepted too.
      if (
        accepted?.tenant_id === row.tenant_id &&
        accepted.device_id === row.device_id &&
        accepted.site_id === row.site_id
      )
        return true;
      const refusal = registryRefusal(registered, row);
      if (!refusal) {
        accepted = row;
        return true;
      }
      const { tenant_id: tenantId, device_id: deviceId, event_id: eventId } = row;
      const span = this.tracing.startDeadLetter(
        c.msg,
        { tenantId, deviceId, eventId },
        refusal.reason,
        c.trace,
      );
      poison.push({ msg: c.msg, span, letter: { ...refusal, tenantId, deviceId } });
      return false;
    });
  }

  /** Creates the day partitions the batch needs, outside the insert transaction (DDL takes strong locks). */
  private async ensurePartitions(rows: readonly NewEvent[]): Promise<void> {
    const days = new Set(rows.map((r) => utcDay(r.occurred_at)));
    for (const day of days) {
      if (this.ensuredDays.has(day)) continue;
      await this.deps.store.ensurePartition(day);
      if (this.ensuredDays.size >= MAX_ENSURED_DAYS) this.ensuredDays.clear();
      this.ensuredDays.add(day);
    }
  }

  /**
   * Inserts the batch in one transaction, with its webhook jobs (outbox) for the rows inserted now; returns
   * those rows (not the ones stored before).
   */
  private async commit(
    candidates: readonly NewEvent[],
    trace: Context,
    before?: Promise<void>,
  ): Promise<NewEvent[]> {
    if (candidates.length === 0) return [];
    // The same event twice in one batch (re-published with another msg id) is one row.
    const rows = new Map<string, NewEvent>();
    for (const row of candidates) rows.set(`${row.event_id} ${row.occurred_at.getTime()}`, row);
    const unique = [...rows.values()];
    const writer = await this.deps.outbox?.prepare(unique, before);
    const started = performance.now();
    const insertedIds = new Set(
      await this.tracing.insert(trace, rows.size, () => this.deps.store.insertBatchIds(unique, writer)),
    );
    const inserted = insertedIds.size;
    const fresh = [...rows.values()].filter((r) => insertedIds.has(r.event_id));
    const committedAt = this.deps.now().getTime();
    this.deps.metrics.commitSeconds.observe((performance.now() - started) / 1000);
    this.deps.metrics.inserted.inc(inserted);
    this.deps.metrics.duplicates.inc(candidates.length - inserted);
    this.log.debug({ events: rows.size, inserted }, 'batch committed');
    // Freshness (capture -> commit) of the newly inserted events only.
    for (const r of fresh)
      this.deps.metrics.freshnessSeconds.observe(Math.max(0, (committedAt - r.occurred_at.getTime()) / 1000));
    return fresh;
  }

  /** One receipt per device, listing every committed id of that device in the batch. */
  private pushReceipts(committed: Candidate[], committedAt: Date): void {
    const byDevice = new Map<string, { tenantId: string; deviceId: string; ids: Set<string> }>();
    for (const { row } of committed) {
      const key = deviceKey(row.tenant_id, row.device_id);
      let entry = byDevice.get(key);
      if (!entry) {
        entry = { tenantId: row.tenant_id, deviceId: row.device_id, ids: new Set() };
        byDevice.set(key, entry);
      }
      entry.ids.add(row.event_id);
    }
    for (const { tenantId, deviceId, ids } of byDevice.values())
      this.deps.receipts.push(tenantId, deviceId, [...ids], committedAt);
  }

  /** Poison -> DEAD_LETTER; the original is terminated only after the dead letter's PubAck. */
  private async deadLetter(poison: Poison[], failedAt: Date): Promise<void> {
    await Promise.all(
      poison.map(async ({ msg, letter, span }) => {
        try {
          await publishDeadLetter(this.deps.js, msg, letter, failedAt);
          msg.term();
          this.tracing.end(span, `dead-lettered: ${letter.reason}`);
          this.deps.metrics.deadLettered.inc({ reason: letter.reason });
          this.log.warn(
            {
              reason: letter.reason,
              detail: letter.detail,
              subject: msg.subject,
              seq: msg.info.streamSequence,
            },
            'event dead-lettered',
          );
        } catch (err) {
          this.deps.metrics.errors.inc({ stage: 'dead_letter' });
          this.log.error({ err, subject: msg.subject }, 'dead-lettering failed; it will be redelivered');
          msg.nak(DEAD_LETTER_RETRY_MS);
          this.tracing.end(span, err);
        }
      }),
    );
  }

  private async refreshConsumerInfo(): Promise<void> {
    try {
      const info = await this.deps.jsm.consumers.info(EVENTS_STREAM, INGEST_CONSUMER);
      this.deps.metrics.consumerPending.set(info.num_pending);
      this.deps.metrics.consumerAckPending.set(info.num_ack_pending);
    } catch {
      this.deps.metrics.errors.inc({ stage: 'consumer_info' });
    }
  }
}
