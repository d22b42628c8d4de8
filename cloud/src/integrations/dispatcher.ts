import type { JetStreamClient } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { NewEvent } from '../events/store.js';
import { committedView } from '../realtime/feed.js';
import { WEBHOOK_JOB_SUBJECT, type WebhookJob } from './jobs.js';
import { matchesFilter, type WebhookStore } from './store.js';

/** Committed events whose dispatch has not finished, at most; beyond it new batches are dropped (counted). */
export const MAX_PENDING_EVENTS = 20_000;

/**
 * Turns committed events into delivery jobs: one per (enabled webhook of the event's tenant whose filter it
 * passes, event), published on JOBS with Nats-Msg-Id `<webhook>:<event>` (deduplicated by the stream).
 *
 * Fed by ingest's onCommitted hook (ingest/start.ts), in the process that committed the batch, rather than by a
 * subscription to the realtime feed: that feed is core NATS, at most once (a lost message would be a lost
 * delivery, silently), and the cloud's main connection has noEcho (it would not see its own publishes). Here a
 * job is either in JOBS (PubAck) or counted as failed. What is left: a crash between commit and enqueue loses
 * that batch's jobs (no outbox), which the counters and the receiver's own reconciliation (GET /v1/events) cover.
 * Runs beside ingest, never blocking it: onCommitted returns at once and the publishing happens after.
 */
export class WebhookDispatcher {
  private pending = 0;
  private readonly inflight = new Set<Promise<void>>();
  private readonly jobs: Counter<'result'>;

  constructor(
    private readonly js: JetStreamClient,
    private readonly store: WebhookStore,
    private readonly log: Logger,
    metrics: Registry,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.jobs = new Counter({
      name: 'vigil_cloud_webhook_jobs_total',
      help: 'Webhook delivery jobs by result (enqueued, duplicate, error, dropped: dispatcher over its bound)',
      labelNames: ['result'],
      registers: [metrics],
    });
  }

  /** ingest's onCommitted: never throws, never waits. */
  onCommitted(rows: readonly NewEvent[]): void {
    if (rows.length === 0) return;
    if (this.pending + rows.length > MAX_PENDING_EVENTS) {
      this.jobs.inc({ result: 'dropped' }, rows.length);
      this.log.warn({ events: rows.length }, 'webhook dispatch behind: batch dropped');
      return;
    }
    this.pending += rows.length;
    const p = this.dispatch(rows)
      .catch((err: unknown) => this.log.error({ err }, 'webhook dispatch failed'))
      .finally(() => {
        this.pending -= rows.length;
        this.inflight.delete(p);
      });
    this.inflight.add(p);
  }

  /** Waits for the dispatches under way (call after ingest stopped). */
  async stop(): Promise<void> {
    await Promise.all([...this.inflight]);
  }

  private async dispatch(rows: readonly NewEvent[]): Promise<void> {
    const at = this.now();
    const byTenant = new Map<string, NewEvent[]>();
    for (const r of rows) byTenant.set(r.tenant_id, [...(byTenant.get(r.tenant_id) ?? []), r]);
    for (const [tenant, events] of byTenant) {
      const hooks = await this.store.enabledFor(tenant);
      if (hooks.length === 0) continue;
      for (const row of events) {
        const event = committedView(row, at);
        for (const hook of hooks) {
          if (!matchesFilter(hook.filter, event)) continue;
          const job: WebhookJob = { webhook_id: hook.id, tenant_id: tenant, event };
          try {
            const ack = await this.js.publish(WEBHOOK_JOB_SUBJECT, JSON.stringify(job), {
              msgID: `${hook.id}:${event.event_id}`,
            });
            this.jobs.inc({ result: ack.duplicate ? 'duplicate' : 'enqueued' });
          } catch (err) {
            // JOBS full (discard new) or NATS down: this delivery is lost; counted and logged.
            this.jobs.inc({ result: 'error' });
            this.log.warn({ err, webhook: hook.id, event: event.event_id }, 'webhook job not enqueued');
          }
        }
      }
    }
  }
}
