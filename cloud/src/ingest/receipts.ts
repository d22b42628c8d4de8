import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { CommitReceipt, parseSubject, ReceiptQuery, subjectFor } from '@vigil/proto';
import type { EventStore } from '../events/store.js';
import { DeviceReplier, type DeviceRequest } from '../fleet/device-reply.js';
import { isUuidV7, uuidV7Time } from '../lib/uuidv7.js';
import type { IngestMetrics } from './metrics.js';
import { MAX_ID_TIME_SKEW_MS } from './validate.js';

/** A ReceiptQuery may ask about at most this many ids; a bigger one gets an empty receipt. */
export const MAX_RECEIPT_QUERY_IDS = 1000;
/**
 * An id's row has occurred_at within MAX_ID_TIME_SKEW_MS of the id's time (ingest refuses others), so a
 * lookup by id scans only the partitions of [id time - margin, id time + margin]. One hour of slack.
 */
export const RECEIPT_LOOKUP_MARGIN_MS = MAX_ID_TIME_SKEW_MS + 3_600_000;

/**
 * Sends CommitReceipts to devices (core NATS, `vigil.v1.<tenant>.<device>.rcpt`) and numbers them per
 * device. The numbers start at the process start time in µs, so they keep increasing across restarts of
 * one process (unless a device got more than 1000 receipts per ms); with several ingest processes they
 * interleave. They are a diagnostic aid: receipts are state, applying one twice is harmless.
 */
export class ReceiptPublisher {
  private readonly sequences = new Map<string, bigint>();
  private readonly base: bigint;

  constructor(
    private readonly nc: NatsConnection,
    private readonly metrics: IngestMetrics,
    private readonly log: Logger,
    now: () => Date,
  ) {
    this.base = BigInt(now().getTime()) * 1000n;
  }

  nextSequence(tenantId: string, deviceId: string): bigint {
    const key = `${tenantId}\n${deviceId}`;
    const seq = (this.sequences.get(key) ?? this.base) + 1n;
    this.sequences.set(key, seq);
    return seq;
  }

  /** Builds the receipt for one device (a reply or a push). */
  receipt(tenantId: string, deviceId: string, eventIds: string[], committedAt: Date): CommitReceipt {
    return {
      tenantId,
      deviceId,
      eventIds,
      committedAt,
      sequence: this.nextSequence(tenantId, deviceId),
    };
  }

  /** Pushes a receipt; a lost one costs latency only (the device asks again with a ReceiptQuery). */
  push(tenantId: string, deviceId: string, eventIds: string[], committedAt: Date): void {
    try {
      const subject = subjectFor(tenantId, deviceId, 'rcpt');
      this.nc.publish(
        subject,
        CommitReceipt.encode(this.receipt(tenantId, deviceId, eventIds, committedAt)).finish(),
      );
      this.metrics.receiptsSent.inc();
    } catch (err) {
      this.metrics.errors.inc({ stage: 'receipt' });
      this.log.warn({ err, tenantId, deviceId }, 'pushing a commit receipt failed; the device will ask');
    }
  }
}

/**
 * Answers ReceiptQuery requests on `vigil.v1.*.*.rcpt` (queue group `ingest`, so cloud processes share
 * them). The subject names the asking device (its authenticated identity); the answer lists the subset
 * of the asked ids that is committed for that tenant and device, so a device can never learn about
 * another device's events. Messages without a reply subject are pushed receipts, not queries: ignored. A
 * query whose reply subject is not the device's own inbox is dropped before anything else
 * (fleet/device-reply.ts): `nc` should be the responder connection, which may publish only into inboxes.
 * Work is bounded: a few queries run at once, a bounded number wait, the rest are dropped (counted;
 * the device asks again).
 */
export class ReceiptResponder {
  private sub: Subscription | undefined;
  private inFlight = 0;
  private readonly waiting: Array<{ msg: Msg; request: DeviceRequest }> = [];
  private readonly idle = new Set<() => void>();
  private readonly replier: DeviceReplier;

  constructor(
    private readonly nc: NatsConnection,
    private readonly store: EventStore,
    private readonly receipts: ReceiptPublisher,
    private readonly metrics: IngestMetrics,
    private readonly log: Logger,
    private readonly now: () => Date,
    registry: Registry,
    private readonly maxInFlight = 8,
    private readonly maxWaiting = 1000,
  ) {
    this.replier = new DeviceReplier('receipt_query', registry, log);
  }

  start(): void {
    this.sub = this.nc.subscribe('vigil.v1.*.*.rcpt', {
      queue: 'ingest',
      callback: (err, msg) => {
        if (err) {
          this.log.error({ err }, 'receipt query subscription failed');
          return;
        }
        if (!msg.reply) return;
        const request = this.replier.accept(msg);
        if (!request) return;
        if (this.inFlight < this.maxInFlight) this.run(msg, request);
        else if (this.waiting.length < this.maxWaiting) this.waiting.push({ msg, request });
        else this.metrics.receiptQueries.inc({ result: 'busy' });
      },
    });
  }

  async stop(): Promise<void> {
    await this.sub?.drain();
    this.waiting.length = 0;
    if (this.inFlight > 0) await new Promise<void>((resolve) => this.idle.add(resolve));
  }

  private run(msg: Msg, request: DeviceRequest): void {
    this.inFlight += 1;
    void this.answer(msg, request)
      .catch((err: unknown) => {
        // e.g. the connection closed under us: the device asks again.
        this.metrics.errors.inc({ stage: 'receipt' });
        this.log.warn({ err, subject: msg.subject }, 'answering a receipt query failed');
      })
      .finally(() => {
        this.inFlight -= 1;
        const next = this.waiting.shift();
        if (next) this.run(next.msg, next.request);
        else if (this.inFlight === 0) for (const resolve of this.idle) resolve();
      });
  }

  private async answer(msg: Msg, request: DeviceRequest): Promise<void> {
    const route = parseSubject(msg.subject);
    if (!route || route.kind !== 'rcpt' || route.camera !== undefined) return;
    const reply = (ids: string[], result: string): void => {
      request.respond(
        CommitReceipt.encode(this.receipts.receipt(route.tenant, route.device, ids, this.now())).finish(),
      );
      this.metrics.receiptQueries.inc({ result });
    };
    let query: ReceiptQuery;
    try {
      query = ReceiptQuery.decode(msg.data);
    } catch {
      return reply([], 'invalid');
    }
    if (
      (query.tenantId !== '' && query.tenantId !== route.tenant) ||
      (query.deviceId !== '' && query.deviceId !== route.device)
    ) {
      this.log.warn(
        { subject: msg.subject, tenant: query.tenantId, device: query.deviceId },
        'receipt query names another device',
      );
      return reply([], 'mismatch');
    }
    if (query.eventIds.length > MAX_RECEIPT_QUERY_IDS) return reply([], 'too_large');
    // Ids that are not canonical UUIDv7 can never have been stored: they are simply not committed.
    const ids = [...new Set(query.eventIds.filter(isUuidV7))];
    if (ids.length === 0) return reply([], 'answered');
    let min = Infinity;
    let max = -Infinity;
    for (const id of ids) {
      const t = uuidV7Time(id) ?? 0;
      min = Math.min(min, t);
      max = Math.max(max, t);
    }
    try {
      const committed = await this.store.committedIds(
        route.tenant,
        route.device,
        ids,
        new Date(min - RECEIPT_LOOKUP_MARGIN_MS),
        new Date(max + RECEIPT_LOOKUP_MARGIN_MS),
      );
      const found = new Set(committed);
      // In the order asked, as the device sent them.
      reply(
        ids.filter((id) => found.has(id)),
        'answered',
      );
    } catch (err) {
      // No answer: the device's request times out and it asks again later (an empty answer would make it
      // resend everything, which is safe but wasteful).
      this.metrics.receiptQueries.inc({ result: 'error' });
      this.metrics.errors.inc({ stage: 'receipt' });
      this.log.error({ err, subject: msg.subject }, 'answering a receipt query failed');
    }
  }
}
