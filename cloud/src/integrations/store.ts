import { randomBytes, randomUUID } from 'node:crypto';
import { sql, type Kysely, type Selectable } from 'kysely';
import type {
  Database,
  WebhookDeliveriesTable,
  WebhookDeliveryState,
  WebhookFilter,
  WebhooksTable,
} from '../storage/tables.js';

export type Webhook = Selectable<WebhooksTable>;
export type WebhookDelivery = Selectable<WebhookDeliveriesTable>;

/** Attempt rows kept per webhook (the newest); older ones are deleted as new ones are written. */
export const DELIVERIES_KEPT_PER_WEBHOOK = 1000;
/** How long the outbox writer (in ingest) trusts its list of a tenant's enabled webhooks (changes made by other processes). */
export const ENABLED_CACHE_MS = 5000;
/** Webhooks a tenant may have enabled at once (each committed event fans out to all of them). */
export const MAX_ENABLED_WEBHOOKS_PER_TENANT = 20;

/** One delivery attempt as recorded in webhook_deliveries. */
export interface DeliveryRecord {
  webhookId: string;
  tenantId: string;
  eventId: string;
  attempt: number;
  state: WebhookDeliveryState;
  httpStatus: number | null;
  error: string | null;
  durationMs: number | null;
}

/** A delivery job's identity: which webhook of which tenant, for which event. */
export interface JobKey {
  tenantId: string;
  webhookId: string;
  eventId: string;
}

/** What a job needs before its attempt: the webhook, the attempts so far, and whether one delivered it. */
export interface JobState {
  hook: Webhook | undefined;
  attempts: number;
  delivered: boolean;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Webhooks and their delivery attempts in PostgreSQL (migration 0012). Every read is scoped to a tenant. */
export class WebhookStore {
  private readonly enabled = new Map<string, { at: number; hooks: Webhook[] }>();

  constructor(
    private readonly db: Kysely<Database>,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** A new webhook with a fresh 256-bit secret (returned here, and never again by the API). */
  async create(input: {
    tenantId: string;
    url: string;
    filter: WebhookFilter;
    description: string | undefined;
    createdBy: string;
  }): Promise<Webhook> {
    const row = await this.db
      .insertInto('webhooks')
      .values({
        id: randomUUID(),
        tenant_id: input.tenantId,
        url: input.url,
        secret: randomBytes(32).toString('base64url'),
        filter: JSON.stringify(input.filter),
        description: input.description ?? null,
        created_by: input.createdBy,
        created_at: this.now(),
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    this.enabled.delete(input.tenantId);
    return row;
  }

  async countEnabled(tenantId: string): Promise<number> {
    const r = await this.db
      .selectFrom('webhooks')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('tenant_id', '=', tenantId)
      .where('enabled', '=', true)
      .executeTakeFirstOrThrow();
    return Number(r.n);
  }

  list(tenantId: string): Promise<Webhook[]> {
    return this.db
      .selectFrom('webhooks')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .orderBy('created_at', 'desc')
      .orderBy('id')
      .limit(500)
      .execute();
  }

  get(tenantId: string, id: string): Promise<Webhook | undefined> {
    return this.db
      .selectFrom('webhooks')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('id', '=', id)
      .executeTakeFirst();
  }

  /** Disables it (idempotent: an already disabled webhook keeps its first reason); undefined if not found. */
  async disable(tenantId: string, id: string, reason: string): Promise<Webhook | undefined> {
    await this.db
      .updateTable('webhooks')
      .set({ enabled: false, disabled_at: this.now(), disabled_reason: reason })
      .where('tenant_id', '=', tenantId)
      .where('id', '=', id)
      .where('enabled', '=', true)
      .execute();
    this.enabled.delete(tenantId);
    return this.get(tenantId, id);
  }

  /** The tenant's enabled webhooks, cached for ENABLED_CACHE_MS (this process's changes drop the cache). */
  async enabledFor(tenantId: string): Promise<Webhook[]> {
    const hit = this.enabled.get(tenantId);
    const at = Date.now();
    if (hit && at - hit.at < ENABLED_CACHE_MS) return hit.hooks;
    const hooks = await this.db
      .selectFrom('webhooks')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('enabled', '=', true)
      .limit(MAX_ENABLED_WEBHOOKS_PER_TENANT)
      .execute();
    if (this.enabled.size > 10_000) this.enabled.clear(); // bounded; a miss only costs a query
    this.enabled.set(tenantId, { at, hooks });
    return hooks;
  }

  /**
   * Attempts recorded so far for this event at this webhook (the next attempt's number is this + 1), and
   * whether one of them delivered it (a job that comes back after that, e.g. redelivered because the worker
   * died before its ack, or enqueued again after the JOBS duplicate window, is not sent again).
   */
  async progress(webhookId: string, eventId: string): Promise<{ attempts: number; delivered: boolean }> {
    const r = await this.db
      .selectFrom('webhook_deliveries')
      .select([
        sql<number>`coalesce(max(attempt), 0)::int`.as('n'),
        sql<boolean>`coalesce(bool_or(state = 'delivered'), false)`.as('delivered'),
      ])
      .where('webhook_id', '=', webhookId)
      .where('event_id', '=', eventId)
      .executeTakeFirstOrThrow();
    return { attempts: r.n, delivered: r.delivered };
  }

  /**
   * For each job, in order: its webhook (undefined when it does not exist in that tenant) and its progress
   * (see progress()); two statements for the whole batch. Ids that are not UUIDs (no job this code wrote) find
   * nothing rather than failing the batch's statement.
   */
  async lookupJobs(keys: readonly JobKey[]): Promise<JobState[]> {
    const valid = keys.filter((k) => UUID_RE.test(k.webhookId) && UUID_RE.test(k.eventId));
    const hookIds = [...new Set(valid.map((k) => k.webhookId.toLowerCase()))];
    const hooks = new Map<string, Webhook>();
    if (hookIds.length > 0)
      for (const h of await this.db.selectFrom('webhooks').selectAll().where('id', 'in', hookIds).execute())
        hooks.set(h.id, h);
    const pairs = valid.filter((k) => hooks.has(k.webhookId.toLowerCase()));
    const progress = new Map<string, { attempts: number; delivered: boolean }>();
    if (pairs.length > 0) {
      const { rows } = await sql<{ webhook_id: string; event_id: string; n: number; delivered: boolean }>`
        select d.webhook_id, d.event_id, max(d.attempt)::int as n, bool_or(d.state = 'delivered') as delivered
        from webhook_deliveries d
        join unnest(${pairs.map((k) => k.webhookId)}::uuid[], ${pairs.map((k) => k.eventId)}::uuid[])
          as k(webhook_id, event_id) on d.webhook_id = k.webhook_id and d.event_id = k.event_id
        group by d.webhook_id, d.event_id`.execute(this.db);
      for (const r of rows)
        progress.set(`${r.webhook_id}:${r.event_id}`, { attempts: r.n, delivered: r.delivered });
    }
    return keys.map((k) => {
      const hook = hooks.get(k.webhookId.toLowerCase());
      if (!hook || hook.tenant_id !== k.tenantId) return { hook: undefined, attempts: 0, delivered: false };
      const key = `${hook.id}:${k.eventId.toLowerCase()}`;
      return { hook, ...(progress.get(key) ?? { attempts: 0, delivered: false }) };
    });
  }

  /**
   * Records attempts in one statement, then prunes each webhook's rows beyond the newest
   * DELIVERIES_KEPT_PER_WEBHOOK.
   */
  async recordMany(ds: readonly DeliveryRecord[]): Promise<void> {
    if (ds.length === 0) return;
    const at = this.now();
    await this.db
      .insertInto('webhook_deliveries')
      .values(
        ds.map((d) => ({
          webhook_id: d.webhookId,
          tenant_id: d.tenantId,
          event_id: d.eventId,
          attempt: d.attempt,
          state: d.state,
          http_status: d.httpStatus,
          error: d.error === null ? null : d.error.slice(0, 500),
          duration_ms: d.durationMs,
          at,
        })),
      )
      .execute();
    // About one row in 50 prunes (random, so that no webhook's pattern of ids can dodge it): the cap holds
    // within a few dozen rows, and most inserts cost no extra statement. A webhook with n rows here prunes
    // with the chance that one of n single inserts would have.
    const perHook = new Map<string, number>();
    for (const d of ds) perHook.set(d.webhookId, (perHook.get(d.webhookId) ?? 0) + 1);
    for (const [webhookId, n] of perHook) if (Math.random() < 1 - 0.98 ** n) await this.prune(webhookId);
  }

  /** Records one attempt (recordMany of one). */
  record(d: DeliveryRecord): Promise<void> {
    return this.recordMany([d]);
  }

  private async prune(webhookId: string): Promise<void> {
    await sql`
      delete from webhook_deliveries where webhook_id = ${webhookId} and id <= (
        select id from webhook_deliveries where webhook_id = ${webhookId}
        order by id desc offset ${DELIVERIES_KEPT_PER_WEBHOOK} limit 1)`.execute(this.db);
  }

  listDeliveries(tenantId: string, webhookId: string, limit: number): Promise<WebhookDelivery[]> {
    return this.db
      .selectFrom('webhook_deliveries')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('webhook_id', '=', webhookId)
      .orderBy('id', 'desc')
      .limit(limit)
      .execute();
  }
}

/** Whether `event` passes the webhook's filter (an empty or absent list lets everything through). */
export function matchesFilter(
  filter: WebhookFilter,
  event: { label: string; site_id: string; camera_id: string },
): boolean {
  const ok = (list: string[] | undefined, v: string): boolean =>
    !list || list.length === 0 || list.includes(v);
  return (
    ok(filter.labels, event.label) && ok(filter.sites, event.site_id) && ok(filter.cameras, event.camera_id)
  );
}
