import { jetstream, type JetStreamClient, type PubAck } from '@nats-io/jetstream';
import { ProxyTracerProvider, type Span, type Tracer } from '@opentelemetry/api';
import type { Msg, MsgHdrs, NatsConnection, Status, Subscription } from '@nats-io/transport-node';
import { pino, type Logger } from 'pino';
import { CommitReceipt, ReceiptQuery, subjectFor } from '@vigil/proto';
import type { Outbox, OutboxEntry } from '../buffer/index.js';
import { backoffDelay, type BackoffPolicy } from '../lib/backoff.js';
import { planMedia, type MediaMessage, type MediaPublishResult } from './media.js';
import { endPublishSpan, startPublishTrace } from './trace.js';
import {
  classifyPublishError,
  dueForQuery,
  nextUplinkState,
  queryBatches,
  type FlightView,
  type PublishErrorReason,
  type UplinkEvent,
  type UplinkState,
} from './sync.js';

/*
 * Uplink (DESIGN.md, principle 1 and "Edge data path: uplink"): drains the outbox into JetStream and deletes an
 * entry only on the cloud's CommitReceipt.
 *
 * Per entry: [its snapshot as a MediaObject to MEDIA (msgID = media id) -> PubAck, see `send`] -> publish
 * (JetStream, msgID = event id) -> PubAck: `markSent`, the entry waits in flight -> receipt
 * (pushed on `vigil.v1.<tenant>.<device>.rcpt`, or the answer to a ReceiptQuery) -> `outbox.ack`. A publish error
 * releases the entry (it is sent again later) and backs off; an entry without a receipt after `receiptTimeoutMs`
 * is asked about with a ReceiptQuery, and the ids the cloud does not list as committed are released and resent
 * (ingest is idempotent on the id, JetStream deduplicates within its window).
 *
 * Bounds: at most `windowSize` entries and `windowBytes` bytes (payload + media, the outbox's unit) are in flight
 * (from publish until receipt, PubAck or not); outstanding queries are capped; every list below is bounded by
 * the window. The uplink owns the outbox's in-flight marks: `start()` clears the ones a previous run left.
 * One entry is one flight, its media publish included.
 */

export interface UplinkOptions {
  /** Max entries published and not yet receipted. */
  windowSize: number;
  /** Max bytes (payload + media) of those entries; one entry always fits into an empty window. */
  windowBytes: number;
  /** Max entries read from the outbox per fill step. */
  batchSize: number;
  /** Timeout of one JetStream publish (an entry with media makes two in a row: media, then event). */
  publishTimeoutMs: number;
  /** Ask about an entry this long after its PubAck when no receipt came (doubling per resend, up to 8x). */
  receiptTimeoutMs: number;
  /** Timeout of one ReceiptQuery request (default: publishTimeoutMs). */
  queryTimeoutMs: number;
  /** Ids per ReceiptQuery (the contract allows at most 500). */
  queryBatchSize: number;
  /** Max outstanding ReceiptQuery requests for receipt timeouts. */
  maxConcurrentQueries: number;
  /** At start, ask about the oldest this many pending entries (0: skip), so a restart resends less. */
  startupQueryLimit: number;
  /** Max ids taken from one CommitReceipt (the rest are found by queries later). */
  maxReceiptIds: number;
  /** Period of the housekeeping tick: fill the window, look for receipt timeouts. */
  tickMs: number;
  backoff: BackoffPolicy;
}

export const DEFAULT_UPLINK_OPTIONS: Readonly<UplinkOptions> = Object.freeze({
  windowSize: 256,
  windowBytes: 8 * 1024 * 1024,
  batchSize: 64,
  publishTimeoutMs: 5_000,
  receiptTimeoutMs: 10_000,
  queryTimeoutMs: 5_000,
  queryBatchSize: 500,
  maxConcurrentQueries: 4,
  startupQueryLimit: 2_000,
  maxReceiptIds: 10_000,
  tickMs: 250,
  backoff: Object.freeze({ initialMs: 500, maxMs: 30_000, jitter: 0.5 }),
});

/** Contract limit of one ReceiptQuery. */
export const MAX_QUERY_IDS = 500;

export type QueryReason = 'startup' | 'reconnect' | 'receipt_timeout';
/** Why a ReceiptQuery got no usable answer: the request failed, or the reply was not a receipt for us. */
export type QueryErrorReason = PublishErrorReason | 'invalid_reply';

/** Observability hooks; `createUplinkMetrics` implements them on a prom-client Registry. All optional. */
export interface UplinkMetricsHooks {
  published?(): void;
  puback?(duplicate: boolean): void;
  publishError?(reason: PublishErrorReason): void;
  /** A CommitReceipt was accepted: pushed by the cloud (`receipt`) or as the answer to a query (`query`). */
  receipt?(source: 'receipt' | 'query'): void;
  /** Outbox entries deleted because of receipts. */
  acked?(n: number): void;
  /** From the entry's arrival in the outbox to its receipt (only for entries this uplink sent). */
  commitLatency?(seconds: number): void;
  querySent?(reason: QueryReason): void;
  queryError?(reason: QueryErrorReason): void;
  /** Entries released for a resend because a query answer did not list them as committed. */
  requeued?(n: number): void;
  /** Messages on the receipt subject that were not a valid receipt for this device. */
  receiptRejected?(reason: 'invalid' | 'foreign'): void;
  state?(state: UplinkState): void;
  inFlight?(entries: number, bytes: number): void;
  /**
   * One MediaObject publish ended: `ok`/`duplicate` (PubAck), `too_large` (dropped, the event went alone) or
   * `error` (the entry is retried). `bytes`: size of the media data (the JPEG).
   */
  mediaPublished?(result: MediaPublishResult, bytes: number): void;
}

export interface UplinkDeps {
  nc: NatsConnection;
  outbox: Outbox;
  device: { tenantId: string; deviceId: string };
  options?: Partial<UplinkOptions>;
  logger?: Logger;
  /** ms clock for sent/receipt times (the outbox's clock should agree for the latency metric). */
  now?: () => number;
  random?: () => number;
  metrics?: UplinkMetricsHooks;
  onStateChange?: (state: UplinkState, previous: UplinkState) => void;
  /** Records `vigil.uplink.publish` spans (default: no-op; the trace headers are sent either way). */
  tracer?: Tracer;
}

export interface UplinkStatus {
  state: UplinkState;
  inFlight: number;
  inFlightBytes: number;
  /** Publishes waiting for their PubAck (a subset of inFlight). */
  publishing: number;
  queriesOutstanding: number;
  backoffAttempt: number;
}

interface Flight extends FlightView {
  bytes: number;
  createdAt: number;
}

export class Uplink {
  readonly options: Readonly<UplinkOptions>;
  private readonly nc: NatsConnection;
  private readonly js: JetStreamClient;
  private readonly outbox: Outbox;
  private readonly device: { tenantId: string; deviceId: string };
  private readonly rcptSubject: string;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly hooks: UplinkMetricsHooks;
  private readonly onStateChange: ((state: UplinkState, previous: UplinkState) => void) | undefined;
  private readonly tracer: Tracer;

  private current: UplinkState = 'offline';
  /** In flight: from publish until receipt, release or publish error. At most windowSize entries. */
  private readonly flights = new Map<string, Flight>();
  private flightBytes = 0;
  /** Outstanding publish promises (at most windowSize). */
  private readonly publishes = new Set<Promise<void>>();
  /** Outstanding query promises (at most maxConcurrentQueries + the sync's one). */
  private readonly queries = new Set<Promise<boolean>>();
  /** PubAcked ids to `markSent` and ids to `releaseInFlight` in the next flush: each bounded by the window. */
  private toMark: string[] = [];
  private toRelease: string[] = [];
  private markAt = 0;

  private started = false;
  private stopping = false;
  private closed = false;
  private syncGen = 0;
  private backoffAttempt = 0;
  private backoffTimer: NodeJS.Timeout | undefined;
  private tickTimer: NodeJS.Timeout | undefined;
  private kickPending: NodeJS.Immediate | undefined;
  private sub: Subscription | undefined;
  private statusIter: AsyncIterable<Status> | undefined;
  private statusLoop: Promise<void> | undefined;

  constructor(deps: UplinkDeps) {
    const o = { ...DEFAULT_UPLINK_OPTIONS, ...stripUndefined(deps.options ?? {}) };
    o.queryTimeoutMs = deps.options?.queryTimeoutMs ?? o.publishTimeoutMs;
    o.queryBatchSize = Math.min(MAX_QUERY_IDS, o.queryBatchSize);
    for (const k of [
      'windowSize',
      'windowBytes',
      'batchSize',
      'publishTimeoutMs',
      'receiptTimeoutMs',
      'queryTimeoutMs',
      'queryBatchSize',
      'maxConcurrentQueries',
      'maxReceiptIds',
      'tickMs',
    ] as const)
      if (!Number.isSafeInteger(o[k]) || o[k] <= 0)
        throw new RangeError(`uplink: ${k} must be a positive integer: ${o[k]}`);
    if (!Number.isSafeInteger(o.startupQueryLimit) || o.startupQueryLimit < 0)
      throw new RangeError(`uplink: startupQueryLimit must be >= 0: ${o.startupQueryLimit}`);
    if (o.windowSize > 4096) throw new RangeError(`uplink: windowSize must be <= 4096: ${o.windowSize}`);
    this.options = Object.freeze({ ...o, backoff: Object.freeze({ ...o.backoff }) });

    this.nc = deps.nc;
    this.js = jetstream(deps.nc, { timeout: o.publishTimeoutMs });
    this.outbox = deps.outbox;
    this.device = { tenantId: deps.device.tenantId, deviceId: deps.device.deviceId };
    this.rcptSubject = subjectFor(this.device.tenantId, this.device.deviceId, 'rcpt');
    this.log = deps.logger ?? pino({ level: 'silent' });
    this.now = deps.now ?? Date.now;
    this.random = deps.random ?? Math.random;
    this.hooks = deps.metrics ?? {};
    this.onStateChange = deps.onStateChange;
    this.tracer = deps.tracer ?? new ProxyTracerProvider().getTracer('vigil-agent');
  }

  get state(): UplinkState {
    return this.current;
  }

  status(): UplinkStatus {
    return {
      state: this.current,
      inFlight: this.flights.size,
      inFlightBytes: this.flightBytes,
      publishing: this.publishes.size,
      queriesOutstanding: this.queries.size,
      backoffAttempt: this.backoffAttempt,
    };
  }

  /** Subscribes to receipts, watches the connection and starts draining (after the startup sync). */
  start(): void {
    if (this.started) throw new Error('uplink: already started');
    this.started = true;
    this.outbox.releaseInFlight(); // marks of a previous run: nothing is in flight for this one yet
    this.hooks.state?.(this.current);
    this.hooks.inFlight?.(0, 0);
    this.sub = this.nc.subscribe(this.rcptSubject, { callback: (err, msg) => this.onReceiptMsg(err, msg) });
    this.statusIter = this.nc.status();
    this.statusLoop = this.watchStatus(this.statusIter);
    this.tickTimer = setInterval(() => this.tick(), this.options.tickMs);
    this.tickTimer.unref();
    if (!this.nc.isClosed()) this.onConnected('startup');
  }

  /**
   * Stops publishing and querying, waits for the outstanding publishes (each ends within publishTimeoutMs),
   * writes their in-flight marks and unsubscribes. Entries in flight stay in the outbox. Call before draining
   * or closing the connection, and before closing the outbox.
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.syncGen++;
    clearInterval(this.tickTimer);
    clearTimeout(this.backoffTimer);
    if (this.kickPending) clearImmediate(this.kickPending);
    const iter = this.statusIter as { stop?: () => void } | undefined;
    iter?.stop?.();
    await Promise.allSettled([...this.publishes]);
    this.flush();
    if (this.sub && !this.sub.isClosed()) this.sub.unsubscribe();
    // Outstanding queries are not awaited (up to queryTimeoutMs): their answers are ignored from now on.
    this.closed = true;
    await this.statusLoop;
    this.setState('offline');
  }

  // ---- connection ----

  private lastErrorLogAt = -Infinity;
  private errorsSuppressed = 0;
  private undecodableLogged = false;

  private async watchStatus(iter: AsyncIterable<Status>): Promise<void> {
    try {
      for await (const s of iter) {
        if (this.stopping) break;
        if (s.type === 'disconnect' || s.type === 'close') {
          this.log.warn({ server: s.type === 'disconnect' ? s.server : undefined }, `uplink: ${s.type}`);
          this.dispatch('disconnected');
          if (s.type === 'close') break;
        } else if (s.type === 'reconnect') {
          this.log.info({ server: s.server }, 'uplink: reconnected');
          this.onConnected('reconnect');
        } else if (s.type === 'error') {
          // E.g. "Authorization Violation": revoked, or credentials expired before a renewal. Said at most
          // once a minute; the outbox keeps every event meanwhile.
          const at = Date.now();
          if (at - this.lastErrorLogAt >= 60_000) {
            this.log.error(
              { err: s.error.message, suppressed: this.errorsSuppressed },
              'uplink: NATS connection error (an authorization violation means revoked or expired credentials)',
            );
            this.lastErrorLogAt = at;
            this.errorsSuppressed = 0;
          } else this.errorsSuppressed++;
        }
      }
    } catch (err) {
      this.log.error({ err }, 'uplink: status watcher failed');
    }
  }

  private onConnected(reason: 'startup' | 'reconnect'): void {
    this.dispatch('connected');
    const gen = ++this.syncGen;
    // Sync in the background; `dispatch('synced')` moves to online unless something else happened meanwhile.
    void this.sync(reason, gen);
  }

  /**
   * State-based sync: ask which ids the cloud has committed. After a reconnect: everything that got a PubAck
   * and waits for a receipt. At start: the oldest pending entries. Gives up on the first failed query (the cloud
   * does not answer: resending is safe, just more traffic) and goes online either way.
   */
  private async sync(reason: 'startup' | 'reconnect', gen: number): Promise<void> {
    try {
      const ids =
        reason === 'startup'
          ? this.outbox.pendingIds(this.options.startupQueryLimit)
          : [...this.flights.values()].filter((f) => f.phase === 'awaiting').map((f) => f.id);
      for (const batch of queryBatches(ids, this.options.queryBatchSize)) {
        if (gen !== this.syncGen || this.stopping) return;
        if (!(await this.runQuery(batch, reason))) break;
      }
    } catch (err) {
      this.log.error({ err }, 'uplink: sync failed');
    }
    if (gen !== this.syncGen || this.stopping) return;
    this.dispatch('synced');
  }

  // ---- state ----

  private dispatch(event: UplinkEvent): void {
    if (this.stopping) return; // stop() settles on offline
    const prev = this.current;
    const next = nextUplinkState(prev, event);
    if (event === 'publish_failed' && next === 'backing_off' && prev !== 'backing_off') {
      const delay = backoffDelay(this.backoffAttempt++, this.options.backoff, this.random);
      this.log.warn({ delayMs: delay, attempt: this.backoffAttempt }, 'uplink: backing off');
      this.backoffTimer = setTimeout(() => this.dispatch('backoff_elapsed'), delay);
      this.backoffTimer.unref();
    }
    if (next !== 'backing_off') clearTimeout(this.backoffTimer);
    this.setState(next);
    if (next === 'online') this.kick();
  }

  private setState(next: UplinkState): void {
    const prev = this.current;
    if (next === prev) return;
    this.current = next;
    this.log.info({ state: next, previous: prev }, 'uplink state');
    this.hooks.state?.(next);
    try {
      this.onStateChange?.(next, prev);
    } catch (err) {
      this.log.error({ err }, 'uplink: onStateChange threw');
    }
  }

  // ---- publishing ----

  /**
   * New entries were appended: publish them now rather than at the next tick. Without this the tick period
   * (250 ms) was most of the capture-to-commit latency (bench: p50 112 of 123 ms spent waiting to publish).
   */
  notify(): void {
    this.kick();
  }

  /** Fill soon (coalesced): after a PubAck, a receipt or a state change. */
  private kick(): void {
    if (this.kickPending || this.stopping) return;
    this.kickPending = setImmediate(() => {
      this.kickPending = undefined;
      this.fill();
    });
  }

  private tick(): void {
    if (this.stopping) return;
    try {
      this.flush();
      this.queryOverdue();
      this.fill();
    } catch (err) {
      this.log.error({ err }, 'uplink: tick failed');
    }
  }

  /** Publishes the next pending entries (drain order: the outbox's priority, then age) into the free window. */
  private fill(): void {
    if (this.stopping || this.current !== 'online') return;
    try {
      this.flush();
      const { windowSize, windowBytes, batchSize } = this.options;
      for (let round = 0; round < Math.ceil(windowSize / batchSize) + 1; round++) {
        const free = windowSize - this.flights.size;
        const freeBytes = windowBytes - this.flightBytes;
        if (free <= 0 || (freeBytes <= 0 && this.flights.size > 0)) return;
        // Entries being published are not marked in flight yet (markSent comes with the PubAck): skip them.
        const skip = this.publishes.size;
        const batch = this.outbox.nextBatch(Math.min(free, batchSize) + skip, {
          excludeInFlight: true,
          maxBytes: Math.max(1, freeBytes) + this.publishingBytes(),
        });
        let started = 0;
        for (const e of batch) {
          if (this.flights.has(e.id)) continue;
          if (this.flights.size >= windowSize) break;
          if (this.flights.size > 0 && this.flightBytes + e.bytes > windowBytes) break;
          this.publish(e);
          started++;
        }
        if (started === 0 || this.current !== 'online') return;
      }
    } catch (err) {
      this.log.error({ err }, 'uplink: fill failed');
    }
  }

  private publishingBytes(): number {
    let n = 0;
    for (const f of this.flights.values()) if (f.phase === 'publishing') n += f.bytes;
    return n;
  }

  private publish(e: OutboxEntry): void {
    const f: Flight = {
      id: e.id,
      phase: 'publishing',
      sentAt: this.now(),
      attempts: e.attempts + 1,
      bytes: e.bytes,
      createdAt: e.createdAt,
    };
    this.flights.set(e.id, f);
    this.flightBytes += f.bytes;
    this.hooks.published?.();
    this.reportInFlight();
    const p: Promise<void> = this.send(f, e)
      .catch((err: unknown) => this.log.error({ err }, 'uplink: publish handler failed'))
      .finally(() => this.publishes.delete(p));
    this.publishes.add(p);
  }

  /**
   * Media first: the event is published only after its MediaObject has a PubAck (or can never get one), so a
   * committed event's snapshot is already durable in MEDIA. A media publish that failed for any other reason
   * fails the whole entry: released and retried like a failed event publish, the event not sent.
   */
  private async send(f: Flight, e: OutboxEntry): Promise<void> {
    // One span per attempt, under the event's span: from here to the event's PubAck (media publish included).
    const trace = startPublishTrace(this.tracer, e, f.attempts);
    const media = this.mediaOf(e);
    if (media && !(await this.publishMedia(f, media, trace.headers(), trace.span))) {
      if (trace.span.isRecording()) endPublishSpan(trace.span, 'skipped'); // an error already ended it
      return;
    }
    let ack: PubAck;
    try {
      ack = await this.js.publish(e.subject, e.payload, {
        msgID: e.id,
        timeout: this.options.publishTimeoutMs,
        headers: trace.headers(),
      });
    } catch (err) {
      endPublishSpan(trace.span, { error: err });
      this.onPublishError(f, err);
      return;
    }
    endPublishSpan(trace.span, { duplicate: ack.duplicate });
    this.onPubAck(f, ack);
  }

  private mediaOf(e: OutboxEntry): MediaMessage | undefined {
    const plan = planMedia(e, this.device);
    if (plan.kind === 'media') return plan.message;
    if (plan.kind === 'undecodable') {
      // Said once per process: every such entry is the same bug, and the event itself still goes out.
      const level = this.undecodableLogged ? 'debug' : 'warn';
      this.undecodableLogged = true;
      this.log[level](
        { id: e.id, err: plan.error },
        'uplink: entry has media but its event is unreadable: publishing the event without its media',
      );
    }
    return undefined;
  }

  /** Publishes the entry's MediaObject; true when the event may follow (PubAck, or dropped as too large). */
  private async publishMedia(
    f: Flight,
    m: MediaMessage,
    traceHeaders: MsgHdrs | undefined,
    span: Span,
  ): Promise<boolean> {
    try {
      const ack = await this.js.publish(m.subject, m.payload, {
        msgID: m.mediaId,
        timeout: this.options.publishTimeoutMs,
        headers: traceHeaders,
      });
      this.hooks.mediaPublished?.(ack.duplicate ? 'duplicate' : 'ok', m.dataBytes);
    } catch (err) {
      if (classifyPublishError(err) !== 'too_large') {
        endPublishSpan(span, { error: err });
        this.hooks.mediaPublished?.('error', m.dataBytes);
        this.onPublishError(f, err);
        return false;
      }
      // MEDIA will never take it (max_msg_size or max_payload): drop the frame, keep the event.
      this.hooks.mediaPublished?.('too_large', m.dataBytes);
      this.log.warn(
        {
          id: f.id,
          mediaId: m.mediaId,
          bytes: m.payload.byteLength,
          dataBytes: m.dataBytes,
          err: (err as Error).message,
        },
        'uplink: media too large for MEDIA, dropped; publishing the event without it',
      );
    }
    // Receipted meanwhile (a resend whose earlier copy got committed): the event need not go again.
    if (this.flights.get(f.id) !== f) return false;
    if (this.stopping) {
      this.dropFlight(f); // never marked sent: still pending in the outbox for the next run
      return false;
    }
    return true;
  }

  private onPubAck(f: Flight, ack: PubAck): void {
    this.hooks.puback?.(ack.duplicate);
    if (this.closed || this.flights.get(f.id) !== f) return; // receipted meanwhile
    f.phase = 'awaiting';
    f.sentAt = this.now();
    this.toMark.push(f.id);
    this.markAt = f.sentAt;
    if (this.current === 'online') this.backoffAttempt = 0;
    this.kick();
  }

  private onPublishError(f: Flight, err: unknown): void {
    const reason = classifyPublishError(err);
    this.hooks.publishError?.(reason);
    if (this.closed) return;
    const ours = this.flights.get(f.id) === f;
    if (ours) this.dropFlight(f);
    if (reason === 'too_large') {
      // Never accepted, so retrying would only block the queue: park it. Marked in flight, the outbox keeps it
      // (until its TTL) and nextBatch skips it; the next process start releases and tries it once more.
      if (ours) {
        this.toMark.push(f.id);
        this.markAt = this.now();
      }
      this.log.error(
        { id: f.id, bytes: f.bytes, err: (err as Error).message },
        'uplink: event too large, parked',
      );
      return;
    }
    if (ours) this.toRelease.push(f.id);
    this.log.debug({ id: f.id, reason, err: (err as Error).message }, 'uplink: publish failed');
    if (reason !== 'disconnected') this.dispatch('publish_failed');
  }

  /** Writes the pending in-flight marks and releases, one transaction each. */
  private flush(): void {
    if (this.toMark.length > 0) {
      const ids = this.toMark;
      this.toMark = [];
      this.outbox.markSent(ids, this.markAt);
    }
    if (this.toRelease.length > 0) {
      const ids = this.toRelease;
      this.toRelease = [];
      this.outbox.releaseInFlight(ids);
    }
  }

  private dropFlight(f: Flight): void {
    this.flights.delete(f.id);
    this.flightBytes -= f.bytes;
    this.reportInFlight();
  }

  private reportInFlight(): void {
    this.hooks.inFlight?.(this.flights.size, this.flightBytes);
  }

  // ---- receipts ----

  private onReceiptMsg(err: Error | null, msg: Msg): void {
    if (err) {
      this.log.error({ err }, 'uplink: receipt subscription failed');
      return;
    }
    if (msg.reply) return; // a ReceiptQuery request (ours, when echo is on), not a receipt
    if (this.closed) return;
    let receipt: CommitReceipt;
    try {
      receipt = CommitReceipt.decode(msg.data);
    } catch (e) {
      this.hooks.receiptRejected?.('invalid');
      this.log.warn({ err: e }, 'uplink: undecodable receipt');
      return;
    }
    if (!this.isOurs(receipt)) {
      this.hooks.receiptRejected?.('foreign');
      this.log.warn(
        { tenant: receipt.tenantId, device: receipt.deviceId },
        'uplink: receipt for another device',
      );
      return;
    }
    this.hooks.receipt?.('receipt');
    try {
      this.applyCommitted(receipt.eventIds.slice(0, this.options.maxReceiptIds));
    } catch (e) {
      this.log.error({ err: e }, 'uplink: applying a receipt failed');
    }
  }

  private isOurs(r: CommitReceipt): boolean {
    return r.tenantId === this.device.tenantId && r.deviceId === this.device.deviceId;
  }

  /** Deletes committed entries from the outbox (in chunks) and frees their window slots. */
  private applyCommitted(ids: readonly string[]): void {
    if (ids.length === 0) return;
    const at = this.now();
    for (const id of ids) {
      const f = this.flights.get(id);
      if (!f) continue;
      this.hooks.commitLatency?.(Math.max(0, at - f.createdAt) / 1000);
      this.flights.delete(id);
      this.flightBytes -= f.bytes;
    }
    let acked = 0;
    for (const chunk of queryBatches(ids, MAX_QUERY_IDS)) acked += this.outbox.ack(chunk);
    this.hooks.acked?.(acked);
    this.reportInFlight();
    this.kick();
  }

  // ---- queries ----

  /** Asks about entries whose receipt is overdue, within the cap of outstanding queries. */
  private queryOverdue(): void {
    if (this.current === 'offline' || this.current === 'syncing') return;
    const slots = this.options.maxConcurrentQueries - this.queries.size;
    if (slots <= 0) return;
    const ids = dueForQuery(
      this.flights.values(),
      this.now(),
      this.options.receiptTimeoutMs,
      slots * this.options.queryBatchSize,
    );
    for (const batch of queryBatches(ids, this.options.queryBatchSize, slots))
      void this.runQuery(batch, 'receipt_timeout');
  }

  /**
   * One ReceiptQuery. Entries of ours in `ids` that await a receipt move to `querying`; the answer acks the
   * committed ones and releases the others of ours for a resend. On failure they wait for another receipt
   * timeout. Entries not in flight (the startup sync) are only acked. Resolves true when the cloud answered.
   */
  private runQuery(ids: string[], reason: QueryReason): Promise<boolean> {
    const asked: Flight[] = [];
    for (const id of ids) {
      const f = this.flights.get(id);
      if (f && f.phase === 'awaiting') {
        f.phase = 'querying';
        asked.push(f);
      }
    }
    const p = this.query(ids, asked, reason).finally(() => this.queries.delete(p));
    this.queries.add(p);
    return p;
  }

  private async query(ids: string[], asked: Flight[], reason: QueryReason): Promise<boolean> {
    this.hooks.querySent?.(reason);
    const body = ReceiptQuery.encode({
      deviceId: this.device.deviceId,
      tenantId: this.device.tenantId,
      eventIds: ids,
    }).finish();
    let reply: CommitReceipt | undefined;
    let failure: QueryErrorReason | undefined;
    let msg: Msg | undefined;
    try {
      msg = await this.nc.request(this.rcptSubject, body, { timeout: this.options.queryTimeoutMs });
    } catch (err) {
      failure = classifyPublishError(err);
    }
    if (msg) {
      try {
        reply = CommitReceipt.decode(msg.data);
        if (!this.isOurs(reply)) failure = 'invalid_reply';
      } catch {
        failure = 'invalid_reply';
      }
    }
    if (this.closed) return failure === undefined;
    try {
      if (failure !== undefined || reply === undefined) {
        this.hooks.queryError?.(failure ?? 'invalid_reply');
        this.log.debug({ reason, failure, ids: ids.length }, 'uplink: receipt query failed');
        const at = this.now();
        for (const f of asked)
          if (this.flights.get(f.id) === f && f.phase === 'querying') {
            f.phase = 'awaiting';
            f.sentAt = at;
          }
        return false;
      }
      this.hooks.receipt?.('query');
      const wanted = new Set(ids);
      const committed = reply.eventIds.filter((id) => wanted.has(id));
      this.applyCommitted(committed);
      const done = new Set(committed);
      let requeued = 0;
      for (const f of asked)
        if (!done.has(f.id) && this.flights.get(f.id) === f && f.phase === 'querying') {
          this.dropFlight(f);
          this.toRelease.push(f.id);
          requeued++;
        }
      if (requeued > 0) {
        this.hooks.requeued?.(requeued);
        this.flush();
        this.kick();
      }
      this.log.debug(
        { reason, asked: ids.length, committed: committed.length, requeued },
        'uplink: query answered',
      );
      return true;
    } catch (err) {
      this.log.error({ err }, 'uplink: applying a query answer failed');
      return false;
    }
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
