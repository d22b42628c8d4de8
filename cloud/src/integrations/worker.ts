import type { ConsumerMessages, JetStreamClient, JsMsg } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { CloudConfig } from '../config/schema.js';
import { Backoff, sleep } from '../lib/backoff.js';
import { GroupBatcher, KeyedLimiter } from './batching.js';
import { CircuitBreakers } from './breaker.js';
import { ConnectionPool, postJson, type PostResult } from './http-client.js';
import { JOBS_STREAM, MAX_JOB_DELIVERIES, WEBHOOKS_CONSUMER, parseWebhookJob } from './jobs.js';
import { signRequest } from './signing.js';
import { cachedResolver, DNS_CACHE_MS, systemResolver, type Resolver } from './ssrf.js';
import type { DeliveryRecord, JobKey, JobState, WebhookStore } from './store.js';

/** Jobs read or recorded per statement at most (a busy worker's batches grow up to it). */
export const DB_BATCH_MAX = 256;
/** Statements of each kind (lookups, records) running at once: one fills while the other runs. */
export const DB_BATCHES_IN_FLIGHT = 2;
/** While a job waits for its receiver's turn, it tells JOBS it is still being worked on this often. */
export const WORKING_EVERY_MS = 5000;

type Verdict = 'delivered' | 'retry' | 'dead';

/** What a result means: 2xx done; 408, 429, 5xx, timeouts and network errors retried; anything else dead. */
export function classify(r: PostResult): Verdict {
  if (r.kind === 'refused') return 'dead';
  if (r.kind !== 'response') return 'retry';
  if (r.status >= 200 && r.status < 300) return 'delivered';
  if (r.status === 408 || r.status === 429 || r.status >= 500) return 'retry';
  return 'dead'; // other 4xx: the receiver refuses this request, and will again; 3xx: redirects are not followed
}

/** Delay before attempt `attempt + 1`: initial doubled per attempt, capped, equal jitter (half fixed, half random). */
export function retryDelayMs(
  attempt: number,
  b: { initialMs: number; maxMs: number },
  random = Math.random,
): number {
  const step = Math.min(b.maxMs, b.initialMs * 2 ** Math.min(attempt - 1, 30));
  return Math.round(step / 2 + (step / 2) * random());
}

export interface WorkerDeps {
  js: JetStreamClient;
  store: WebhookStore;
  config: Pick<CloudConfig, 'integrations'>;
  log: Logger;
  metrics: Registry;
  resolve?: Resolver | undefined;
}

/**
 * Runs webhook delivery jobs from the `webhooks` consumer of JOBS: signed POST, one row per attempt, ack on
 * 2xx, nak with exponential backoff and jitter on a retryable failure, term (dead) on a permanent one or after
 * integrations.maxAttempts. A per-webhook circuit breaker (breaker.ts) puts jobs of a failing receiver back
 * with the remaining open time without calling it.
 *
 * Throughput: up to integrations.concurrency jobs in hand, at most perEndpointConcurrency requests to one
 * receiver (origin) at once over keep-alive connections (ConnectionPool), and the PostgreSQL work batched
 * across jobs (GroupBatcher): one statement pair reads the webhooks and attempts so far of every job that
 * arrived meanwhile, one INSERT records the outcomes of every attempt that ended meanwhile. A job is acked,
 * nak'd or termed only after its outcome row is committed, so a crash repeats a POST (at least once, as
 * before) but never loses an attempt's record or a delivery.
 */
export class WebhookWorker {
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private messages: ConsumerMessages | undefined;
  private readonly inflight = new Set<Promise<void>>();
  private slotFreed: (() => void) | undefined;
  private readonly breakers: CircuitBreakers;
  private readonly pool: ConnectionPool;
  private readonly resolve: Resolver;
  private readonly endpoints: KeyedLimiter;
  private readonly lookups: GroupBatcher<JobKey, JobState>;
  private readonly records: GroupBatcher<DeliveryRecord, void>;
  private readonly results: Counter<'result'>;
  private readonly shortCircuited: Counter;
  private readonly duration: Histogram;
  private readonly batchSize: Histogram<'op'>;

  constructor(private readonly deps: WorkerDeps) {
    const c = deps.config.integrations;
    this.breakers = new CircuitBreakers({
      failures: c.circuit.failures,
      openMs: c.circuit.openSeconds * 1000,
    });
    this.pool = new ConnectionPool({ maxSocketsPerEndpoint: c.perEndpointConcurrency });
    this.resolve = cachedResolver(deps.resolve ?? systemResolver, { ttlMs: DNS_CACHE_MS });
    this.endpoints = new KeyedLimiter(c.perEndpointConcurrency);
    this.batchSize = new Histogram({
      name: 'vigil_cloud_webhook_db_batch_size',
      help: 'Jobs per PostgreSQL statement of the webhook worker, by op (lookup: webhooks and attempts so far; record: outcomes)',
      labelNames: ['op'],
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers: [deps.metrics],
    });
    this.lookups = new GroupBatcher(
      (keys) => {
        this.batchSize.observe({ op: 'lookup' }, keys.length);
        return deps.store.lookupJobs(keys);
      },
      { maxBatch: DB_BATCH_MAX, maxInFlight: DB_BATCHES_IN_FLIGHT },
    );
    this.records = new GroupBatcher<DeliveryRecord, void>(
      async (rows) => {
        this.batchSize.observe({ op: 'record' }, rows.length);
        await deps.store.recordMany(rows);
        return rows.map(() => undefined);
      },
      { maxBatch: DB_BATCH_MAX, maxInFlight: DB_BATCHES_IN_FLIGHT },
    );
    this.results = new Counter({
      name: 'vigil_cloud_webhook_deliveries_total',
      help: 'Webhook delivery attempts and verdicts by result (delivered, retry, dead, cancelled: webhook gone or disabled, invalid: not a job (undecodable or wrong shape, termed), already_delivered: a job repeated after its delivery, not sent again)',
      labelNames: ['result'],
      registers: [deps.metrics],
    });
    this.shortCircuited = new Counter({
      name: 'vigil_cloud_webhook_short_circuited_total',
      help: 'Webhook jobs put back without calling the receiver because its circuit was open',
      registers: [deps.metrics],
    });
    this.duration = new Histogram({
      name: 'vigil_cloud_webhook_request_duration_seconds',
      help: 'Duration of webhook HTTP attempts',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [deps.metrics],
    });
    const breakers = this.breakers;
    new Gauge({
      name: 'vigil_cloud_webhook_open_circuits',
      help: 'Webhooks whose circuit is open or half-open in this process',
      registers: [deps.metrics],
      collect() {
        this.set(breakers.openCount());
      },
    });
    const inflight = this.inflight;
    new Gauge({
      name: 'vigil_cloud_webhook_jobs_in_hand',
      help: `Webhook jobs this process holds (requests in flight, waiting for their receiver's turn or for PostgreSQL); at most integrations.concurrency`,
      registers: [deps.metrics],
      collect() {
        this.set(inflight.size);
      },
    });
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Stops taking jobs and waits for those in hand. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.messages?.close().catch(() => undefined);
    await this.loop;
    await Promise.all([...this.inflight]);
    this.pool.destroy();
  }

  private async run(): Promise<void> {
    const backoff = new Backoff(250, 10_000);
    const limit = this.deps.config.integrations.concurrency;
    while (!this.abort.signal.aborted) {
      try {
        const consumer = await this.deps.js.consumers.get(JOBS_STREAM, WEBHOOKS_CONSUMER);
        this.messages = await consumer.consume({ max_messages: limit });
        for await (const msg of this.messages) {
          backoff.reset();
          while (this.inflight.size >= limit) await new Promise<void>((r) => (this.slotFreed = r));
          const p: Promise<void> = this.handle(msg)
            .catch((err: unknown) => {
              this.deps.log.error({ err }, 'webhook job failed; retried later');
              msg.nak(5000);
            })
            .finally(() => {
              this.inflight.delete(p);
              this.slotFreed?.();
              this.slotFreed = undefined;
            });
          this.inflight.add(p);
        }
      } catch (err) {
        if (this.abort.signal.aborted) break;
        const delay = backoff.next();
        this.deps.log.warn({ err, delayMs: delay }, 'webhook job consumer failed; retrying');
        await sleep(delay, this.abort.signal);
      }
    }
  }

  private async handle(msg: JsMsg): Promise<void> {
    const job = parseWebhookJob(msg.data);
    if (!job) {
      // Not a job this code wrote (a PubAck a device aimed here, issue 12): retrying cannot help.
      this.results.inc({ result: 'invalid' });
      msg.term('undecodable job');
      return;
    }
    const cfg = this.deps.config.integrations;
    const eventId = job.event.event_id;
    const state = await this.lookups.submit({ tenantId: job.tenant_id, webhookId: job.webhook_id, eventId });
    const hook = state.hook;
    if (!hook?.enabled) {
      this.results.inc({ result: 'cancelled' });
      msg.ack();
      return;
    }
    if (state.delivered) {
      this.results.inc({ result: 'already_delivered' });
      msg.ack();
      return;
    }
    const attempt = state.attempts + 1;
    const record = (
      outcome: 'delivered' | 'retrying' | 'dead',
      r: { httpStatus?: number; error?: string | undefined; durationMs?: number },
    ): Promise<void> =>
      this.records.submit({
        webhookId: hook.id,
        tenantId: hook.tenant_id,
        eventId,
        attempt,
        state: outcome,
        httpStatus: r.httpStatus ?? null,
        error: r.error ?? null,
        durationMs: r.durationMs ?? null,
      });
    if (attempt > cfg.maxAttempts || msg.info.deliveryCount > MAX_JOB_DELIVERIES) {
      await record('dead', { error: 'gave up: too many attempts or deliveries' });
      this.results.inc({ result: 'dead' });
      msg.term('too many attempts');
      return;
    }
    const url = new URL(hook.url);
    // The receiver's turn first (the deadline starts after it); JOBS is told meanwhile that the job is alive,
    // so a long wait behind a slow receiver does not get it redelivered to another worker.
    const working = setInterval(() => msg.working(), WORKING_EVERY_MS);
    let release: () => void;
    try {
      release = await this.endpoints.acquire(url.origin);
    } finally {
      clearInterval(working);
    }
    let result: PostResult;
    try {
      // Checked after the wait: jobs that queued behind failures see the circuit those failures opened.
      const gate = this.breakers.check(hook.id);
      if (!gate.allowed) {
        this.shortCircuited.inc();
        // A little jitter, so that the jobs held back by one open circuit do not all come back at once.
        msg.nak(gate.retryInMs + Math.round(Math.random() * Math.min(1000, gate.retryInMs / 10)));
        return;
      }
      const body = JSON.stringify({ type: 'vigil.event.committed', event: job.event });
      const headers = signRequest({
        method: 'POST',
        url: url.href,
        body,
        contentType: 'application/json',
        secret: hook.secret,
        keyid: hook.id,
      });
      result = await postJson(url, body, headers, {
        timeoutMs: cfg.timeoutMs,
        allowInsecureHttp: cfg.allowInsecureHttp,
        allowPrivateNetworks: cfg.allowPrivateNetworks,
        resolve: this.resolve,
        pool: this.pool,
      });
    } finally {
      release();
    }
    this.duration.observe(result.durationMs / 1000);
    let verdict = classify(result);
    // The receiver answered: reachable, whatever it said. Only retryable failures count against the circuit.
    if (verdict === 'retry') this.breakers.failure(hook.id);
    else this.breakers.success(hook.id);
    if (verdict === 'retry' && attempt >= cfg.maxAttempts) verdict = 'dead';
    const error =
      result.kind !== 'response'
        ? result.error
        : verdict === 'delivered'
          ? undefined
          : `HTTP ${result.status}`;
    await record(verdict === 'retry' ? 'retrying' : verdict, {
      ...(result.kind === 'response' ? { httpStatus: result.status } : {}),
      error,
      durationMs: result.durationMs,
    });
    this.results.inc({ result: verdict });
    if (verdict === 'delivered') msg.ack();
    else if (verdict === 'dead') msg.term(error ?? 'dead');
    else msg.nak(retryDelayMs(attempt, cfg.backoff));
  }
}
