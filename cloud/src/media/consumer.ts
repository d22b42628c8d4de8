import {
  JetStreamApiCodes,
  JetStreamApiError,
  type Consumer,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { Counter, Histogram, type Registry } from 'prom-client';
import type { CloudConfig } from '../config/schema.js';
import { deviceKey, siteMismatch, type DeviceCache, type RegisteredDevice } from '../ingest/devices.js';
import {
  MEDIA_CONSUMER,
  MEDIA_MAX_DELIVER,
  MEDIA_STREAM,
  ensureMediaConsumer,
  ensureStreams,
} from '../ingest/streams.js';
import { Backoff, sleep } from '../lib/backoff.js';
import type { Database } from '../storage/tables.js';
import { publishDeadLetter, type DeadLetter } from '../ingest/dead-letter.js';
import { storeMediaBatch } from './batch.js';
import type { MediaStore } from './store.js';
import { validateMedia, type MediaDeadLetterReason, type ValidMedia } from './validate.js';

export interface MediaConsumerDeps {
  js: JetStreamClient;
  jsm: JetStreamManager;
  db: Kysely<Database>;
  /** Undefined when `media.dir` is unset: objects are acked and dropped (counted `no_store`). */
  store: MediaStore | undefined;
  devices: DeviceCache;
  log: Logger;
  metrics: Registry;
  config: Readonly<Pick<CloudConfig, 'ingest' | 'streams' | 'media'>>;
  now: () => Date;
  random?: () => number;
}

/** Objects taken per fetch, at most (the first is waited for, the rest are those already pending). */
const BATCH_SIZE = 32;
/** Batches between fetch and ack at once (each holds one database connection while it stores). */
const BATCHES_IN_FLIGHT = 2;
/** How long one fetch waits for a first object (NATS minimum: 1000). */
const FETCH_EXPIRES_MS = 5_000;
/** A fetch that has not ended this long after its expiry is abandoned (its messages get redelivered). */
const FETCH_GRACE_MS = 15_000;
/** Delay before a message whose dead-lettering failed is delivered again. */
const DEAD_LETTER_RETRY_MS = 5_000;
const NO_STORE_WARN_INTERVAL_MS = 60_000;

type Outcome = 'ok' | 'duplicate' | 'no_store' | MediaDeadLetterReason | 'error';
/** What handling a message did; 'dead_letter_failed' was nak'd already (counted as 'error'). */
type Handled = Outcome | 'dead_letter_failed';

/**
 * Stores media objects from the durable pull consumer `media` of MEDIA, a fetched batch at a time: validate ->
 * registered device -> one transaction for the batch (media/batch.ts: INSERT the new ids' rows -> rows of the
 * others? -> MediaStore.putMany -> COMMIT) -> ack.
 *
 * An ack means "file written and row committed" (or a refusal that is in DEAD_LETTER, or a resend of what is
 * stored). A PostgreSQL or store error naks with a backed-off delay; on the consumer's last delivery
 * (MEDIA_MAX_DELIVER) the object goes to DEAD_LETTER as `store_failed` instead of being dropped. The
 * uncommitted row claims its id across cloud processes: only the transaction that inserted it writes the file,
 * so a conflicting object can never overwrite the stored one.
 */
export class MediaConsumer {
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private current: ConsumerMessages | undefined;
  private readonly fetchBackoff: Backoff;
  private readonly retryBackoff: Backoff;
  private readonly log: Logger;
  private readonly received: Counter<'result'>;
  private readonly storedBytes: Counter;
  private readonly storeSeconds: Histogram;
  private lastNoStoreWarn = Number.NEGATIVE_INFINITY;

  constructor(private readonly deps: MediaConsumerDeps) {
    this.log = deps.log.child({ component: 'media' });
    this.fetchBackoff = new Backoff(250, 10_000, deps.random);
    this.retryBackoff = new Backoff(1_000, 60_000, deps.random);
    this.received = new Counter({
      name: 'vigil_cloud_media_received_total',
      help: 'Media objects received, by result (ok, duplicate, no_store, a dead-letter reason, error)',
      labelNames: ['result'],
      registers: [deps.metrics],
    });
    this.storedBytes = new Counter({
      name: 'vigil_cloud_media_stored_bytes_total',
      help: 'Bytes of media objects written to the MediaStore',
      registers: [deps.metrics],
    });
    this.storeSeconds = new Histogram({
      name: 'vigil_cloud_media_store_seconds',
      help: 'Time to write one media object to the MediaStore and index it in PostgreSQL',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [deps.metrics],
    });
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Stops fetching, finishes the message in hand (the rest of its batch is released), then resolves. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.current?.close().catch(() => undefined);
    await this.loop;
  }

  private get stopping(): boolean {
    return this.abort.signal.aborted;
  }

  /**
   * Fetches the next batch while up to BATCHES_IN_FLIGHT batches store (their files' fsyncs overlap, and so
   * do one batch's COMMIT and the next one's writes). Two batches holding one media id are safe: the second's
   * INSERT (in sorted order, so no deadlock) waits for the first's COMMIT, then finds its row.
   */
  private async run(): Promise<void> {
    let consumer: Consumer | undefined;
    const inFlight = new Set<Promise<void>>();
    while (!this.stopping) {
      try {
        consumer ??= await this.getConsumer();
        const batch = await this.fetch(consumer);
        this.fetchBackoff.reset();
        while (inFlight.size >= BATCHES_IN_FLIGHT) await Promise.race(inFlight);
        if (batch.length > 0) {
          const p = this.process(batch).catch((err: unknown) => {
            // process() handles store and dead-letter failures itself; anything else leaves the batch
            // unacked (redelivered after ack_wait).
            this.log.error({ err, messages: batch.length }, 'processing a media batch failed');
          });
          inFlight.add(p);
          void p.finally(() => inFlight.delete(p));
        }
      } catch (err) {
        consumer = undefined;
        if (this.stopping) break;
        const delay = this.fetchBackoff.next();
        this.log.warn(
          { err, delayMs: delay, failures: this.fetchBackoff.failures },
          'fetching from MEDIA failed; retrying',
        );
        await sleep(delay, this.abort.signal);
      }
    }
    await Promise.all(inFlight);
  }

  /** The consumer handle; recreates the streams and the consumer if they are gone (e.g. a wiped server). */
  private async getConsumer(): Promise<Consumer> {
    try {
      return await this.deps.js.consumers.get(MEDIA_STREAM, MEDIA_CONSUMER);
    } catch (err) {
      const missing =
        err instanceof JetStreamApiError &&
        (err.code === JetStreamApiCodes.ConsumerNotFound || err.code === JetStreamApiCodes.StreamNotFound);
      if (!missing) throw err;
      this.log.warn('MEDIA stream or media consumer missing; creating them again');
      await ensureStreams(this.deps.jsm, this.deps.config);
      await ensureMediaConsumer(this.deps.jsm);
      return this.deps.js.consumers.get(MEDIA_STREAM, MEDIA_CONSUMER);
    }
  }

  /** Waits for the first object, then takes at once what is already pending behind it. */
  private async fetch(consumer: Consumer): Promise<JsMsg[]> {
    const batch: JsMsg[] = [];
    await this.pull(consumer, 1, batch);
    const pending = batch[0]?.info.pending ?? 0;
    if (pending > 0 && !this.stopping) await this.pull(consumer, Math.min(BATCH_SIZE - 1, pending), batch);
    return batch;
  }

  private async pull(consumer: Consumer, max: number, batch: JsMsg[]): Promise<void> {
    const iter = await consumer.fetch({ max_messages: max, expires: FETCH_EXPIRES_MS });
    this.current = iter;
    const had = batch.length;
    const guard = setTimeout(
      () => void iter.close().catch(() => undefined),
      FETCH_EXPIRES_MS + FETCH_GRACE_MS,
    );
    try {
      for await (const m of iter) batch.push(m);
    } catch (err) {
      // Objects already in hand are processed; the error surfaces on the next fetch if it persists.
      if (batch.length === 0) throw err;
      this.log.warn({ err, messages: batch.length - had }, 'media fetch ended early');
    } finally {
      clearTimeout(guard);
      this.current = undefined;
    }
  }

  /**
   * The batch at once: refusals are dead-lettered; the objects to store go through ONE transaction
   * (storeMediaBatch: their files written together, one directory fsync per directory, their rows in one
   * INSERT), then are acked. Measured against one transaction and two fsyncs per object (4 at a time):
   * cloud/bench/media.bench.ts. A failed store naks the batch's objects with one backed-off delay (on an
   * object's last delivery: DEAD_LETTER `store_failed`).
   */
  private async process(batch: JsMsg[]): Promise<void> {
    if (this.stopping) {
      for (const msg of batch) msg.nak(); // not started: another cloud process (or the next start) takes them
      return;
    }
    const { config, store } = this.deps;
    const now = this.deps.now();
    const limits = { ...config.ingest, maxObjectBytes: config.media.maxObjectBytes };
    const done: Array<Promise<void>> = [];
    const count = (p: Promise<Handled> | Handled): void => {
      done.push(
        Promise.resolve(p).then((outcome) =>
          this.received.inc({ result: outcome === 'dead_letter_failed' ? 'error' : outcome }),
        ),
      );
    };

    const valid: Array<{ msg: JsMsg; media: ValidMedia }> = [];
    for (const msg of batch) {
      const v = validateMedia(msg.subject, msg.data, now, limits);
      if (v.ok) valid.push({ msg, media: v.media });
      else count(this.deadLetter(msg, v, now));
    }
    let toStore: Array<{ msg: JsMsg; media: ValidMedia }> = [];
    let failure: unknown;
    try {
      const devices = await this.deps.devices.registered(
        valid.map(({ media: m }) => ({ tenantId: m.tenantId, deviceId: m.deviceId })),
      );
      for (const item of valid) {
        const refusal = this.registryRefusal(item.media, devices);
        if (refusal) count(this.deadLetter(item.msg, refusal, now));
        else if (!store) {
          this.warnNoStore(now);
          item.msg.ack();
          count('no_store');
        } else toStore.push(item);
      }
    } catch (err) {
      failure = err;
      toStore = valid;
    }

    if (store && toStore.length > 0 && failure === undefined) {
      const started = performance.now();
      try {
        const results = await storeMediaBatch(
          this.deps.db,
          store,
          toStore.map((t) => t.media),
          this.deps.now(),
        );
        const seconds = (performance.now() - started) / 1000;
        toStore.forEach(({ msg, media: m }, i) => {
          const stored = results[i]!;
          if (stored === 'ok' || stored === 'duplicate') {
            msg.ack();
            if (stored === 'ok') {
              this.storeSeconds.observe(seconds);
              this.storedBytes.inc(m.sizeBytes);
            }
            count(stored);
            return;
          }
          const detail = `media ${m.mediaId} of ${m.tenantId} is stored with sha256 ${stored.storedSha256}, not ${m.sha256}`;
          const who = { tenantId: m.tenantId, deviceId: m.deviceId };
          count(this.deadLetter(msg, { reason: 'media_id_conflict', detail, ...who }, now));
        });
      } catch (err) {
        failure = err;
      }
    }

    let retryDelay: number | undefined;
    if (failure !== undefined) {
      retryDelay = this.retryBackoff.next();
      for (const { msg, media: m } of toStore) {
        const who = { tenantId: m.tenantId, deviceId: m.deviceId };
        if (msg.info.deliveryCount >= MEDIA_MAX_DELIVER) {
          const detail = `not stored after ${msg.info.deliveryCount} deliveries: ${(failure as Error).message}`;
          this.log.error(
            { err: failure, subject: msg.subject, mediaId: m.mediaId },
            'storing media failed for good',
          );
          count(this.deadLetter(msg, { reason: 'store_failed', detail, ...who }, now));
          continue;
        }
        this.log.error(
          { err: failure, subject: msg.subject, mediaId: m.mediaId, deliveries: msg.info.deliveryCount },
          'storing media failed; it will be redelivered',
        );
        msg.nak(retryDelay);
        count('error');
      }
    }
    await Promise.all(done);
    if (retryDelay === undefined) this.retryBackoff.reset();
    else await sleep(retryDelay, this.abort.signal);
  }

  /** The registry decides: an unknown device, or a site other than the device's registered one, is refused. */
  private registryRefusal(
    m: ValidMedia,
    devices: Map<string, RegisteredDevice>,
  ): DeadLetter<MediaDeadLetterReason> | undefined {
    const who = { tenantId: m.tenantId, deviceId: m.deviceId };
    const device = devices.get(deviceKey(m.tenantId, m.deviceId));
    if (!device)
      return {
        reason: 'unknown_device',
        detail: `device ${m.tenantId}/${m.deviceId} is not registered`,
        ...who,
      };
    // The registry decides the site (the index row and the storage key are filed under it).
    const mismatch = siteMismatch(m.tenantId, m.deviceId, m.siteId, device);
    return mismatch ? { reason: 'site_mismatch', detail: mismatch, ...who } : undefined;
  }

  /** DEAD_LETTER (awaiting its PubAck), then ack; if dead-lettering fails the message is redelivered. */
  private async deadLetter(
    msg: JsMsg,
    letter: DeadLetter<MediaDeadLetterReason>,
    failedAt: Date,
  ): Promise<Handled> {
    try {
      await publishDeadLetter(this.deps.js, msg, letter, failedAt, 'media');
    } catch (err) {
      this.log.error({ err, subject: msg.subject }, 'dead-lettering media failed; it will be redelivered');
      msg.nak(DEAD_LETTER_RETRY_MS);
      return 'dead_letter_failed';
    }
    msg.ack();
    this.log.warn(
      { reason: letter.reason, detail: letter.detail, subject: msg.subject, seq: msg.info.streamSequence },
      'media dead-lettered',
    );
    return letter.reason;
  }

  private warnNoStore(now: Date): void {
    if (now.getTime() - this.lastNoStoreWarn < NO_STORE_WARN_INTERVAL_MS) return;
    this.lastNoStoreWarn = now.getTime();
    this.log.warn('media.dir is not set: media objects are acknowledged and dropped (counted no_store)');
  }
}
