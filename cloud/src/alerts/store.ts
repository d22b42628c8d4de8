import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Kysely, Selectable } from 'kysely';
import type {
  AlertIncidentsTable,
  AlertMessagesTable,
  AlertRuleCap,
  AlertRuleMatch,
  AlertRulesTable,
  AlertTargetsTable,
  Database,
  SiteLocation,
} from '../storage/tables.js';

export type AlertTarget = Selectable<AlertTargetsTable>;
export type AlertRule = Selectable<AlertRulesTable>;
export type AlertIncident = Selectable<AlertIncidentsTable>;
export type AlertMessage = Selectable<AlertMessagesTable>;

/** Rules a tenant may have enabled (each committed event of the tenant is checked against all of them). */
export const MAX_ENABLED_RULES_PER_TENANT = 50;
/** Targets per tenant. */
export const MAX_TARGETS_PER_TENANT = 20;
/** How long the commit hook trusts its list of a tenant's enabled rules (changes made by other processes). */
export const RULES_CACHE_MS = 5000;

export const sha256hex = (s: string): string => createHash('sha256').update(s).digest('hex');

/** Rules, targets, incidents and messages in PostgreSQL (migration 0016). Every read is scoped to a tenant. */
export class AlertStore {
  private readonly rules = new Map<string, { at: number; rules: AlertRule[] }>();

  constructor(
    readonly db: Kysely<Database>,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** A new target; for `signature` a fresh 256-bit key, and always a fresh Atom feed token (both returned once). */
  async createTarget(input: {
    tenantId: string;
    name: string;
    url: string | null;
    auth: 'mtls' | 'signature' | 'feed';
    format?: 'cap' | 'eido' | undefined;
    delivery?: 'push' | 'pull' | undefined;
    clientCertPem?: string | undefined;
    clientKeyPem?: string | undefined;
    caPem?: string | undefined;
    createdBy: string;
  }): Promise<{ target: AlertTarget; secret: string | null; feedToken: string }> {
    const secret = input.auth === 'signature' ? randomBytes(32).toString('base64url') : null;
    const feedToken = randomBytes(32).toString('base64url');
    const target = await this.db
      .insertInto('alert_targets')
      .values({
        id: randomUUID(),
        tenant_id: input.tenantId,
        name: input.name,
        url: input.url,
        auth: input.auth,
        format: input.format ?? 'cap',
        delivery: input.delivery ?? 'push',
        client_cert_pem: input.clientCertPem ?? null,
        client_key_pem: input.clientKeyPem ?? null,
        ca_pem: input.caPem ?? null,
        secret,
        feed_token_sha256: sha256hex(feedToken),
        created_by: input.createdBy,
        created_at: this.now(),
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    return { target, secret, feedToken };
  }

  listTargets(tenantId: string): Promise<AlertTarget[]> {
    return this.db
      .selectFrom('alert_targets')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .orderBy('created_at', 'desc')
      .limit(MAX_TARGETS_PER_TENANT * 10)
      .execute();
  }

  getTarget(tenantId: string, id: string): Promise<AlertTarget | undefined> {
    return this.db
      .selectFrom('alert_targets')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('id', '=', id)
      .executeTakeFirst();
  }

  async setTargetEnabled(tenantId: string, id: string, enabled: boolean): Promise<AlertTarget | undefined> {
    await this.db
      .updateTable('alert_targets')
      .set({ enabled })
      .where('tenant_id', '=', tenantId)
      .where('id', '=', id)
      .execute();
    return this.getTarget(tenantId, id);
  }

  async countTargets(tenantId: string): Promise<number> {
    const r = await this.db
      .selectFrom('alert_targets')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('tenant_id', '=', tenantId)
      .executeTakeFirstOrThrow();
    return Number(r.n);
  }

  async createRule(input: {
    tenantId: string;
    name: string;
    match: AlertRuleMatch;
    cap: AlertRuleCap;
    targetIds: string[];
    createdBy: string;
  }): Promise<AlertRule> {
    const at = this.now();
    const row = await this.db
      .insertInto('alert_rules')
      .values({
        id: randomUUID(),
        tenant_id: input.tenantId,
        name: input.name,
        match: JSON.stringify(input.match),
        cap: JSON.stringify(input.cap),
        target_ids: input.targetIds,
        created_by: input.createdBy,
        created_at: at,
        updated_at: at,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    this.rules.delete(input.tenantId);
    return row;
  }

  async updateRule(
    tenantId: string,
    id: string,
    patch: {
      name?: string;
      match?: AlertRuleMatch;
      cap?: AlertRuleCap;
      targetIds?: string[];
      enabled?: boolean;
    },
  ): Promise<AlertRule | undefined> {
    const row = await this.db
      .updateTable('alert_rules')
      .set({
        ...(patch.name !== undefined ? { name: patch.name } : {}),
        ...(patch.match !== undefined ? { match: JSON.stringify(patch.match) } : {}),
        ...(patch.cap !== undefined ? { cap: JSON.stringify(patch.cap) } : {}),
        ...(patch.targetIds !== undefined ? { target_ids: patch.targetIds } : {}),
        ...(patch.enabled !== undefined ? { enabled: patch.enabled } : {}),
        updated_at: this.now(),
      })
      .where('tenant_id', '=', tenantId)
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirst();
    this.rules.delete(tenantId);
    return row;
  }

  listRules(tenantId: string): Promise<AlertRule[]> {
    return this.db
      .selectFrom('alert_rules')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .orderBy('created_at', 'desc')
      .limit(500)
      .execute();
  }

  getRule(tenantId: string, id: string): Promise<AlertRule | undefined> {
    return this.db
      .selectFrom('alert_rules')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('id', '=', id)
      .executeTakeFirst();
  }

  async countEnabledRules(tenantId: string): Promise<number> {
    const r = await this.db
      .selectFrom('alert_rules')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('tenant_id', '=', tenantId)
      .where('enabled', '=', true)
      .executeTakeFirstOrThrow();
    return Number(r.n);
  }

  /** The tenant's enabled rules, cached for RULES_CACHE_MS (this process's changes drop the cache). */
  async enabledRules(tenantId: string): Promise<AlertRule[]> {
    const hit = this.rules.get(tenantId);
    const at = Date.now();
    if (hit && at - hit.at < RULES_CACHE_MS) return hit.rules;
    const rules = await this.db
      .selectFrom('alert_rules')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('enabled', '=', true)
      .orderBy('id')
      .limit(MAX_ENABLED_RULES_PER_TENANT)
      .execute();
    if (this.rules.size > 10_000) this.rules.clear();
    this.rules.set(tenantId, { at, rules });
    return rules;
  }

  listIncidents(tenantId: string, limit: number, state?: string): Promise<AlertIncident[]> {
    let q = this.db.selectFrom('alert_incidents').selectAll().where('tenant_id', '=', tenantId);
    if (state) q = q.where('state', '=', state as AlertIncident['state']);
    return q.orderBy('created_at', 'desc').limit(limit).execute();
  }

  getIncident(tenantId: string, id: string): Promise<AlertIncident | undefined> {
    return this.db
      .selectFrom('alert_incidents')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('id', '=', id)
      .executeTakeFirst();
  }

  listMessages(
    tenantId: string,
    f: { incidentId?: string | undefined; targetId?: string | undefined; state?: string | undefined },
    limit: number,
  ): Promise<AlertMessage[]> {
    let q = this.db.selectFrom('alert_messages').selectAll().where('tenant_id', '=', tenantId);
    if (f.incidentId) q = q.where('incident_id', '=', f.incidentId);
    if (f.targetId) q = q.where('target_id', '=', f.targetId);
    if (f.state) q = q.where('state', '=', f.state as AlertMessage['state']);
    return q.orderBy('sent', 'desc').orderBy('seq', 'desc').limit(limit).execute();
  }

  getMessage(tenantId: string, id: string): Promise<AlertMessage | undefined> {
    return this.db
      .selectFrom('alert_messages')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('id', '=', id)
      .executeTakeFirst();
  }

  async siteLocation(tenantId: string, siteId: string): Promise<SiteLocation | null> {
    const r = await this.db
      .selectFrom('sites')
      .select('location')
      .where('tenant_id', '=', tenantId)
      .where('id', '=', siteId)
      .executeTakeFirst();
    return r?.location ?? null;
  }

  /** Sets a site's location; false when the site does not exist in the tenant. */
  async setSiteLocation(tenantId: string, siteId: string, location: SiteLocation | null): Promise<boolean> {
    const r = await this.db
      .updateTable('sites')
      .set({ location: location === null ? null : JSON.stringify(location) })
      .where('tenant_id', '=', tenantId)
      .where('id', '=', siteId)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }
}
