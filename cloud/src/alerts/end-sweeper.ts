import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { Backoff, sleep } from '../lib/backoff.js';
import type { AlertMessageInfo, Database } from '../storage/tables.js';
import { planClose, trackLockKey } from './plan.js';
import { tryLockTracks, updateIncidents, writeMessageBatch } from './writes.js';

/** Incidents closed per pass at most (the rest wait for the next pass, which comes at once). */
export const END_SWEEP_BATCH = 100;

/** One pass: how many incidents were due, how many it closed, how many it left for a busy track lock. */
export interface SweepPass {
  due: number;
  closed: number;
  busy: number;
}

/**
 * Closes the incidents whose track ended, once their grace is over (migration 0032): an alerted one gets its
 * Cancel (after every Update committed meanwhile, by any ingest process), a pending one is closed silently.
 * A pass closes up to END_SWEEP_BATCH due incidents in one transaction, each under the same per-track
 * advisory lock as the ingest commit hook, so an event of the track committed before goes first, and two
 * sweepers (two processes) close it once. The pass takes only the locks that are free (try-lock: it never
 * waits on an ingest batch while holding others, so no deadlock whatever the order) and leaves the incidents
 * of busy tracks due: the next pass takes them.
 */
export class AlertEndSweeper {
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private readonly closed: Counter<'result'>;
  private readonly busy: Counter;

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
    this.busy = new Counter({
      name: 'vigil_cloud_alert_end_sweep_busy_total',
      help: 'Due incidents a sweep pass left for the next one because another transaction held their track lock (an ingest batch committing the track, the sweeper of another process)',
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
        const pass = await this.sweep();
        backoff.reset();
        // A full pass that closed something: more may be due, go again at once. Busy tracks wait a tick.
        if (pass.due < END_SWEEP_BATCH || pass.closed === 0) await sleep(this.everyMs, this.abort.signal);
      } catch (err) {
        if (this.abort.signal.aborted) break;
        const delay = backoff.next();
        this.log.warn({ err, delayMs: delay }, 'alert end sweep failed; retrying');
        await sleep(delay, this.abort.signal);
      }
    }
  }

  /** One pass: closes the incidents due now whose track is not being committed, in one transaction. */
  async sweep(): Promise<SweepPass> {
    const at = this.now();
    const pass = await this.db.transaction().execute(async (tx) => {
      const due = await tx
        .selectFrom('alert_incidents')
        .select(['id', 'tenant_id', 'device_id', 'camera_id', 'track_id'])
        .where('end_due_at', '<=', at)
        .orderBy('end_due_at')
        .limit(END_SWEEP_BATCH)
        .execute();
      if (due.length === 0) return { due: 0, closed: 0, busy: 0, cancels: 0, written: 0 };
      const held = await tryLockTracks(tx, [...new Set(due.map(trackLockKey))].sort());
      const ids = due.filter((d) => held.has(trackLockKey(d))).map((d) => d.id);
      const busy = due.length - ids.length;
      // After the locks: closed meanwhile by another sweeper, or its end moved, it is not due any more.
      const incidents =
        ids.length === 0
          ? []
          : await tx
              .selectFrom('alert_incidents')
              .selectAll()
              .where(sql<boolean>`id = any(${ids}::uuid[])`)
              .where('end_due_at', '<=', at)
              .forUpdate()
              .execute();
      // The Cancel carries what the last message said, to the rule's targets.
      const alerted = incidents.filter((i) => i.state === 'alerted');
      const last = new Map<string, AlertMessageInfo>();
      const targets = new Map<string, { target_ids: string[] }>();
      if (alerted.length > 0) {
        const { rows } = await sql<{ incident_id: string; info: AlertMessageInfo }>`
          select distinct on (incident_id) incident_id, info from alert_messages
           where incident_id = any(${alerted.map((i) => i.id)}::uuid[])
           order by incident_id, seq desc`.execute(tx);
        for (const r of rows) last.set(r.incident_id, r.info);
        const rules = await tx
          .selectFrom('alert_rules')
          .select(['id', 'target_ids'])
          .where(sql<boolean>`id = any(${[...new Set(alerted.map((i) => i.rule_id))]}::uuid[])`)
          .execute();
        for (const r of rules) targets.set(r.id, r);
      }
      const plans = incidents.map((i) =>
        planClose(i, last.get(i.id), targets.get(i.rule_id), at, this.senderDomain),
      );
      await updateIncidents(
        tx,
        plans.map((p) => p.incident),
      );
      const messages = plans.flatMap((p) => (p.message ? [p.message] : []));
      const written = await writeMessageBatch(tx, messages);
      return {
        due: due.length,
        closed: incidents.length,
        busy,
        cancels: messages.length,
        written: written.reduce((a, b) => a + b, 0),
      };
    });
    // Counted once committed.
    if (pass.cancels > 0) this.closed.inc({ result: 'cancel' }, pass.cancels);
    if (pass.closed > pass.cancels) this.closed.inc({ result: 'silent' }, pass.closed - pass.cancels);
    if (pass.busy > 0) this.busy.inc(pass.busy);
    if (pass.written > 0) this.onWritten();
    return { due: pass.due, closed: pass.closed, busy: pass.busy };
  }
}
