import {
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  type StoredMsg,
} from '@nats-io/jetstream';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { DetectionEvent, parseSubject } from '@vigil/proto';
import type { CloudConfig } from '../config/schema.js';
import type { EventStore, NewEvent } from '../events/store.js';
import { sleep } from '../lib/backoff.js';
import { isUuidV7, uuidV7Time } from '../lib/uuidv7.js';
import { publishDeadLetter, type DeadLetter } from './dead-letter.js';
import { deviceKey, registryRefusal, type RegisteredDevice } from './devices.js';
import type { IngestMetrics } from './metrics.js';
import { RECEIPT_LOOKUP_MARGIN_MS } from './receipts.js';
import { EVENTS_STREAM, EVENTS_SUBJECTS, INGEST_CONSUMER } from './streams.js';
import { validateEvent } from './validate.js';

/** What nats-server 2.10 answers to deleting a message that is already gone ("sequence N not found"). */
const SEQUENCE_NOT_FOUND = 10043;
/** After a pass that hit maxPerPass, the next one starts after this (not a whole interval). */
const FULL_PASS_PAUSE_MS = 1000;

/** What one pass saw and did. */
export interface StrandedPass {
  firstSeq: number;
  ackFloor: number;
  /** Messages read below the ack floor (at most maxPerPass). */
  examined: number;
  /** Already in PostgreSQL: deleted from EVENTS. */
  removed: number;
  /** Not in PostgreSQL: stored through the ingest path, then deleted. */
  reingested: number;
  /** Refused by validation (or from an unknown device): dead-lettered, then deleted. */
  deadLettered: number;
  /** The pass stopped at maxPerPass with more below the floor. */
  more: boolean;
}

/** Where the stranded messages are: [firstSeq, ackFloor], or nothing to do. Pure. */
export function strandedRange(
  firstSeq: number,
  messages: number,
  ackFloor: number,
): { from: number; to: number } | undefined {
  if (messages === 0 || firstSeq === 0 || firstSeq > ackFloor) return undefined;
  return { from: firstSeq, to: ackFloor };
}

/** Stores validated rows exactly as the ingest loop does (IngestConsumer.storeRows / registered). */
export interface IngestPath {
  storeRows(rows: readonly NewEvent[]): Promise<NewEvent[]>;
  registered(rows: readonly NewEvent[]): Promise<Map<string, RegisteredDevice>>;
}

/**
 * Repairs messages stranded in the EVENTS work queue: below the `ingest` consumer's ack floor, so never
 * delivered again, yet still stored (seen after nats-server kill -9s on 2.9.10: the acks' removals were lost
 * while the consumer's state kept them acked). They hold EVENTS' byte budget forever (no max_age).
 *
 * At start and every ingest.strandedRepairIntervalSeconds: if the stream's first sequence is at or below the ack
 * floor, reads up to strandedRepairMaxPerPass messages from there up to the floor (STREAM.MSG.GET
 * next_by_subj, so gaps cost nothing) and for each: in PostgreSQL (same tenant and device as its subject,
 * same id) -> delete it and count `removed`; otherwise -> the ingest path (validation, registry, partition,
 * INSERT with its webhook jobs) then delete, counted `reingested`, or, refused, dead-lettered (the DLQ
 * msg-id `dlq-<seq>` keeps a repeat single) then delete. A message is deleted only after its row committed or
 * its dead letter's PubAck: nothing is lost if anything fails half-way (the next pass retries).
 *
 * Safe with several ingest processes: each step is idempotent (ON CONFLICT, msg-id dedupe), a message deleted
 * by another process is skipped (not counted). A message acked a moment before a pass may be found below the
 * floor before the server removes it; it is in PostgreSQL (an ack means committed), so deleting it is right.
 */
export class StrandedRepair {
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private readonly results: Counter<'result'>;
  private readonly seen: Gauge;

  constructor(
    private readonly deps: {
      js: JetStreamClient;
      jsm: JetStreamManager;
      store: EventStore;
      ingest: IngestPath;
      metrics: Registry;
      ingestMetrics: IngestMetrics;
      log: Logger;
      config: Readonly<Pick<CloudConfig, 'ingest'>>;
      now: () => Date;
    },
  ) {
    this.results = new Counter({
      name: 'vigil_cloud_ingest_stranded_total',
      help: 'Messages found in EVENTS below the ingest ack floor, by outcome (removed: already stored; reingested; dead_lettered)',
      labelNames: ['result'],
      registers: [deps.metrics],
    });
    this.seen = new Gauge({
      name: 'vigil_cloud_ingest_stranded_seen',
      help: 'Messages below the ingest ack floor read by the last repair pass (capped at strandedRepairMaxPerPass)',
      registers: [deps.metrics],
    });
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
  }

  private async run(): Promise<void> {
    const intervalMs = this.deps.config.ingest.strandedRepairIntervalSeconds * 1000;
    while (!this.abort.signal.aborted) {
      let more = false;
      try {
        more = (await this.runOnce()).more;
      } catch (err) {
        this.deps.ingestMetrics.errors.inc({ stage: 'stranded' });
        this.deps.log.warn({ err }, 'stranded-message repair failed; retried at the next pass');
      }
      await sleep(more ? FULL_PASS_PAUSE_MS : intervalMs, this.abort.signal);
    }
  }

  /** One bounded pass (exported for tests and the loop). */
  async runOnce(): Promise<StrandedPass> {
    const { jsm, config } = this.deps;
    const stream = await jsm.streams.info(EVENTS_STREAM);
    const consumer = await jsm.consumers.info(EVENTS_STREAM, INGEST_CONSUMER);
    const ackFloor = consumer.ack_floor.stream_seq;
    const pass: StrandedPass = {
      firstSeq: stream.state.first_seq,
      ackFloor,
      examined: 0,
      removed: 0,
      reingested: 0,
      deadLettered: 0,
      more: false,
    };
    const range = strandedRange(stream.state.first_seq, stream.state.messages, ackFloor);
    if (!range) {
      this.seen.set(0);
      return pass;
    }
    const max = config.ingest.strandedRepairMaxPerPass;
    const msgs: StoredMsg[] = [];
    let cursor = range.from;
    while (msgs.length < max && cursor <= range.to && !this.abort.signal.aborted) {
      // STREAM.MSG.GET takes next_by_subj (the first message at or after seq); the client's type omits it.
      const query: { seq: number } = { seq: cursor, next_by_subj: EVENTS_SUBJECTS[0] } as { seq: number };
      const m = await jsm.streams.getMessage(EVENTS_STREAM, query);
      if (!m || m.seq > range.to) break;
      msgs.push(m);
      cursor = m.seq + 1;
    }
    pass.examined = msgs.length;
    pass.more = msgs.length >= max && cursor <= range.to;
    this.seen.set(msgs.length);
    if (msgs.length === 0) return pass;
    await this.repair(msgs, pass);
    this.deps.log.warn(
      {
        firstSeq: pass.firstSeq,
        ackFloor,
        examined: pass.examined,
        removed: pass.removed,
        reingested: pass.reingested,
        deadLettered: pass.deadLettered,
        more: pass.more,
      },
      'stranded messages below the ingest ack floor repaired',
    );
    return pass;
  }

  private async repair(msgs: StoredMsg[], pass: StrandedPass): Promise<void> {
    const stored = await this.storedAlready(msgs);
    const now = this.deps.now();
    const candidates: Array<{ m: StoredMsg; row: NewEvent }> = [];
    const poison: Array<{ m: StoredMsg; letter: DeadLetter }> = [];
    for (const m of msgs) {
      if (stored.has(m.seq)) {
        if (await this.delete(m.seq)) {
          pass.removed++;
          this.results.inc({ result: 'removed' });
        }
        continue;
      }
      const v = validateEvent(m.subject, m.data, m.seq, now, this.deps.config.ingest);
      if (v.ok) candidates.push({ m, row: v.row });
      else poison.push({ m, letter: v });
    }
    if (candidates.length > 0) {
      const registered = await this.deps.ingest.registered(candidates.map((c) => c.row));
      const known = candidates.filter((c) => {
        // The same registry check as the ingest loop: unknown devices and foreign sites are dead-lettered.
        const refusal = registryRefusal(registered, c.row);
        if (!refusal) return true;
        poison.push({
          m: c.m,
          letter: { ...refusal, tenantId: c.row.tenant_id, deviceId: c.row.device_id },
        });
        return false;
      });
      // Throws on a database failure: nothing deleted, the next pass tries again.
      const fresh = new Set(
        (await this.deps.ingest.storeRows(known.map((c) => c.row))).map((r) => r.event_id),
      );
      for (const c of known) {
        if (!(await this.delete(c.m.seq))) continue;
        // Inserted by another process meanwhile (a duplicate at the INSERT): it was stored, so `removed`.
        const result = fresh.has(c.row.event_id) ? 'reingested' : 'removed';
        if (result === 'reingested') pass.reingested++;
        else pass.removed++;
        this.results.inc({ result });
      }
    }
    for (const { m, letter } of poison) {
      await publishDeadLetter(
        this.deps.js,
        { subject: m.subject, data: m.data, info: { streamSequence: m.seq } as never },
        letter,
        now,
      );
      if (await this.delete(m.seq)) {
        pass.deadLettered++;
        this.results.inc({ result: 'dead_lettered' });
        this.deps.ingestMetrics.deadLettered.inc({ reason: letter.reason });
      }
    }
  }

  /**
   * Sequences of `msgs` whose event is in PostgreSQL under the tenant and device of their subject (the
   * publisher's authenticated identity), looked up by id in the partitions its UUIDv7 time allows.
   */
  private async storedAlready(msgs: StoredMsg[]): Promise<Set<number>> {
    const byDevice = new Map<string, { tenant: string; device: string; ids: Map<string, number[]> }>();
    for (const m of msgs) {
      const route = parseSubject(m.subject);
      if (!route) continue;
      let id: string;
      try {
        id = DetectionEvent.decode(m.data).eventId;
      } catch {
        continue;
      }
      if (!isUuidV7(id)) continue;
      const key = deviceKey(route.tenant, route.device);
      let entry = byDevice.get(key);
      if (!entry) byDevice.set(key, (entry = { tenant: route.tenant, device: route.device, ids: new Map() }));
      entry.ids.set(id, [...(entry.ids.get(id) ?? []), m.seq]);
    }
    const found = new Set<number>();
    for (const { tenant, device, ids } of byDevice.values()) {
      const times = [...ids.keys()].map((id) => uuidV7Time(id) ?? 0);
      const committed = await this.deps.store.committedIds(
        tenant,
        device,
        [...ids.keys()],
        new Date(Math.min(...times) - RECEIPT_LOOKUP_MARGIN_MS),
        new Date(Math.max(...times) + RECEIPT_LOOKUP_MARGIN_MS),
      );
      for (const id of committed) for (const seq of ids.get(id) ?? []) found.add(seq);
    }
    return found;
  }

  /** Deletes one message; false when it was already gone (another process, or the server's own removal). */
  private async delete(seq: number): Promise<boolean> {
    try {
      return await this.deps.jsm.streams.deleteMessage(EVENTS_STREAM, seq, false);
    } catch (err) {
      if (
        err instanceof JetStreamApiError &&
        (err.code === SEQUENCE_NOT_FOUND || err.code === JetStreamApiCodes.NoMessageFound)
      )
        return false;
      throw err;
    }
  }
}
