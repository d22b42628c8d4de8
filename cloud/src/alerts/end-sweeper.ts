import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { Backoff, sleep } from '../lib/backoff.js';
import type { Database } from '../storage/tables.js';
import { senderOf, trackLockKey, writeMessages } from './outbox.js';

/** Incidents closed per pass at most (the rest wait for the next pass, which comes at once). */
export const END_SWEEP_BATCH = 100;

/**
 * Closes the incidents whose track ended, once their grace is over (migration 0032): an alerted one gets its
 * Cancel (after every Update committed meanwhile, by any ingest process), a pending one is closed silently.
 * Each incident in its own transaction, under the same per-track advisory lock as the ingest commit hook, so
 * an event of the track being committed right now goes first, and two sweepers (two processes) close it once.
 */
export class AlertEndSweeper {
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private readonly closed: Counter<'result'>;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly senderDomain: string,
    private readonly everyMs: number,
    private readonly log: Logger,
    metrics: Registry,
    private readonly now: () => Date = () => new Date(),
    private readonly onWritten: () => void = () => undefined,
  ) {
    this.closed = new Counter({
      name: 'vigil_cloud_alert_incidents_closed_total',
      help: 'Incidents closed by the end sweeper after their track ended (cancel: a Cancel was written; silent: never alerted, or nobody to tell)',
      labelNames: ['result'],
      registers: [metrics],
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
    const backoff = new Backoff(this.everyMs, 30_000);
    while (!this.abort.signal.aborted) {
      try {
        const n = await this.sweep();
        backoff.reset();
        if (n < END_SWEEP_BATCH) await sleep(this.everyMs, this.abort.signal);
      } catch (err) {
        if (this.abort.signal.aborted) break;
        const delay = backoff.next();
        this.log.warn({ err, delayMs: delay }, 'alert end sweep failed; retrying');
        await sleep(delay, this.abort.signal);
      }
    }
  }

  /** One pass: closes the incidents due now; returns how many were due. */
  async sweep(): Promise<number> {
    const at = this.now();
    const due = await this.db
      .selectFrom('alert_incidents')
      .select(['id', 'tenant_id', 'device_id', 'camera_id', 'track_id'])
      .where('end_due_at', '<=', at)
      .orderBy('end_due_at')
      .limit(END_SWEEP_BATCH)
      .execute();
    let written = 0;
    for (const d of due) written += await this.close(d.id, trackLockKey(d), at);
    if (written > 0) this.onWritten();
    return due.length;
  }

  private async close(id: string, lockKey: string, at: Date): Promise<number> {
    return this.db.transaction().execute(async (tx) => {
      await sql`select pg_advisory_xact_lock(hashtextextended(${lockKey}, 0))`.execute(tx);
      const incident = await tx
        .selectFrom('alert_incidents')
        .selectAll()
        .where('id', '=', id)
        .where('end_due_at', '<=', at)
        .forUpdate()
        .executeTakeFirst();
      if (!incident) return 0; // closed by another sweeper, or its end moved
      const done = {
        end_due_at: null,
        updated_at: at,
        last_event_id: incident.end_event_id ?? incident.last_event_id,
      };
      if (incident.state !== 'alerted') {
        // Pending (the dwell never passed) or already closed (an operator's cancel): nothing to send.
        await tx
          .updateTable('alert_incidents')
          .set({ ...done, ...(incident.state === 'pending' ? { state: 'ended' as const } : {}) })
          .where('id', '=', id)
          .execute();
        this.closed.inc({ result: 'silent' });
        return 0;
      }
      // The Cancel carries what the last message said, at the time the track ended.
      const last = await tx
        .selectFrom('alert_messages')
        .select('info')
        .where('incident_id', '=', id)
        .orderBy('seq', 'desc')
        .limit(1)
        .executeTakeFirst();
      const rule = await tx
        .selectFrom('alert_rules')
        .select('target_ids')
        .where('id', '=', incident.rule_id)
        .executeTakeFirst();
      const seq = incident.seq + 1;
      await tx
        .updateTable('alert_incidents')
        .set({ ...done, state: 'ended', seq })
        .where('id', '=', id)
        .execute();
      if (!last || !rule) {
        this.closed.inc({ result: 'silent' });
        return 0;
      }
      const n = await writeMessages(tx, {
        incident,
        seq,
        msgType: 'Cancel',
        eventId: incident.end_event_id ?? incident.last_event_id,
        info: {
          ...last.info,
          occurred_at: (incident.end_at ?? at).toISOString(),
          reason: 'track ended',
        },
        targetIds: rule.target_ids,
        sender: senderOf(incident.tenant_id, this.senderDomain),
        sent: at,
      });
      this.closed.inc({ result: 'cancel' });
      return n;
    });
  }
}
