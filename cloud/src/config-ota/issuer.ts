import {
  ConfigState,
  DeviceConfig,
  DeviceHealth,
  SignedConfig,
  subjectFor,
  type ConfigStatus,
} from '@vigil/proto';
import type { NatsConnection } from '@nats-io/transport-node';
import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { AuditLog } from '../audit/audit-log.js';
import { VigilError } from '../lib/errors.js';
import type { ConfigKind, Database } from '../storage/tables.js';
import { configBodySchema, effectiveBodyProblems, toDeviceConfig, type ConfigBody } from './body.js';
import { mergeConfigBodies, type ConfigScope } from './merge.js';
import type { ConfigSigner } from './signing.js';
import { applyEdgeLimits, type EdgeRetention } from '../privacy/edge.js';

export type DeviceConfigStateName = 'pending' | 'applied' | 'failed' | 'rolled_back' | 'unknown';
export type DeviceHealthName = 'ok' | 'degraded' | 'failing' | 'unknown';

/** Desired and reported config of one device (what a rollout gates on). */
export interface DeviceConfigState {
  deviceId: string;
  /** The newest issued version; 0n when none was ever issued. */
  desiredVersion: bigint;
  /** The version the device's last status was about; null before any report. */
  reportedVersion: bigint | null;
  /** The version the device runs, per its last status; null before any report. */
  appliedVersion: bigint | null;
  /**
   * `applied`/`failed`/`rolled_back`: what the device reported about the desired version (applied also when
   * it runs a later one); `pending`: not reported on the desired version yet; `unknown`: nothing issued.
   */
  state: DeviceConfigStateName;
  reason: string;
  health: DeviceHealthName;
  reportedAt: Date | null;
  /**
   * The last known good version: the newest one the device applied and reported ok on, outside probation (a
   * rollout's version is on probation until the rollout completes); null: none.
   */
  goodVersion: bigint | null;
}

/** A version of a device's config and its body. */
export interface VersionedBody {
  version: bigint;
  body: ConfigBody;
  /** A rollout's version whose rollout has not completed (it may be aborted): not to be restored. */
  probation?: boolean | undefined;
}

export interface IssueInput {
  tenantId: string;
  deviceIds: string[];
  body: ConfigBody;
  rolloutId?: string | undefined;
  /** Why: default `rollout` with a rolloutId, else `direct`; a rollout's rollback says `rollback`. */
  kind?: ConfigKind | undefined;
  /** Who issues: a JWT subject, or `rollout:<id>`, `system`, `system:<job>`. */
  actor: string;
  /** Why, on the audit entry (e.g. `retention_policy_change`): a re-issue that is not a rollout says so. */
  reason?: string | undefined;
}

export interface ConfigDocument {
  scope: ConfigScope;
  scopeId: string;
  revision: number;
  body: ConfigBody;
  createdBy: string;
  createdAt: Date;
}

export interface CurrentSignedConfig {
  version: bigint;
  jws: string;
  keyId: string;
}

/** Config OTA errors (the API maps NOT_FOUND / VALIDATION_FAILED / UNAVAILABLE). */
export class ConfigOtaError extends VigilError {
  constructor(code: 'NOT_FOUND' | 'VALIDATION_FAILED' | 'UNAVAILABLE', message: string) {
    super(code, message, code === 'UNAVAILABLE');
  }
}

export interface ConfigIssuerOptions {
  db: Kysely<Database>;
  log: Logger;
  metrics: Registry;
  /** Signs configs; without it nothing can be issued (UNAVAILABLE). */
  signer?: ConfigSigner | undefined;
  /** Pushes issued configs on the cfg subjects; without it devices get them when they poll. */
  nc?: NatsConnection | undefined;
  audit?: AuditLog | undefined;
  /** Config lifetime (expires_at - issued_at); default 7 days. */
  ttlSeconds?: number | undefined;
  /**
   * The edge media limits retention policies ask of each device (privacy/edge.ts): every issued body's
   * `retention.edgeMediaMax*` is capped by them, so the agent enforces the policies offline. Default: none.
   */
  edgeRetention?: EdgeRetention | undefined;
  now?: (() => Date) | undefined;
}

const STATES: Record<number, DeviceConfigStateName> = {
  [ConfigState.CONFIG_STATE_PENDING]: 'pending',
  [ConfigState.CONFIG_STATE_APPLIED]: 'applied',
  [ConfigState.CONFIG_STATE_FAILED]: 'failed',
  [ConfigState.CONFIG_STATE_ROLLED_BACK]: 'rolled_back',
};
const HEALTH: Record<number, DeviceHealthName> = {
  [DeviceHealth.DEVICE_HEALTH_OK]: 'ok',
  [DeviceHealth.DEVICE_HEALTH_DEGRADED]: 'degraded',
  [DeviceHealth.DEVICE_HEALTH_FAILING]: 'failing',
};

/** A device's own APPLIED + ok report on the version it runs: what makes that version its last known good. */
function isKnownGoodReport(status: ConfigStatus): boolean {
  return (
    status.state === ConfigState.CONFIG_STATE_APPLIED &&
    status.health === DeviceHealth.DEVICE_HEALTH_OK &&
    status.version === status.appliedVersion &&
    status.appliedVersion > 0n
  );
}

/** A stored body with its `retention` as asked for (device_configs.requested_retention, migration 0033). */
function asRequested(body: ConfigBody, requested: Record<string, unknown> | null): ConfigBody {
  const { retention: _capped, ...rest } = body;
  void _capped;
  return requested === null ? rest : { ...rest, retention: requested };
}

function counter(metrics: Registry, name: string, help: string, labelNames: string[]): Counter<string> {
  const existing = metrics.getSingleMetric(name);
  if (existing) return existing as Counter<string>;
  return new Counter({ name, help, labelNames, registers: [metrics] });
}

/**
 * Desired configuration of devices: documents per scope with inheritance, versioned signed configs per device
 * and the state devices report. `issue` is what rollouts (and POST /v1/devices/{id}/config/issue) call.
 */
export class ConfigIssuer {
  private readonly db: Kysely<Database>;
  private readonly log: Logger;
  private readonly now: () => Date;
  private readonly ttlMs: number;
  private readonly issued: Counter<string>;
  private readonly pushes: Counter<string>;

  constructor(private readonly opts: ConfigIssuerOptions) {
    this.db = opts.db;
    this.log = opts.log;
    this.now = opts.now ?? (() => new Date());
    this.ttlMs = (opts.ttlSeconds ?? 7 * 86_400) * 1000;
    this.issued = counter(opts.metrics, 'vigil_cloud_config_issued_total', 'Device configs issued', []);
    this.pushes = counter(
      opts.metrics,
      'vigil_cloud_config_pushes_total',
      'Issued configs pushed on the cfg subjects, by result (ok, error)',
      ['result'],
    );
  }

  /** The signer's public JWKS (JSON), for enroll/renew; undefined without a signer. */
  get publicJwks(): string | undefined {
    return this.opts.signer?.publicJwks;
  }

  /** Stores a new revision of the document at a scope; returns it. Issues nothing. */
  async putDocument(
    tenantId: string,
    scope: ConfigScope,
    scopeId: string,
    body: ConfigBody,
    actor: string,
  ): Promise<ConfigDocument> {
    const createdAt = this.now();
    const row = await this.db.transaction().execute(async (tx) => {
      // Serialises writers of one document so that revisions are dense and never collide.
      await sql`select pg_advisory_xact_lock(hashtext(${`config:${tenantId}:${scope}:${scopeId}`}))`.execute(
        tx,
      );
      const last = await tx
        .selectFrom('config_documents')
        .select((eb) => eb.fn.max('revision').as('rev'))
        .where('tenant_id', '=', tenantId)
        .where('scope', '=', scope)
        .where('scope_id', '=', scopeId)
        .executeTakeFirst();
      const revision = Number(last?.rev ?? 0) + 1;
      await tx
        .insertInto('config_documents')
        .values({
          tenant_id: tenantId,
          scope,
          scope_id: scopeId,
          revision,
          body: JSON.stringify(body),
          created_by: actor,
          created_at: createdAt,
        })
        .execute();
      await this.opts.audit?.append(
        {
          tenantId,
          actor,
          actorKind: 'user',
          action: 'config.put',
          resource: `config:${tenantId}/${scope}/${scopeId}`,
          outcome: 'allowed',
          detail: { revision },
        },
        tx,
      );
      return revision;
    });
    return { scope, scopeId, revision: row, body, createdBy: actor, createdAt };
  }

  /** The latest revision of the document at a scope, or null. */
  async getDocument(tenantId: string, scope: ConfigScope, scopeId: string): Promise<ConfigDocument | null> {
    const row = await this.db
      .selectFrom('config_documents')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('scope', '=', scope)
      .where('scope_id', '=', scopeId)
      .orderBy('revision', 'desc')
      .limit(1)
      .executeTakeFirst();
    if (!row) return null;
    return {
      scope: row.scope,
      scopeId: row.scope_id,
      revision: row.revision,
      body: row.body,
      createdBy: row.created_by,
      createdAt: row.created_at,
    };
  }

  /** The device's effective body (tenant, then site, then device document), or null for no such device. */
  async effectiveConfigBody(tenantId: string, deviceId: string): Promise<ConfigBody | null> {
    const device = await this.db
      .selectFrom('devices')
      .select(['site_id'])
      .where('tenant_id', '=', tenantId)
      .where('id', '=', deviceId)
      .executeTakeFirst();
    if (!device) return null;
    const [tenant, site, own] = await Promise.all([
      this.getDocument(tenantId, 'tenant', tenantId),
      device.site_id === null ? Promise.resolve(null) : this.getDocument(tenantId, 'site', device.site_id),
      this.getDocument(tenantId, 'device', deviceId),
    ]);
    return mergeConfigBodies(tenant?.body, site?.body, own?.body);
  }

  /**
   * Signs and stores a new version of `body` for each device (its own ids, expiry), all in one transaction
   * with one `config.issue` audit entry, then pushes each on its cfg subject. Versions are per device, strictly
   * increasing, never reused.
   */
  async issue(input: IssueInput): Promise<Array<{ deviceId: string; version: bigint }>> {
    const signer = this.opts.signer;
    if (!signer) throw new ConfigOtaError('UNAVAILABLE', 'config signing is not configured (configSigning)');
    const parsed = configBodySchema.safeParse(input.body);
    if (!parsed.success)
      throw new ConfigOtaError('VALIDATION_FAILED', `invalid config body: ${parsed.error.message}`);
    const problems = effectiveBodyProblems(parsed.data);
    if (problems.length > 0) throw new ConfigOtaError('VALIDATION_FAILED', problems.join('; '));
    const deviceIds = [...new Set(input.deviceIds)].sort();
    if (deviceIds.length === 0) return [];
    const issuedAt = this.now();
    const expiresAt = new Date(issuedAt.getTime() + this.ttlMs);
    const limits = await this.opts.edgeRetention?.(
      input.tenantId,
      deviceIds,
      (parsed.data.cameras ?? []).map((c) => c.id),
    );
    // Each device's body: the input capped by the retention policies that cover it (what it is signed with).
    const bodyOf = (deviceId: string): ConfigBody => applyEdgeLimits(parsed.data, limits?.get(deviceId));
    const kind: ConfigKind = input.kind ?? (input.rolloutId !== undefined ? 'rollout' : 'direct');

    const out = await this.db.transaction().execute(async (tx) => {
      const known = await tx
        .selectFrom('devices')
        .select('id')
        .where('tenant_id', '=', input.tenantId)
        .where('id', 'in', deviceIds)
        .execute();
      if (known.length !== deviceIds.length) {
        const have = new Set(known.map((r) => r.id));
        const missing = deviceIds.filter((d) => !have.has(d));
        throw new ConfigOtaError('NOT_FOUND', `no such device: ${missing.slice(0, 10).join(', ')}`);
      }
      await tx
        .insertInto('device_config_state')
        .values(deviceIds.map((d) => ({ tenant_id: input.tenantId, device_id: d })))
        .onConflict((oc) => oc.columns(['tenant_id', 'device_id']).doNothing())
        .execute();
      // Locked in id order (no deadlocks between concurrent batches): versions cannot be raced.
      const rows = await tx
        .selectFrom('device_config_state')
        .select(['device_id', 'desired_version'])
        .where('tenant_id', '=', input.tenantId)
        .where('device_id', 'in', deviceIds)
        .orderBy('device_id')
        .forUpdate()
        .execute();
      const results: Array<{ deviceId: string; version: bigint; signed: SignedConfig }> = [];
      for (const r of rows) {
        const version = BigInt(r.desired_version) + 1n;
        const payload = toDeviceConfig(
          { version, tenantId: input.tenantId, deviceId: r.device_id, issuedAt, expiresAt },
          bodyOf(r.device_id),
        );
        const jws = await signer.sign(DeviceConfig.encode(payload).finish());
        results.push({ deviceId: r.device_id, version, signed: { jws, keyId: signer.kid, version } });
      }
      for (let i = 0; i < results.length; i += 500) {
        const chunk = results.slice(i, i + 500);
        await tx
          .insertInto('device_configs')
          .values(
            chunk.map((r) => ({
              tenant_id: input.tenantId,
              device_id: r.deviceId,
              version: r.version,
              body: JSON.stringify(bodyOf(r.deviceId)),
              jws: r.signed.jws,
              key_id: r.signed.keyId,
              rollout_id: input.rolloutId ?? null,
              kind,
              issued_by: input.actor,
              issued_at: issuedAt,
              expires_at: expiresAt,
              // As asked for, before the policies' cap: what a later policy change re-caps (privacy/edge-sync.ts).
              requested_retention:
                parsed.data.retention === undefined ? null : JSON.stringify(parsed.data.retention),
            })),
          )
          .execute();
        await sql`
          update device_config_state s set desired_version = v.version::bigint
          from (values ${sql.join(chunk.map((r) => sql`(${r.deviceId}, ${r.version.toString()})`))}) as v(device, version)
          where s.tenant_id = ${input.tenantId} and s.device_id = v.device`.execute(tx);
      }
      await this.opts.audit?.append(
        {
          tenantId: input.tenantId,
          actor: input.actor,
          actorKind: input.actor.startsWith('rollout:')
            ? 'service'
            : input.actor.startsWith('system')
              ? 'system'
              : 'user',
          action: 'config.issue',
          resource: deviceIds.length === 1 ? `device:${input.tenantId}/${deviceIds[0]}` : null,
          outcome: 'allowed',
          detail: {
            devices: deviceIds.length,
            first_devices: deviceIds.slice(0, 20),
            rollout_id: input.rolloutId ?? null,
            kind,
            key_id: signer.kid,
            expires_at: expiresAt.toISOString(),
            ...(input.reason !== undefined ? { reason: input.reason } : {}),
          },
        },
        tx,
      );
      return results;
    });
    this.issued.inc(out.length);
    this.push(input.tenantId, out);
    return out.map((r) => ({ deviceId: r.deviceId, version: r.version }));
  }

  private push(tenantId: string, configs: Array<{ deviceId: string; signed: SignedConfig }>): void {
    const nc = this.opts.nc;
    if (!nc) return;
    for (const c of configs) {
      try {
        nc.publish(subjectFor(tenantId, c.deviceId, 'cfg'), SignedConfig.encode(c.signed).finish());
        this.pushes.inc({ result: 'ok' });
      } catch (err) {
        // The device gets it on its next poll.
        this.pushes.inc({ result: 'error' });
        this.log.warn({ err, tenantId, deviceId: c.deviceId }, 'pushing a config failed');
      }
    }
  }

  /**
   * Whether a config issued to this device (any version still stored: its current one, and earlier ones it
   * may roll back to) names the model `sha256`. FetchModel serves a device nothing else.
   */
  async namesModel(tenantId: string, deviceId: string, sha256: string): Promise<boolean> {
    const row = await this.db
      .selectFrom('device_configs')
      .select('version')
      .where('tenant_id', '=', tenantId)
      .where('device_id', '=', deviceId)
      .where(sql<boolean>`body -> 'models' @> ${JSON.stringify([{ sha256 }])}::jsonb`)
      .limit(1)
      .executeTakeFirst();
    return row !== undefined;
  }

  /** The newest issued config of a device, or null. */
  async current(tenantId: string, deviceId: string): Promise<CurrentSignedConfig | null> {
    const row = await this.db
      .selectFrom('device_configs')
      .select(['version', 'jws', 'key_id'])
      .where('tenant_id', '=', tenantId)
      .where('device_id', '=', deviceId)
      .orderBy('version', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row ? { version: BigInt(row.version), jws: row.jws, keyId: row.key_id } : null;
  }

  /**
   * Records the statuses of many devices and reads each one's newest issued config, in one statement (one
   * round trip, one commit: a status's cost was its commits, not its queries). Returns one entry per input, in
   * order: the device's current config (null: none issued, or no such device). A device named twice is
   * recorded once, with its newest report (an upsert cannot touch a row twice); each input still gets its
   * answer. Every row carries its tenant: devices of several tenants can share a batch.
   */
  async recordStatuses(
    items: ReadonlyArray<{ tenantId: string; deviceId: string; status: ConfigStatus }>,
  ): Promise<Array<CurrentSignedConfig | null>> {
    if (items.length === 0) return [];
    const key = (t: string, d: string): string => `${t}\u0000${d}`;
    const newest = new Map<string, { tenantId: string; deviceId: string; status: ConfigStatus; at: Date }>();
    for (const it of items) {
      const at = it.status.reportedAt ?? this.now();
      const k = key(it.tenantId, it.deviceId);
      const had = newest.get(k);
      if (!had || had.at.getTime() <= at.getTime()) newest.set(k, { ...it, at });
    }
    const rows = [...newest.values()];
    const values = sql.join(
      rows.map(
        (r) =>
          sql`(${r.tenantId}, ${r.deviceId}, ${r.status.version.toString()}, ${r.status.appliedVersion.toString()}, ${STATES[r.status.state] ?? 'unknown'}, ${r.status.reason.slice(0, 2000)}, ${HEALTH[r.status.health] ?? 'unknown'}, ${r.at.toISOString()})`,
      ),
    );
    // The lateral read sees the snapshot before the upsert, which does not touch device_configs anyway.
    const res = await sql<{
      tenant_id: string;
      device_id: string;
      recorded: boolean;
      version: string | null;
      jws: string | null;
      key_id: string | null;
    }>`
      with v (tenant_id, device_id, reported_version, applied_version, state, reason, health, reported_at) as (
        values ${values}
      ), up as (
        insert into device_config_state as s
          (tenant_id, device_id, reported_version, applied_version, state, reason, health, reported_at)
        select v.tenant_id, v.device_id, v.reported_version::bigint, v.applied_version::bigint, v.state, v.reason,
          v.health, v.reported_at::timestamptz
        from v join devices d on d.tenant_id = v.tenant_id and d.id = v.device_id
        order by v.tenant_id, v.device_id
        on conflict (tenant_id, device_id) do update set
          reported_version = excluded.reported_version, applied_version = excluded.applied_version,
          state = excluded.state, reason = excluded.reason, health = excluded.health,
          reported_at = excluded.reported_at
        -- A report older than the one stored (reordered delivery) changes nothing.
        where s.reported_at is null or s.reported_at <= excluded.reported_at
        returning s.tenant_id, s.device_id
      )
      select v.tenant_id, v.device_id, (up.device_id is not null) as recorded, c.version, c.jws, c.key_id
      from v
      left join up on up.tenant_id = v.tenant_id and up.device_id = v.device_id
      left join lateral (
        select version, jws, key_id from device_configs c
        where c.tenant_id = v.tenant_id and c.device_id = v.device_id
        order by version desc limit 1
      ) c on true`.execute(this.db);
    const current = new Map<string, CurrentSignedConfig | null>();
    const promote = new Map<string, Array<{ deviceId: string; version: bigint }>>();
    for (const r of res.rows) {
      const k = key(r.tenant_id, r.device_id);
      current.set(
        k,
        r.version === null || r.jws === null || r.key_id === null
          ? null
          : { version: BigInt(r.version), jws: r.jws, keyId: r.key_id },
      );
      const st = newest.get(k)!.status;
      if (r.recorded && isKnownGoodReport(st)) {
        const list = promote.get(r.tenant_id) ?? [];
        list.push({ deviceId: r.device_id, version: st.appliedVersion });
        promote.set(r.tenant_id, list);
      }
    }
    for (const [tenantId, list] of promote) await this.promoteKnownGood(tenantId, list, true);
    return items.map((it) => current.get(key(it.tenantId, it.deviceId)) ?? null);
  }

  /** Records a device's ConfigStatus (state-based: the latest report replaces the previous one). */
  async recordStatus(tenantId: string, deviceId: string, status: ConfigStatus): Promise<boolean> {
    const reportedAt = status.reportedAt ?? this.now();
    const values = {
      reported_version: status.version,
      applied_version: status.appliedVersion,
      state: STATES[status.state] ?? 'unknown',
      reason: status.reason.slice(0, 2000),
      health: HEALTH[status.health] ?? 'unknown',
      reported_at: reportedAt,
    };
    const res = await this.db
      .insertInto('device_config_state')
      .columns([
        'tenant_id',
        'device_id',
        'reported_version',
        'applied_version',
        'state',
        'reason',
        'health',
        'reported_at',
      ])
      .expression((eb) =>
        eb
          .selectFrom('devices')
          .select([
            eb.val(tenantId).as('tenant_id'),
            eb.val(deviceId).as('device_id'),
            eb.val(values.reported_version.toString()).as('reported_version'),
            eb.val(values.applied_version.toString()).as('applied_version'),
            eb.val(values.state).as('state'),
            eb.val(values.reason).as('reason'),
            eb.val(values.health).as('health'),
            eb.val(values.reported_at).as('reported_at'),
          ])
          .where('tenant_id', '=', tenantId)
          .where('id', '=', deviceId),
      )
      // A report older than the one stored (reordered delivery) changes nothing.
      .onConflict((oc) =>
        oc
          .columns(['tenant_id', 'device_id'])
          .doUpdateSet(values)
          .where((eb) =>
            eb.or([
              eb('device_config_state.reported_at', 'is', null),
              eb('device_config_state.reported_at', '<=', eb.ref('excluded.reported_at')),
            ]),
          ),
      )
      .executeTakeFirst();
    const recorded = Number(res.numInsertedOrUpdatedRows ?? 0) > 0;
    if (recorded && isKnownGoodReport(status))
      await this.promoteKnownGood(tenantId, [{ deviceId, version: status.appliedVersion }], true);
    return recorded;
  }

  /**
   * Makes `version` the device's last known good when it is newer than the current one. With `unlessProbation`
   * (a device's own APPLIED+ok report), a rollout's version is skipped until its rollout completed: the
   * rollout's gates judge it, and the executor promotes the devices they passed when it completes.
   */
  async promoteKnownGood(
    tenantId: string,
    rows: ReadonlyArray<{ deviceId: string; version: bigint }>,
    unlessProbation = false,
  ): Promise<void> {
    const probation = unlessProbation ? sql`and (c.kind <> 'rollout' or r.state = 'completed')` : sql``;
    for (let i = 0; i < rows.length; i += 500) {
      const chunk = rows.slice(i, i + 500);
      await sql`
        update device_config_state s set good_version = v.version::bigint, good_at = ${this.now()}
        from (values ${sql.join(chunk.map((r) => sql`(${r.deviceId}, ${r.version.toString()})`))}) as v(device, version)
          join device_configs c on c.tenant_id = ${tenantId} and c.device_id = v.device and c.version = v.version::bigint
          left join rollouts r on r.id = c.rollout_id
        where s.tenant_id = ${tenantId} and s.device_id = v.device
          and (s.good_version is null or s.good_version < v.version::bigint) ${probation}`.execute(this.db);
    }
  }

  /**
   * For each device: the version it runs (per its last status) and its last known good, each with its body
   * (devices without either are absent from that map). The bodies carry the retention they asked for, not the
   * one the policies of that day capped: issuing one again (a rollback, an agent rollout) caps it with today's.
   */
  async knownConfigs(
    tenantId: string,
    deviceIds: string[],
  ): Promise<{ applied: Map<string, VersionedBody>; good: Map<string, VersionedBody> }> {
    const applied = new Map<string, VersionedBody>();
    const good = new Map<string, VersionedBody>();
    if (deviceIds.length === 0) return { applied, good };
    const rows = await this.db
      .selectFrom('device_config_state as s')
      .leftJoin('device_configs as a', (j) =>
        j
          .onRef('a.tenant_id', '=', 's.tenant_id')
          .onRef('a.device_id', '=', 's.device_id')
          .onRef('a.version', '=', 's.applied_version'),
      )
      .leftJoin('device_configs as g', (j) =>
        j
          .onRef('g.tenant_id', '=', 's.tenant_id')
          .onRef('g.device_id', '=', 's.device_id')
          .onRef('g.version', '=', 's.good_version'),
      )
      .leftJoin('rollouts as r', 'r.id', 'a.rollout_id')
      .select([
        's.device_id',
        'a.version as applied_version',
        'a.body as applied_body',
        'a.requested_retention as applied_requested',
        'a.kind as applied_kind',
        'r.state as applied_rollout_state',
        'g.version as good_version',
        'g.body as good_body',
        'g.requested_retention as good_requested',
      ])
      .where('s.tenant_id', '=', tenantId)
      .where('s.device_id', 'in', deviceIds)
      .execute();
    for (const r of rows) {
      if (r.applied_version !== null && r.applied_body !== null)
        applied.set(r.device_id, {
          version: BigInt(r.applied_version),
          body: asRequested(r.applied_body, r.applied_requested),
          probation: r.applied_kind === 'rollout' && r.applied_rollout_state !== 'completed',
        });
      if (r.good_version !== null && r.good_body !== null)
        good.set(r.device_id, {
          version: BigInt(r.good_version),
          body: asRequested(r.good_body, r.good_requested),
        });
    }
    return { applied, good };
  }

  /** Desired and reported state of the given devices of a tenant (unknown devices are left out). */
  async desiredAndReported(tenantId: string, deviceIds: string[]): Promise<DeviceConfigState[]> {
    if (deviceIds.length === 0) return [];
    const rows = await this.db
      .selectFrom('devices as d')
      .leftJoin('device_config_state as s', (j) =>
        j.onRef('s.tenant_id', '=', 'd.tenant_id').onRef('s.device_id', '=', 'd.id'),
      )
      .select([
        'd.id',
        's.desired_version',
        's.reported_version',
        's.applied_version',
        's.state',
        's.reason',
        's.health',
        's.reported_at',
        's.good_version',
      ])
      .where('d.tenant_id', '=', tenantId)
      .where('d.id', 'in', deviceIds)
      .orderBy('d.id')
      .execute();
    return rows.map((r) => {
      const desired = BigInt(r.desired_version ?? 0);
      const reported = r.reported_version === null ? null : BigInt(r.reported_version);
      const applied = r.applied_version === null ? null : BigInt(r.applied_version);
      let state: DeviceConfigStateName;
      if (desired === 0n) state = 'unknown';
      else if (reported === desired) state = (r.state ?? 'unknown') as DeviceConfigStateName;
      else if (applied !== null && applied >= desired) state = 'applied';
      else state = 'pending';
      return {
        deviceId: r.id,
        desiredVersion: desired,
        reportedVersion: reported,
        appliedVersion: applied,
        state,
        reason: reported === desired ? (r.reason ?? '') : '',
        health: (r.health ?? 'unknown') as DeviceHealthName,
        reportedAt: r.reported_at ?? null,
        goodVersion: r.good_version === null ? null : BigInt(r.good_version),
      };
    });
  }
}
