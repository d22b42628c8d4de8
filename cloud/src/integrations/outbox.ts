import { sql, type Kysely, type Transaction } from 'kysely';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { CommitHook, CommitWriter, NewEvent } from '../events/store.js';
import { committedView } from '../realtime/feed.js';
import type { Database } from '../storage/tables.js';
import { JOBS_MAX_MSG_SIZE, type WebhookJob } from './jobs.js';
import { matchesFilter, type Webhook, type WebhookStore } from './store.js';

/** Rows the outbox may hold; past it new jobs are dropped (counted) rather than the table growing unbounded. */
export const MAX_OUTBOX_ROWS = 500_000;
/** How long the writer trusts its last count of the outbox (the cap is approximate by this much). */
export const OUTBOX_DEPTH_REFRESH_MS = 5_000;

/** One delivery job as the outbox holds it: its Nats-Msg-Id and its body. */
export interface OutboxJob {
  msgId: string;
  payload: string;
}

/**
 * The jobs that newly inserted events cause: one per (enabled webhook of the event's tenant whose filter it
 * passes, event), msg id `<webhook>:<event>`. Pure. A job bigger than JOBS takes is left out and counted
 * (`oversize`): it could never be published and would only block the relay.
 */
export function planJobs(
  fresh: readonly NewEvent[],
  hooksByTenant: ReadonlyMap<string, readonly Webhook[]>,
  at: Date,
): { jobs: OutboxJob[]; oversize: number } {
  const jobs: OutboxJob[] = [];
  let oversize = 0;
  for (const row of fresh) {
    const hooks = hooksByTenant.get(row.tenant_id);
    if (!hooks || hooks.length === 0) continue;
    const event = committedView(row, at);
    for (const hook of hooks) {
      if (!matchesFilter(hook.filter, event)) continue;
      const job: WebhookJob = { webhook_id: hook.id, tenant_id: row.tenant_id, event };
      const payload = JSON.stringify(job);
      if (Buffer.byteLength(payload) > JOBS_MAX_MSG_SIZE) oversize++;
      else jobs.push({ msgId: `${hook.id}:${event.event_id}`, payload });
    }
  }
  return { jobs, oversize };
}

/**
 * Makes webhook delivery jobs part of the ingest commit (DESIGN.md "Integrations": jobs are enqueued in the
 * same transaction as the commit that causes them). Ingest calls `prepare` with a batch before its
 * transaction (the webhook lookups are reads, cached by the store), then the writer's `write` inside the
 * transaction with the rows the INSERT actually inserted (ON CONFLICT skips duplicates: no job for them), and
 * `committed` after COMMIT. A crash anywhere leaves either the events and their jobs, or neither; the relay
 * (relay.ts) moves the jobs to JOBS. Replaces publishing after the commit, which lost the batch's jobs when the
 * process died in between.
 */
export class WebhookOutbox implements CommitHook {
  private depth = { rows: 0, at: -Infinity };
  private readonly jobs: Counter<'result'>;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly store: WebhookStore,
    private readonly log: Logger,
    metrics: Registry,
    private readonly now: () => Date = () => new Date(),
    /** Told after a commit wrote jobs (the relay in this process, if any, starts at once). */
    private readonly onWritten: () => void = () => undefined,
  ) {
    this.jobs = new Counter({
      name: 'vigil_cloud_webhook_jobs_total',
      help: 'Webhook delivery jobs by result: outboxed (committed with their events), dropped (outbox full), oversize (bigger than JOBS takes)',
      labelNames: ['result'],
      registers: [metrics],
    });
  }

  async prepare(rows: readonly NewEvent[]): Promise<CommitWriter | undefined> {
    const hooksByTenant = new Map<string, Webhook[]>();
    for (const tenant of new Set(rows.map((r) => r.tenant_id))) {
      const hooks = await this.store.enabledFor(tenant);
      if (hooks.length > 0) hooksByTenant.set(tenant, hooks);
    }
    if (hooksByTenant.size === 0) return undefined;
    const full = (await this.depthRows()) >= MAX_OUTBOX_ROWS;
    const at = this.now();
    let written = 0;
    let dropped = 0;
    let oversize = 0;
    return {
      write: async (tx: Transaction<Database>, fresh: readonly NewEvent[]) => {
        const plan = planJobs(fresh, hooksByTenant, at);
        oversize = plan.oversize;
        if (full) {
          dropped = plan.jobs.length;
          return;
        }
        // 1000 rows x 2 parameters per statement: far below PostgreSQL's 65535 parameters.
        for (let i = 0; i < plan.jobs.length; i += 1000) {
          const chunk = plan.jobs.slice(i, i + 1000);
          await tx
            .insertInto('webhook_outbox')
            .values(chunk.map((j) => ({ msg_id: j.msgId, payload: j.payload })))
            .execute();
        }
        written = plan.jobs.length;
      },
      committed: () => {
        if (written > 0) {
          this.jobs.inc({ result: 'outboxed' }, written);
          this.depth.rows += written;
          this.onWritten();
        }
        if (dropped > 0) {
          this.jobs.inc({ result: 'dropped' }, dropped);
          this.log.warn({ jobs: dropped, max: MAX_OUTBOX_ROWS }, 'webhook outbox full: jobs dropped');
        }
        if (oversize > 0) {
          this.jobs.inc({ result: 'oversize' }, oversize);
          this.log.warn({ jobs: oversize }, 'webhook jobs bigger than JOBS takes: dropped');
        }
      },
    };
  }

  /** Outbox rows, counted up to the cap (a bounded query), at most every OUTBOX_DEPTH_REFRESH_MS. */
  private async depthRows(): Promise<number> {
    const t = this.now().getTime();
    if (t - this.depth.at < OUTBOX_DEPTH_REFRESH_MS) return this.depth.rows;
    this.depth = { rows: await countOutbox(this.db, MAX_OUTBOX_ROWS), at: t };
    return this.depth.rows;
  }
}

/** Rows in the outbox, counting at most `cap` of them. */
export async function countOutbox(db: Kysely<Database>, cap: number): Promise<number> {
  const { rows } = await sql<{ n: string }>`
    select count(*) as n from (select 1 from webhook_outbox limit ${cap}) t`.execute(db);
  return Number(rows[0]?.n ?? 0);
}
