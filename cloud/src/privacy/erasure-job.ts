import { sql, type Kysely, type Transaction } from 'kysely';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { AuditLog } from '../audit/audit-log.js';
import { failpoint } from '../lib/failpoint.js';
import type { MediaStore } from '../media/store.js';
import type { LeaderGate } from '../scheduler/lease.js';
import { drainOpen, PeriodicJob, type RunContext } from '../scheduler/periodic.js';
import { whileHoldingLock } from '../storage/leader-lock.js';
import type { Database, ErasurePhase } from '../storage/tables.js';
import { heldSql } from './erasure-holds.js';
import { eventsInScope, mediaInScope, scopeDetail, type Scope } from './scope.js';

/** The PostgreSQL advisory lock the erasure runner holds while it works ('vigil-erasure'). */
export const ERASURE_LOCK = BigInt('7601290244168491365');

export interface ErasureJobOptions {
  db: Kysely<Database>;
  store: MediaStore | undefined;
  audit: AuditLog;
  log: Logger;
  metrics: Registry;
  now?: (() => Date) | undefined;
  /** Objects per batch (default 500): one transaction, one cursor step. */
  batchSize?: number | undefined;
  /** Byte deletions in flight at once (default 16). */
  storeConcurrency?: number | undefined;
  /** How often open requests are looked for (a new request also nudges the runner). */
  pollIntervalMs: number;
  /**
   * The scheduler lease (scheduler/lease.ts): works only while this process leads, and stops between batches
   * when it no longer does. Without it, a transaction-held advisory lock (ERASURE_LOCK; direct use, the bench).
   */
  leader?: LeaderGate | undefined;
}

interface OpenRequest {
  id: string;
  tenant_id: string;
  scope: Scope;
  phase: ErasurePhase;
  /** The cursor's time as exact text (microseconds: a JS Date would lose them and skip or repeat a row). */
  cursor_at: string | null;
  cursor_id: string | null;
}

/** What one batch did. */
export interface BatchResult {
  phase: ErasurePhase;
  erased: number;
  held: number;
  failed: number;
  /** False when the request is done. */
  more: boolean;
}

const EXACT = (col: string) =>
  sql<string>`to_char(${sql.ref(col)} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/**
 * Runs erasure requests in the background (one cloud process at a time: the scheduler's lease, or without one an
 * advisory lock, through the shared runner scheduler/periodic.ts), oldest first, in bounded batches. Media first: a batch selects the scope's live objects after the cursor (held ones flagged
 * in the same statement), locks them, deletes their bytes, tombstones the rows and moves the cursor and the
 * counters, all in one transaction. The bytes go before the commit: a crash in between leaves live rows whose
 * bytes are gone, and the repeat of the batch deletes nothing twice (a missing file is fine) and tombstones
 * them; the counters moved with the rows, so nothing is counted twice. A held object is counted and left as
 * it is; an object whose bytes could not be deleted stays live and is counted as failed. Then the events:
 * the same walk, each event tombstoned (personal fields cleared, erased_at set). At the end the request is
 * done and `erasure.complete` (counts only) is on the audit log, in the same transaction.
 *
 * Holds are read in the statement that selects a batch: a hold placed while that batch is in flight (a few
 * hundred milliseconds) does not stop it; every later batch sees it. Rows locked by the batch wait for it
 * (media erase of one object, retention), so nothing is deleted twice.
 */
export class ErasureJob {
  private readonly job: PeriodicJob<void>;
  private readonly now: () => Date;
  private readonly log: Logger;
  private readonly objects: Counter<'kind' | 'result'>;
  private readonly batchSize: number;
  private readonly concurrency: number;

  constructor(private readonly opts: ErasureJobOptions) {
    this.now = opts.now ?? (() => new Date());
    this.log = opts.log.child({ component: 'erasure' });
    this.batchSize = opts.batchSize ?? 500;
    this.concurrency = opts.storeConcurrency ?? 16;
    const name = 'vigil_cloud_erasure_objects_total';
    this.objects =
      (opts.metrics.getSingleMetric(name) as Counter<'kind' | 'result'> | undefined) ??
      new Counter({
        name,
        help: 'Objects handled by erasure requests, by kind (media, event) and result (erased, held, failed)',
        labelNames: ['kind', 'result'],
        registers: [opts.metrics],
      });
    this.job = new PeriodicJob(
      {
        name: 'erasure',
        intervalMs: opts.pollIntervalMs,
        leader: opts.leader,
        // A transaction-held lock (storage/leader-lock.ts): a session lock would not survive pgbouncer.
        exclusive: (work) => whileHoldingLock(opts.db, ERASURE_LOCK, work),
        log: this.log,
        metrics: opts.metrics,
      },
      (ctx) => this.runOpen(ctx),
    );
  }

  start(): void {
    this.job.start();
  }

  /** A request was created: look now rather than at the next interval. */
  nudge(): void {
    this.job.nudge();
  }

  async stop(): Promise<void> {
    await this.job.stop();
  }

  /** Runs every open request to the end if this process leads (or gets the lock); false when it does not. */
  async runAsLeader(): Promise<boolean> {
    return (await this.job.runOnce()).ran;
  }

  private runOpen(ctx: RunContext): Promise<void> {
    return drainOpen(
      ctx,
      () => this.openRequests(),
      (req) => this.runBatch(req.id),
    );
  }

  private async openRequests(): Promise<{ id: string }[]> {
    return this.opts.db
      .selectFrom('erasure_requests')
      .select('id')
      .where('state', '<>', 'done')
      .orderBy('requested_at')
      .limit(20)
      .execute();
  }

  /** One batch of one request (exported for the bench and tests: callers hold no lock, so use one runner). */
  async runBatch(id: string): Promise<BatchResult> {
    const result = await this.opts.db.transaction().execute(async (tx) => {
      const { rows } = await sql<OpenRequest>`
        select id, tenant_id, scope, phase, cursor_id,
               ${EXACT('cursor_at')} as cursor_at
          from erasure_requests where id = ${id} and state <> 'done' for update`.execute(tx);
      const req = rows[0];
      if (!req) return { phase: 'done' as const, erased: 0, held: 0, failed: 0, more: false };
      if (req.phase === 'media') return this.mediaBatch(tx, req);
      if (req.phase === 'events') return this.eventsBatch(tx, req);
      return this.finish(tx, req);
    });
    if (result.erased)
      this.objects.inc(
        { kind: result.phase === 'events' ? 'event' : 'media', result: 'erased' },
        result.erased,
      );
    if (result.held)
      this.objects.inc({ kind: result.phase === 'events' ? 'event' : 'media', result: 'held' }, result.held);
    if (result.failed) this.objects.inc({ kind: 'media', result: 'failed' }, result.failed);
    return result;
  }

  private cursorAfter(req: OpenRequest, timeCol: string, idCol: string) {
    return req.cursor_at === null || req.cursor_id === null
      ? sql`true`
      : sql`(${sql.raw(timeCol)}, ${sql.raw(idCol)}) > (${req.cursor_at}::timestamptz, ${req.cursor_id}::uuid)`;
  }

  private async mediaBatch(tx: Transaction<Database>, req: OpenRequest): Promise<BatchResult> {
    const { rows } = await sql<{ media_id: string; at: string; storage_key: string; held: boolean }>`
      select m.media_id, ${EXACT('m.captured_at')} as at, m.storage_key, ${heldSql('media', 'm')} as held
        from media m
       where ${mediaInScope(req.tenant_id, req.scope)} and m.deleted_at is null
         and ${this.cursorAfter(req, 'm.captured_at', 'm.media_id')}
       order by m.captured_at, m.media_id
       limit ${this.batchSize}
       for update of m`.execute(tx);
    if (rows.length === 0) return this.advance(tx, req, 'events');
    const toErase = rows.filter((r) => !r.held);
    const failed = new Set<string>();
    const store = this.opts.store;
    if (store) {
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < toErase.length) {
          const r = toErase[next++]!;
          try {
            await store.delete(r.storage_key); // false (nothing there) is fine: a repeat after a crash
          } catch (err) {
            failed.add(r.media_id);
            this.log.error(
              { err, erasure: req.id, key: r.storage_key },
              'erasure: deleting media bytes failed',
            );
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(this.concurrency, toErase.length) }, worker));
    }
    failpoint('erasure.after_store_delete');
    const erased = toErase.filter((r) => !failed.has(r.media_id)).map((r) => r.media_id);
    const now = this.now();
    if (erased.length > 0)
      await sql`update media set deleted_at = ${now}, deleted_reason = 'erasure', storage_key = null
                 where tenant_id = ${req.tenant_id} and media_id = any(${erased}::uuid[]) and deleted_at is null`.execute(
        tx,
      );
    const last = rows[rows.length - 1]!;
    const held = rows.length - toErase.length;
    await sql`update erasure_requests
                 set state = 'running', started_at = coalesce(started_at, ${now}), updated_at = ${now},
                     cursor_at = ${last.at}::timestamptz, cursor_id = ${last.media_id},
                     media_erased = media_erased + ${erased.length}, media_held = media_held + ${held},
                     media_failed = media_failed + ${failed.size}, batches = batches + 1
               where id = ${req.id}`.execute(tx);
    return { phase: 'media', erased: erased.length, held, failed: failed.size, more: true };
  }

  private async eventsBatch(tx: Transaction<Database>, req: OpenRequest): Promise<BatchResult> {
    const { rows } = await sql<{ event_id: string; at: string; held: boolean }>`
      select e.event_id, ${EXACT('e.occurred_at')} as at, ${heldSql('event', 'e')} as held
        from events e
       where ${eventsInScope(req.tenant_id, req.scope)} and e.erased_at is null
         and ${this.cursorAfter(req, 'e.occurred_at', 'e.event_id')}
       order by e.occurred_at, e.event_id
       limit ${this.batchSize}
       for update of e`.execute(tx);
    if (rows.length === 0) return this.advance(tx, req, 'done');
    const toErase = rows.filter((r) => !r.held);
    const now = this.now();
    if (toErase.length > 0)
      // What stays: id, times, tenant, site, device, camera, phase, label, score, model, priority (counts and
      // statistics). What goes: whatever follows or describes a person (track, box, zones, attributes, the
      // device's original bytes) and the snapshot reference.
      await sql`update events e
                   set track_id = '', box_x = 0, box_y = 0, box_w = 0, box_h = 0, zones = '{}',
                       trigger_zone = null, attributes = '{}'::jsonb, payload = ''::bytea,
                       snapshot_media_id = null, snapshot_sha256 = null, snapshot_bytes = null,
                       erased_at = ${now}, erasure_id = ${req.id}
                  from unnest(${toErase.map((r) => r.event_id)}::uuid[], ${toErase.map((r) => r.at)}::timestamptz[]) as k(id, at)
                 where e.tenant_id = ${req.tenant_id} and e.event_id = k.id and e.occurred_at = k.at`.execute(
        tx,
      );
    const last = rows[rows.length - 1]!;
    const held = rows.length - toErase.length;
    await sql`update erasure_requests
                 set state = 'running', started_at = coalesce(started_at, ${now}), updated_at = ${now},
                     cursor_at = ${last.at}::timestamptz, cursor_id = ${last.event_id},
                     events_erased = events_erased + ${toErase.length}, events_held = events_held + ${held},
                     batches = batches + 1
               where id = ${req.id}`.execute(tx);
    return { phase: 'events', erased: toErase.length, held, failed: 0, more: true };
  }

  private async advance(
    tx: Transaction<Database>,
    req: OpenRequest,
    phase: ErasurePhase,
  ): Promise<BatchResult> {
    const now = this.now();
    await sql`update erasure_requests
                 set phase = ${phase}, cursor_at = null, cursor_id = null, updated_at = ${now},
                     state = 'running', started_at = coalesce(started_at, ${now})
               where id = ${req.id}`.execute(tx);
    return { phase: req.phase, erased: 0, held: 0, failed: 0, more: true };
  }

  /** Marks the request done and records `erasure.complete` with the counts (no personal data) in one transaction. */
  private async finish(tx: Transaction<Database>, req: OpenRequest): Promise<BatchResult> {
    const now = this.now();
    const done = await tx
      .updateTable('erasure_requests')
      .set({ state: 'done', finished_at: now, updated_at: now })
      .where('id', '=', req.id)
      .returningAll()
      .executeTakeFirstOrThrow();
    const counts = {
      media_erased: done.media_erased,
      media_held: done.media_held,
      media_failed: done.media_failed,
      events_erased: done.events_erased,
      events_held: done.events_held,
    };
    await this.opts.audit.append(
      {
        tenantId: req.tenant_id,
        actor: 'system',
        actorKind: 'system',
        action: 'erasure.complete',
        resource: `erasure:${req.tenant_id}/${req.id}`,
        outcome: done.media_failed > 0 ? 'failed' : 'allowed',
        detail: { erasure_id: req.id, scope: scopeDetail(req.scope), ...counts, batches: done.batches },
      },
      tx,
    );
    this.log.info({ erasure: req.id, tenant: req.tenant_id, ...counts }, 'erasure request done');
    return { phase: 'done', erased: 0, held: 0, failed: 0, more: false };
  }
}
