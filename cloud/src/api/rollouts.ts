import { randomUUID } from 'node:crypto';
import type { Router } from 'express';
import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { AuditLog } from '../audit/audit-log.js';
import type { Authorizer } from '../auth/authorize.js';
import { CHANNEL_RE, SEMVER_RE } from '@vigil/proto';
import { configBodySchema } from '../config-ota/body.js';
import type { ConfigIssuer } from '../config-ota/issuer.js';
import type { Releases } from '../releases/routes.js';
import { checkAgentRollout } from '../rollouts/agent-check.js';
import { VigilError } from '../lib/errors.js';
import { operatorTransition, type RolloutSpec, type RolloutState } from '../rollouts/planner.js';
import { ACTIVE_STATES, ActiveRolloutExistsError, RolloutStore, type RolloutRow } from '../rollouts/store.js';
import type { Database } from '../storage/tables.js';
import type { Principal } from '../auth/principal.js';
import { principalOf, requireAllowed } from './authenticate.js';
import { NotFoundError, ValidationError } from './errors.js';
import { limitParam, parseOrThrow } from './events-query.js';
import { methodNotAllowed } from './problem.js';

const ratio = z.number().min(0).max(1);

/** The rollout spec as the API takes it (snake_case); defaults make a cautious rollout. */
export const rolloutSpecSchema = z
  .strictObject({
    canary: z.number().int().min(1).max(100_000).default(1),
    waves: z
      .array(z.number().gt(0).max(100))
      .min(1)
      .max(20)
      .default([10, 50, 100])
      .refine((w) => w.every((p, i) => i === 0 || p > w[i - 1]!), 'must be strictly increasing')
      .refine((w) => w[w.length - 1] === 100, 'the last wave must be 100'),
    gate_window_seconds: z
      .number()
      .int()
      .min(1)
      .max(7 * 86_400)
      .default(300),
    soak_seconds: z.number().int().min(0).max(86_400).default(0),
    gates: z
      .strictObject({
        applied_ratio: ratio.default(0.95),
        allow_degraded: z.boolean().default(true),
        min_fps_ratio: ratio.optional(),
        max_inference_ratio: z
          .number()
          .min(1)
          .max(1000)
          .optional()
          .meta({
            description:
              'A device whose inference latency exceeds this multiple of its pre-rollout baseline fails ' +
              '(inference_latency_high); absent: no inference-latency gate.',
          }),
        event_rate: z
          .strictObject({ min: z.number().min(0).optional(), max: z.number().min(0).optional() })
          .optional(),
      })
      .default({ applied_ratio: 0.95, allow_degraded: true }),
    abort: z
      .strictObject({
        failure_ratio: ratio.default(0.1),
        min_reported: z.number().int().min(1).max(100_000).default(3),
      })
      .default({ failure_ratio: 0.1, min_reported: 3 }),
  })
  .meta({ id: 'RolloutSpec', description: 'Canary, cumulative waves, gates and abort criteria.' });

export const createRolloutBody = z
  .strictObject({
    target: z.strictObject({
      scope: z.enum(['tenant', 'site']),
      /** The site id (scope site); ignored for tenant. */
      id: z
        .string()
        .regex(/^[A-Za-z0-9_-]{1,63}$/)
        .optional(),
    }),
    body: configBodySchema.optional(),
    use_effective_document: z.boolean().optional(),
    agent: z
      .strictObject({
        version: z.string().regex(SEMVER_RE, 'must be a semantic version such as 1.4.0'),
        channel: z
          .string()
          .regex(CHANNEL_RE, 'must be lowercase letters, digits or "-" (e.g. stable)')
          .default('stable'),
      })
      .optional()
      .meta({
        description:
          'Roll out an agent version instead of a config: each device gets the config it runs with ' +
          '`agent: { version, channel }` added; it took the rollout when its heartbeat reports that version ' +
          'running and its updater committed it. The version must be a published release of the channel that ' +
          "every target device's version may upgrade from.",
      }),
    spec: rolloutSpecSchema.default(rolloutSpecSchema.parse({})),
  })
  .refine(
    (b) =>
      [b.body !== undefined, b.use_effective_document === true, b.agent !== undefined].filter(Boolean)
        .length === 1,
    {
      message: 'give exactly one of body, use_effective_document: true, or agent',
      path: ['body'],
    },
  )
  .refine((b) => b.target.scope !== 'site' || b.target.id !== undefined, {
    message: 'a site target needs its id',
    path: ['target', 'id'],
  });

export const rolloutPathParams = z.strictObject({ id: z.uuid() });
export const rolloutOperationBody = z.strictObject({ reason: z.string().trim().min(1).max(500).optional() });
export const listRolloutsQuery = z.strictObject({
  limit: limitParam(200).default(50),
});

const count = z.number().int();
/** After a rollback: restore issued and not applied yet, applied (runs it), refused, nothing to restore. */
const restoreCounts = {
  rolling_back: count,
  rolled_back: count,
  restore_failed: count,
  not_restored: count,
};
const waveView = z.object({
  wave: count,
  label: z.string(),
  devices: count,
  applied: count,
  failed: count,
  pending: count,
  ...restoreCounts,
});

export const rolloutViewSchema = z
  .object({
    id: z.string(),
    target: z.object({ scope: z.enum(['tenant', 'site']), id: z.string() }),
    state: z.enum(['pending', 'running', 'paused', 'completed', 'aborted', 'rolling_back', 'rolled_back']),
    current_wave: z.number().int(),
    abort_reason: z.string().nullable(),
    uses_effective_document: z.boolean(),
    agent: z.object({ version: z.string(), channel: z.string() }).nullable().meta({
      description: 'The agent version an agent-version rollout moves devices to; null: a config rollout.',
    }),
    spec: z.record(z.string(), z.unknown()),
    created_by: z.string(),
    created_at: z.iso.datetime(),
    updated_at: z.iso.datetime(),
    finished_at: z.iso.datetime().nullable(),
    devices: z.number().int(),
    totals: z.object({
      not_issued: count,
      pending: count,
      applied: count,
      failed: count,
      ...restoreCounts,
    }),
    waves: z.array(waveView),
  })
  .meta({ id: 'Rollout' });

export const rolloutListSchema = z.object({ items: z.array(rolloutViewSchema) }).meta({ id: 'RolloutList' });

const version = z.string().meta({ description: 'A config version (a decimal uint64).' });
export const ROLLOUT_DEVICE_STATUSES = [
  'not_issued',
  'pending',
  'applied',
  'failed',
  'rolling_back',
  'rolled_back',
  'restore_failed',
  'not_restored',
] as const;

export const rolloutDeviceViewSchema = z
  .object({
    device_id: z.string(),
    wave: z.number().int().nullable(),
    status: z.enum(ROLLOUT_DEVICE_STATUSES).meta({
      description:
        'In the rollout: not_issued, pending, applied (and healthy by the gates), failed; after a rollback: ' +
        'rolling_back (its last known good config was re-issued, not applied yet), rolled_back (it runs it), ' +
        'restore_failed (it refused it), not_restored (no known good config: left as it is).',
    }),
    reason: z.string().nullable(),
    issued_version: version.nullable().meta({ description: 'The version this rollout issued to it.' }),
    rollback_version: version.nullable().meta({ description: 'The version its rollback issued.' }),
    restored_from_version: version
      .nullable()
      .meta({ description: 'The version whose body the rollback re-issued.' }),
    restore_source: z.enum(['last_known_good', 'ran_before']).nullable(),
    desired_version: version.meta({ description: 'Its newest issued version now ("0": none).' }),
    applied_version: version
      .nullable()
      .meta({ description: 'The version it runs now, per its last report.' }),
    last_known_good_version: version.nullable().meta({
      description: 'The newest version it applied and reported healthy on (a rollout’s once it completed).',
    }),
    runs_last_known_good: z.boolean().meta({
      description: 'It runs the body of its last known good version (false without one).',
    }),
    config_state: z.enum(['pending', 'applied', 'failed', 'rolled_back', 'unknown']).meta({
      description: 'What it reported about its desired version.',
    }),
    health: z.enum(['ok', 'degraded', 'failing', 'unknown']),
    agent: z
      .object({
        version: z.string().nullable().meta({
          description: 'The agent version its last heartbeat reported running (null: never reported).',
        }),
        previous_version: z.string().nullable().meta({
          description: 'The agent version it ran when its wave was issued: what a rollback returns it to.',
        }),
        update_state: z.string().nullable().meta({
          description:
            'Its updater state per its last heartbeat (idle, downloading, ..., committed, rolled_back).',
        }),
        update_target: z.string().nullable(),
        update_reason: z.string().nullable(),
        update_at: z.iso.datetime().nullable(),
      })
      .nullable()
      .meta({
        description:
          'Agent-version rollouts only (null otherwise): what the device reports of its agent, live. Its status ' +
          'after a rollback is rolled_back only once it runs previous_version again.',
      }),
  })
  .meta({ id: 'RolloutDevice' });

export const rolloutDevicesQuery = z.strictObject({
  limit: limitParam(500).default(100),
  // Decimal digits only (no hex, exponents or blanks that a coercion would take).
  after: z
    .string()
    .regex(/^(-1|\d{1,8})$/, 'must be -1 or a position from a previous page (next_after)')
    .transform(Number)
    .default(-1),
});
export const rolloutDevicePageSchema = z
  .object({
    items: z.array(rolloutDeviceViewSchema),
    next_after: z
      .number()
      .int()
      .nullable()
      .meta({ description: 'Pass as `after` for the next page; null: last.' }),
  })
  .meta({ id: 'RolloutDevicePage' });

/** Spec: API (snake_case) -> planner. */
export function toPlannerSpec(s: z.output<typeof rolloutSpecSchema>): RolloutSpec {
  return {
    canary: s.canary,
    waves: s.waves,
    gateWindowSeconds: s.gate_window_seconds,
    soakSeconds: s.soak_seconds,
    gates: {
      appliedRatio: s.gates.applied_ratio,
      allowDegraded: s.gates.allow_degraded,
      ...(s.gates.min_fps_ratio !== undefined ? { minFpsRatio: s.gates.min_fps_ratio } : {}),
      ...(s.gates.max_inference_ratio !== undefined
        ? { maxInferenceRatio: s.gates.max_inference_ratio }
        : {}),
      ...(s.gates.event_rate !== undefined ? { eventRate: s.gates.event_rate } : {}),
    },
    abort: { failureRatio: s.abort.failure_ratio, minReported: s.abort.min_reported },
  };
}

/** An operation the rollout's state, or the tenant's one active rollout, does not allow (HTTP 409). */
export class RolloutStateConflict extends VigilError {
  readonly active: { id: string; state: string } | undefined;

  constructor(
    message: string,
    options?: {
      cause?: unknown;
      /** The tenant's active rollout that refused a create: the console links to it. */
      active?: { id: string; state: string } | undefined;
    },
  ) {
    super(
      'ROLLOUT_STATE_CONFLICT',
      message,
      false,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.active = options?.active;
  }
}

function activeRollout(
  db: Kysely<Database>,
  tenantId: string,
): Promise<{ id: string; state: string } | undefined> {
  return db
    .selectFrom('rollouts')
    .select(['id', 'state'])
    .where('tenant_id', '=', tenantId)
    .where('state', 'in', [...ACTIVE_STATES])
    .executeTakeFirst();
}

export interface RolloutRoutesDeps {
  db: Kysely<Database>;
  /** The release repository agent-version rollouts are checked against; undefined: they are refused. */
  releases?: Releases | undefined;
  /** What devices run (agent-version rollouts carry it); undefined: agent-version rollouts are refused. */
  configs?: Pick<ConfigIssuer, 'knownConfigs' | 'effectiveConfigBody'> | undefined;
  audit: AuditLog;
  authorizer: Authorizer;
  log: Logger;
  now: () => Date;
}

/**
 * A device's status with its rollback state read live: the executor stops watching a rollout when it ends, but a
 * device still `rolling_back` then (offline) that later applies its restored config is `rolled_back` from that
 * moment. (Other statuses are the rollout's verdicts, fixed when it ends; the per-device versions are live.)
 * An agent-version rollout's device is back only when its heartbeat also says it runs the agent version it ran
 * before (`dv.agent_version`): applying the restored config only asks its updater to go back, as in
 * rollouts/agent.ts agentRestore. Needs `rd`, `s` (device_config_state) and `dv` (devices) in the query.
 */
function liveStatus(r: RolloutRow) {
  const agentBack =
    r.agent_version === null
      ? sql`true`
      : sql`(rd.previous_agent_version is null or dv.agent_version = rd.previous_agent_version)`;
  return sql<string>`case
  when rd.status in ('rolling_back', 'restore_failed') and s.applied_version >= rd.rollback_version
    and ${agentBack}
    then 'rolled_back'
  else rd.status end`;
}

/** The progress view of a rollout: counts by wave and status from rollout_devices. */
async function view(db: Kysely<Database>, r: RolloutRow): Promise<z.output<typeof rolloutViewSchema>> {
  const spec = r.spec as unknown as RolloutSpec;
  const counts = await sql<{ wave: number | null; status: string; n: string }>`
    select rd.wave, ${liveStatus(r)} as status, count(*)::text as n
    from rollout_devices rd
    left join device_config_state s on s.tenant_id = rd.tenant_id and s.device_id = rd.device_id
    left join devices dv on dv.tenant_id = rd.tenant_id and dv.id = rd.device_id
    where rd.rollout_id = ${r.id}
    group by 1, 2`.execute(db);
  const zero = { rolling_back: 0, rolled_back: 0, restore_failed: 0, not_restored: 0 };
  const totals = { not_issued: 0, pending: 0, applied: 0, failed: 0, ...zero };
  const waves = [0, ...spec.waves].map((_, k) => ({
    wave: k,
    label: k === 0 ? 'canary' : `${spec.waves[k - 1]}%`,
    devices: 0,
    applied: 0,
    failed: 0,
    pending: 0,
    ...zero,
  }));
  let devices = 0;
  for (const row of counts.rows) {
    const n = Number(row.n);
    devices += n;
    const status = row.status as keyof typeof totals;
    if (status in totals) totals[status] += n;
    const w = row.wave === null ? undefined : waves[row.wave];
    if (w) {
      w.devices += n;
      if (status !== 'not_issued') w[status] += n;
    }
  }
  return {
    id: r.id,
    target: { scope: r.scope, id: r.scope_id },
    state: r.state as RolloutState,
    current_wave: r.current_wave,
    abort_reason: r.abort_reason,
    uses_effective_document: r.body === null && r.agent_version === null,
    agent:
      r.agent_version !== null && r.agent_channel !== null
        ? { version: r.agent_version, channel: r.agent_channel }
        : null,
    spec: r.spec,
    created_by: r.created_by,
    created_at: r.created_at.toISOString(),
    updated_at: r.updated_at.toISOString(),
    finished_at: r.finished_at?.toISOString() ?? null,
    devices,
    totals,
    waves,
  };
}

/** A page of a rollout's devices (rollout order) with what each runs now. */
async function devicePage(
  db: Kysely<Database>,
  r: RolloutRow,
  q: z.output<typeof rolloutDevicesQuery>,
): Promise<z.output<typeof rolloutDevicePageSchema>> {
  const rows = await sql<{
    position: number;
    device_id: string;
    wave: number | null;
    status: string;
    reason: string | null;
    issued_version: string | null;
    rollback_version: string | null;
    restored_from_version: string | null;
    restore_source: 'last_known_good' | 'ran_before' | null;
    desired_version: string | null;
    reported_version: string | null;
    applied_version: string | null;
    good_version: string | null;
    state: string | null;
    health: string | null;
    runs_good: boolean | null;
    previous_agent_version: string | null;
    agent_version: string | null;
    update_state: string | null;
    update_target: string | null;
    update_reason: string | null;
    update_at: Date | null;
  }>`
    select rd.position, rd.device_id, rd.wave, ${liveStatus(r)} as status, rd.reason, rd.issued_version::text,
      rd.rollback_version::text, rd.restored_from_version::text, rd.restore_source,
      s.desired_version::text, s.reported_version::text, s.applied_version::text, s.good_version::text,
      s.state, s.health, (a.body = g.body) as runs_good, rd.previous_agent_version, dv.agent_version,
      dv.update_state, dv.update_target, dv.update_reason, dv.update_at
    from rollout_devices rd
    left join device_config_state s on s.tenant_id = rd.tenant_id and s.device_id = rd.device_id
    left join devices dv on dv.tenant_id = rd.tenant_id and dv.id = rd.device_id
    left join device_configs a on a.tenant_id = rd.tenant_id and a.device_id = rd.device_id
      and a.version = s.applied_version
    left join device_configs g on g.tenant_id = rd.tenant_id and g.device_id = rd.device_id
      and g.version = s.good_version
    where rd.rollout_id = ${r.id} and rd.position > ${q.after}
    order by rd.position
    limit ${q.limit + 1}`.execute(db);
  const page = rows.rows.slice(0, q.limit);
  return {
    items: page.map((d) => {
      const desired = d.desired_version ?? '0';
      // The state about the desired version (as GET /v1/devices/{id}/config says it).
      let state = 'unknown';
      if (desired !== '0')
        state =
          d.reported_version === desired
            ? (d.state ?? 'unknown')
            : d.applied_version !== null && BigInt(d.applied_version) >= BigInt(desired)
              ? 'applied'
              : 'pending';
      return {
        device_id: d.device_id,
        wave: d.wave,
        status: d.status as (typeof ROLLOUT_DEVICE_STATUSES)[number],
        reason: d.reason,
        issued_version: d.issued_version,
        rollback_version: d.rollback_version,
        restored_from_version: d.restored_from_version,
        restore_source: d.restore_source,
        desired_version: desired,
        applied_version: d.applied_version,
        last_known_good_version: d.good_version,
        runs_last_known_good: d.runs_good === true,
        config_state: state as 'pending' | 'applied' | 'failed' | 'rolled_back' | 'unknown',
        health: (d.health ?? 'unknown') as 'ok' | 'degraded' | 'failing' | 'unknown',
        agent:
          r.agent_version === null
            ? null
            : {
                version: d.agent_version,
                previous_version: d.previous_agent_version,
                update_state: d.update_state,
                update_target: d.update_target,
                update_reason: d.update_reason,
                update_at: d.update_at?.toISOString() ?? null,
              },
      };
    }),
    next_after: rows.rows.length > q.limit ? (page[page.length - 1]?.position ?? null) : null,
  };
}

/**
 * POST/GET /rollouts, GET /rollouts/:id, GET /rollouts/:id/devices, POST /rollouts/:id/pause|resume|abort, inside the caller's tenant
 * (another tenant's rollout is a 404 like a missing one). The executor (rollouts/executor.ts) does the work.
 */
export function mountRolloutRoutes(router: Router, deps: RolloutRoutesDeps): void {
  const store = new RolloutStore(deps.db);

  router
    .route('/rollouts')
    .post(async (req, res) => {
      res.status(201).json(await createRollout(deps, principalOf(res), req.body));
    })
    .get(async (req, res) => {
      const principal = principalOf(res);
      const q = parseOrThrow(listRolloutsQuery, req.query, 'query parameters');
      res.json({ items: await listRollouts(deps, principal, q.limit) });
    })
    .all(methodNotAllowed('GET', 'HEAD', 'POST'));

  router
    .route('/rollouts/:id')
    .get(async (req, res) => {
      const { id } = parseOrThrow(rolloutPathParams, req.params, 'path parameters');
      const principal = principalOf(res);
      await requireAllowed(deps.authorizer, deps.log, principal, 'rollouts:read', {
        type: 'rollouts',
        tenant: principal.tenant,
      });
      const row = await store.get(principal.tenant, id);
      if (!row) throw new NotFoundError();
      res.json(await view(deps.db, row));
    })
    .all(methodNotAllowed('GET', 'HEAD'));

  router
    .route('/rollouts/:id/devices')
    .get(async (req, res) => {
      const { id } = parseOrThrow(rolloutPathParams, req.params, 'path parameters');
      const q = parseOrThrow(rolloutDevicesQuery, req.query, 'query parameters');
      const principal = principalOf(res);
      await requireAllowed(deps.authorizer, deps.log, principal, 'rollouts:read', {
        type: 'rollouts',
        tenant: principal.tenant,
      });
      const row = await store.get(principal.tenant, id);
      if (!row) throw new NotFoundError();
      res.json(await devicePage(deps.db, row, q));
    })
    .all(methodNotAllowed('GET', 'HEAD'));

  for (const op of ['pause', 'resume', 'abort'] as const) {
    router
      .route(`/rollouts/:id/${op}`)
      .post(async (req, res) => {
        res.json(await operateRollout(deps, principalOf(res), req.params, op, req.body));
      })
      .all(methodNotAllowed('POST'));
  }
}

/**
 * Creates a rollout in the caller's tenant (POST /v1/rollouts, and the console): `rollouts:write` asked first
 * (a denial is audited), the body checked, one active rollout per tenant, `rollout.create` audited.
 */
export async function createRollout(
  deps: RolloutRoutesDeps,
  principal: Principal,
  rawBody: unknown,
): Promise<z.output<typeof rolloutViewSchema>> {
  const store = new RolloutStore(deps.db);
  await requireAllowed(
    deps.authorizer,
    deps.log,
    principal,
    'rollouts:write',
    { type: 'rollouts', tenant: principal.tenant },
    deps.audit,
  );
  const body = parseOrThrow(createRolloutBody, rawBody ?? {}, 'body');
  const scopeId = body.target.scope === 'tenant' ? principal.tenant : body.target.id!;
  // One active rollout per tenant: two would fight over the same devices' desired versions.
  // The check gives a clear answer in the common case; the partial unique index of migration 0034 decides races.
  const active = await activeRollout(deps.db, principal.tenant);
  if (active)
    throw new RolloutStateConflict(
      `rollout ${active.id} is still ${active.state}: wait for it to end, or abort it, before starting another`,
      { active },
    );
  const id = randomUUID();
  const now = deps.now();
  if (body.agent) await checkAgentRollout(deps, principal.tenant, body.target.scope, scopeId, body.agent);
  let devices: number;
  try {
    devices = await store.create({
      id,
      tenantId: principal.tenant,
      scope: body.target.scope,
      scopeId,
      body: body.body ?? null,
      spec: toPlannerSpec(body.spec),
      createdBy: principal.subject,
      now,
      agent: body.agent,
    });
  } catch (err) {
    // Another create won the race past the check above (the database's constraint decided): the same answer.
    if (!(err instanceof ActiveRolloutExistsError)) throw err;
    const winner = await activeRollout(deps.db, principal.tenant);
    throw new RolloutStateConflict(
      winner
        ? `rollout ${winner.id} is still ${winner.state}: wait for it to end, or abort it, before starting another`
        : 'another rollout was started meanwhile; retry',
      { cause: err, active: winner },
    );
  }
  if (devices === 0) {
    throw new ValidationError(
      [{ path: 'target', message: 'no enrolled device in this scope' }],
      'The rollout has no target device.',
    );
  }
  await audit(deps, principal.tenant, principal.subject, 'rollout.create', id, {
    scope: body.target.scope,
    scope_id: scopeId,
    devices,
    effective_document: body.use_effective_document === true,
    agent: body.agent ?? null,
  });
  const row = await store.get(principal.tenant, id);
  return view(deps.db, row!);
}

/**
 * Pauses, resumes or aborts a rollout of the caller's tenant (POST /v1/rollouts/{id}/{op}, and the console):
 * `rollouts:write` asked first (a denial is audited), the transition checked, `rollout.<op>` audited.
 */
export async function operateRollout(
  deps: RolloutRoutesDeps,
  principal: Principal,
  rawParams: unknown,
  op: 'pause' | 'resume' | 'abort',
  rawBody: unknown,
): Promise<z.output<typeof rolloutViewSchema>> {
  const store = new RolloutStore(deps.db);
  const { id } = parseOrThrow(rolloutPathParams, rawParams, 'path parameters');
  await requireAllowed(
    deps.authorizer,
    deps.log,
    principal,
    'rollouts:write',
    { type: 'rollouts', tenant: principal.tenant },
    deps.audit,
  );
  const body = parseOrThrow(rolloutOperationBody, rawBody ?? {}, 'body');
  const row = await store.get(principal.tenant, id);
  if (!row) throw new NotFoundError();
  const t = operatorTransition(row.state as RolloutState, op);
  if ('error' in t) throw new RolloutStateConflict(t.error);
  const reason =
    op === 'abort' ? `aborted by ${principal.subject}${body.reason ? `: ${body.reason}` : ''}` : undefined;
  const ok = await store.transition(id, row.state, t.to, deps.now(), { reason });
  if (!ok) throw new RolloutStateConflict('the rollout changed state meanwhile; retry');
  await audit(deps, principal.tenant, principal.subject, `rollout.${op}`, id, {
    from: row.state,
    to: t.to,
    reason: body.reason ?? null,
  });
  const updated = await store.get(principal.tenant, id);
  return view(deps.db, updated!);
}

/** The newest rollouts of the caller's tenant with their progress (GET /v1/rollouts, and the console). */
export async function listRollouts(
  deps: Pick<RolloutRoutesDeps, 'db' | 'authorizer' | 'log'>,
  principal: Principal,
  limit: number,
): Promise<Array<z.output<typeof rolloutViewSchema>>> {
  await requireAllowed(deps.authorizer, deps.log, principal, 'rollouts:read', {
    type: 'rollouts',
    tenant: principal.tenant,
  });
  const rows = await new RolloutStore(deps.db).list(principal.tenant, limit);
  return Promise.all(rows.map((r) => view(deps.db, r)));
}

async function audit(
  deps: RolloutRoutesDeps,
  tenantId: string,
  actor: string,
  action: string,
  id: string,
  detail: Record<string, unknown>,
): Promise<void> {
  await deps.audit.append({
    tenantId,
    actor,
    actorKind: 'user',
    action,
    resource: `rollout:${tenantId}/${id}`,
    outcome: 'allowed',
    detail,
  });
}
