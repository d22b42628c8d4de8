import type { JetStreamClient } from '@nats-io/jetstream';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { Backoff, sleep } from '../lib/backoff.js';
import { failpoint } from '../lib/failpoint.js';
import type { Database } from '../storage/tables.js';
import { JOBS_STREAM, JOBS_SUBJECTS, WEBHOOK_JOB_SUBJECT } from './jobs.js';
import { countOutbox, MAX_OUTBOX_ROWS } from './outbox.js';

/**
 * Outbox rows taken per pass (published at once, deleted in one statement). 1000: a pass costs a few round trips
 * whatever its size, and at 256 the relay (~220 jobs/s on a loaded machine) was what held deliveries back.
 */
export const RELAY_BATCH = 1000;
/** Passes running at once per process (SKIP LOCKED gives each its own rows): one publishes while one commits. */
export const RELAY_LOOPS = 2;
/** With nothing to relay, the next look (sooner when this process's ingest commits jobs: nudge). */
export const RELAY_IDLE_MS = 1000;
/** How often the depth and oldest-age gauges are refreshed. */
export const RELAY_GAUGES_MS = 5000;
/** One publish's wait for its PubAck. */
const PUBLISH_TIMEOUT_MS = 5000;

/** The JOBS subject of an outbox row: its own when it is one of JOBS's, else the webhook subject (pre-0016 rows). */
export function subjectOf(subject: string | null): string {
  return subject !== null && JOBS_SUBJECTS.includes(subject) ? subject : WEBHOOK_JOB_SUBJECT;
}

export interface RelayPass {
  /** Rows published (PubAck) and deleted. */
  relayed: number;
  /** Rows whose publish failed (kept for the next pass). */
  failed: number;
  firstError?: unknown;
}

/**
 * Moves webhook jobs from the outbox (written in the ingest transaction, outbox.ts) to JOBS: takes up to
 * RELAY_BATCH of the oldest rows `FOR UPDATE SKIP LOCKED`, publishes each with Nats-Msg-Id = its msg id, and in
 * the same transaction deletes those whose PubAck came back. Runs at start (what a crashed process left) and
 * then continuously; NATS errors (down, JOBS full) keep the rows and back off.
 *
 * Safe with several cloud processes, no leader needed: SKIP LOCKED gives each relay different rows, and a
 * crash after the PubAck and before the COMMIT (the rows come back) republishes ids that JOBS drops as
 * duplicates within streams.duplicateWindowSeconds. Order across rows is not kept (deliveries never were).
 */
export class OutboxRelay {
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private readonly wakers = new Set<() => void>();
  private nudged = false;
  private gaugesAt = -Infinity;
  private readonly backoff: Backoff;
  private readonly relayed: Counter<'result'>;
  private readonly failures: Counter<'stage'>;
  private readonly depth: Gauge;
  private readonly oldestAge: Gauge;

  constructor(
    private readonly deps: {
      db: Kysely<Database>;
      js: JetStreamClient;
      log: Logger;
      metrics: Registry;
      now?: (() => Date) | undefined;
      random?: (() => number) | undefined;
    },
  ) {
    const registers = [deps.metrics];
    this.backoff = new Backoff(250, 30_000, deps.random);
    this.relayed = new Counter({
      name: 'vigil_cloud_webhook_outbox_relayed_total',
      help: 'Outbox rows published to JOBS and deleted, by result (enqueued; duplicate: JOBS already had the id)',
      labelNames: ['result'],
      registers,
    });
    this.failures = new Counter({
      name: 'vigil_cloud_webhook_outbox_failures_total',
      help: 'Outbox relay failures, by stage (publish: a row kept for a later pass; database)',
      labelNames: ['stage'],
      registers,
    });
    this.depth = new Gauge({
      name: 'vigil_cloud_webhook_outbox_depth',
      help: `Webhook jobs waiting in the outbox (counted up to ${MAX_OUTBOX_ROWS}, refreshed every ${RELAY_GAUGES_MS / 1000} s)`,
      registers,
    });
    this.oldestAge = new Gauge({
      name: 'vigil_cloud_webhook_outbox_oldest_age_seconds',
      help: 'Age of the oldest job in the outbox (0 when empty)',
      registers,
    });
  }

  start(): void {
    this.loop ??= Promise.all(Array.from({ length: RELAY_LOOPS }, () => this.run())).then(() => undefined);
  }

  /** Ends the loop after the pass in hand (its transaction commits or rolls back). */
  async stop(): Promise<void> {
    this.abort.abort();
    for (const wake of this.wakers) wake();
    await this.loop;
  }

  /** Jobs were just committed: look now instead of at the next idle tick. */
  nudge(): void {
    this.nudged = true;
    for (const wake of this.wakers) wake();
  }

  /** One bounded pass (exported for tests). */
  async relayOnce(): Promise<RelayPass> {
    const { db, js } = this.deps;
    return db.transaction().execute(async (tx) => {
      const rows = await tx
        .selectFrom('webhook_outbox')
        .select(['id', 'msg_id', 'payload', 'subject'])
        .orderBy('id')
        .limit(RELAY_BATCH)
        .forUpdate()
        .skipLocked()
        .execute();
      if (rows.length === 0) return { relayed: 0, failed: 0 };
      const results = await Promise.allSettled(
        rows.map((r) =>
          // A row names its job subject (alerts, migration 0016); older rows are webhook jobs. Only JOBS's own
          // subjects: anything else would fail forever (no stream) and is kept out by the expect below.
          js.publish(subjectOf(r.subject), r.payload, {
            msgID: r.msg_id,
            expect: { streamName: JOBS_STREAM },
            timeout: PUBLISH_TIMEOUT_MS,
          }),
        ),
      );
      const done: string[] = [];
      let duplicates = 0;
      let firstError: unknown;
      results.forEach((r, i) => {
        if (r.status === 'fulfilled') {
          done.push(rows[i]!.id);
          if (r.value.duplicate) duplicates++;
        } else firstError ??= r.reason;
      });
      // Crash tests: in JOBS, still in the outbox (the restart republishes; JOBS drops the duplicates).
      if (done.length > 0) failpoint('webhooks.relay.after_publish');
      if (done.length > 0) await tx.deleteFrom('webhook_outbox').where('id', 'in', done).execute();
      this.relayed.inc({ result: 'enqueued' }, done.length - duplicates);
      if (duplicates > 0) this.relayed.inc({ result: 'duplicate' }, duplicates);
      const failed = rows.length - done.length;
      if (failed > 0) this.failures.inc({ stage: 'publish' }, failed);
      return { relayed: done.length, failed, firstError };
    });
  }

  private async run(): Promise<void> {
    while (!this.abort.signal.aborted) {
      let pass: RelayPass | undefined;
      try {
        this.nudged = false;
        pass = await this.relayOnce();
        await this.refreshGauges();
      } catch (err) {
        this.failures.inc({ stage: 'database' });
        const delay = this.backoff.next();
        this.deps.log.warn({ err, delayMs: delay }, 'webhook outbox relay: database failed; retrying');
        await sleep(delay, this.abort.signal);
        continue;
      }
      if (pass.failed > 0) {
        const delay = this.backoff.next();
        this.deps.log.warn(
          { err: pass.firstError, failed: pass.failed, relayed: pass.relayed, delayMs: delay },
          'webhook outbox relay: publishing to JOBS failed; rows kept, retrying',
        );
        await sleep(delay, this.abort.signal);
      } else {
        this.backoff.reset();
        // A full batch: more may wait behind it. Otherwise idle until the next tick or a nudge.
        if (pass.relayed < RELAY_BATCH && !this.nudged) await this.idle();
      }
    }
  }

  /** Up to RELAY_IDLE_MS; nudge() and stop() end it early. */
  private idle(): Promise<void> {
    if (this.abort.signal.aborted) return Promise.resolve();
    let wake: (() => void) | undefined;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, RELAY_IDLE_MS);
      wake = done;
      this.wakers.add(done);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
    }).finally(() => {
      if (wake) this.wakers.delete(wake);
    });
  }

  private async refreshGauges(): Promise<void> {
    const now = (this.deps.now ?? (() => new Date()))();
    if (now.getTime() - this.gaugesAt < RELAY_GAUGES_MS) return;
    this.gaugesAt = now.getTime();
    const { db } = this.deps;
    this.depth.set(await countOutbox(db, MAX_OUTBOX_ROWS));
    const oldest = await db
      .selectFrom('webhook_outbox')
      .select('created_at')
      .orderBy('id')
      .limit(1)
      .executeTakeFirst();
    this.oldestAge.set(oldest ? Math.max(0, (now.getTime() - oldest.created_at.getTime()) / 1000) : 0);
  }
}
