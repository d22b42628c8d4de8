import { randomUUID } from 'node:crypto';
import type { Router } from 'express';
import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { AuditLog } from '../audit/audit-log.js';
import type { Authorizer } from '../auth/authorize.js';
import { configBodySchema } from '../config-ota/body.js';
import { VigilError } from '../lib/errors.js';
import { operatorTransition, type RolloutSpec, type RolloutState } from '../rollouts/planner.js';
import { ACTIVE_STATES, RolloutStore, type RolloutRow } from '../rollouts/store.js';
import type { Database } from '../storage/tables.js';
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
    spec: rolloutSpecSchema.default(rolloutSpecSchema.parse({})),
  })
  .refine((b) => (b.body !== undefined) !== (b.use_effective_document === true), {
    message: 'give either body or use_effective_document: true',
    path: ['body'],
  })
  .refine((b) => b.target.scope !== 'site' || b.target.id !== undefined, {
    message: 'a site target needs its id',
    path: ['target', 'id'],
  });

export const rolloutPathParams = z.strictObject({ id: z.uuid() });
export const rolloutOperationBody = z.strictObject({ reason: z.string().trim().min(1).max(500).optional() });
export const listRolloutsQuery = z.strictObject({
  limit: limitParam(200).default(50),
});

const waveView = z.object({
  wave: z.number().int(),
  label: z.string(),
  devices: z.number().int(),
  applied: z.number().int(),
  failed: z.number().int(),
  pending: z.number().int(),
  rolled_back: z.number().int(),
});

export const rolloutViewSchema = z
  .object({
    id: z.string(),
    target: z.object({ scope: z.enum(['tenant', 'site']), id: z.string() }),
    state: z.enum(['pending', 'running', 'paused', 'completed', 'aborted', 'rolling_back', 'rolled_back']),
    current_wave: z.number().int(),
    abort_reason: z.string().nullable(),
    uses_effective_document: z.boolean(),
    spec: z.record(z.string(), z.unknown()),
    created_by: z.string(),
    created_at: z.iso.datetime(),
    updated_at: z.iso.datetime(),
    finished_at: z.iso.datetime().nullable(),
    devices: z.number().int(),
    totals: z.object({
      not_issued: z.number().int(),
      pending: z.number().int(),
      applied: z.number().int(),
      failed: z.number().int(),
      rolled_back: z.number().int(),
    }),
    waves: z.array(waveView),
  })
  .meta({ id: 'Rollout' });

export const rolloutListSchema = z.object({ items: z.array(rolloutViewSchema) }).meta({ id: 'RolloutList' });

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

class RolloutStateConflict extends VigilError {
  constructor(message: string) {
    super('ROLLOUT_STATE_CONFLICT', message, false);
  }
}

export interface RolloutRoutesDeps {
  db: Kysely<Database>;
  audit: AuditLog;
  authorizer: Authorizer;
  log: Logger;
  now: () => Date;
}

/** The progress view of a rollout: counts by wave and status from rollout_devices. */
async function view(db: Kysely<Database>, r: RolloutRow): Promise<z.output<typeof rolloutViewSchema>> {
  const spec = r.spec as unknown as RolloutSpec;
  const counts = await sql<{ wave: number | null; status: string; n: string }>`
    select wave, status, count(*)::text as n from rollout_devices where rollout_id = ${r.id}
    group by wave, status`.execute(db);
  const totals = { not_issued: 0, pending: 0, applied: 0, failed: 0, rolled_back: 0 };
  const waves = [0, ...spec.waves].map((_, k) => ({
    wave: k,
    label: k === 0 ? 'canary' : `${spec.waves[k - 1]}%`,
    devices: 0,
    applied: 0,
    failed: 0,
    pending: 0,
    rolled_back: 0,
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
    uses_effective_document: r.body === null,
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

/**
 * POST/GET /rollouts, GET /rollouts/:id, POST /rollouts/:id/pause|resume|abort, inside the caller's tenant
 * (another tenant's rollout is a 404 like a missing one). The executor (rollouts/executor.ts) does the work.
 */
export function mountRolloutRoutes(router: Router, deps: RolloutRoutesDeps): void {
  const store = new RolloutStore(deps.db);

  router
    .route('/rollouts')
    .post(async (req, res) => {
      const principal = principalOf(res);
      await requireAllowed(
        deps.authorizer,
        deps.log,
        principal,
        'rollouts:write',
        { type: 'rollouts', tenant: principal.tenant },
        deps.audit,
      );
      const body = parseOrThrow(createRolloutBody, req.body ?? {}, 'body');
      const scopeId = body.target.scope === 'tenant' ? principal.tenant : body.target.id!;
      // One active rollout per tenant: two would fight over the same devices' desired versions.
      const active = await deps.db
        .selectFrom('rollouts')
        .select(['id', 'state'])
        .where('tenant_id', '=', principal.tenant)
        .where('state', 'in', [...ACTIVE_STATES])
        .executeTakeFirst();
      if (active)
        throw new RolloutStateConflict(
          `rollout ${active.id} is still ${active.state}: wait for it to end, or abort it, before starting another`,
        );
      const id = randomUUID();
      const now = deps.now();
      const devices = await store.create({
        id,
        tenantId: principal.tenant,
        scope: body.target.scope,
        scopeId,
        body: body.body ?? null,
        spec: toPlannerSpec(body.spec),
        createdBy: principal.subject,
        now,
      });
      if (devices === 0) {
        await deps.db.deleteFrom('rollouts').where('id', '=', id).execute();
        throw new ValidationError(
          [{ path: 'target', message: 'no enrolled device in this scope' }],
          'The rollout has no target device.',
        );
      }
      await audit(deps, principal.tenant, principal.subject, 'rollout.create', id, {
        scope: body.target.scope,
        scope_id: scopeId,
        devices,
        effective_document: body.body === undefined,
      });
      const row = await store.get(principal.tenant, id);
      res.status(201).json(await view(deps.db, row!));
    })
    .get(async (req, res) => {
      const principal = principalOf(res);
      const q = parseOrThrow(listRolloutsQuery, req.query, 'query parameters');
      await requireAllowed(deps.authorizer, deps.log, principal, 'rollouts:read', {
        type: 'rollouts',
        tenant: principal.tenant,
      });
      const rows = await store.list(principal.tenant, q.limit);
      res.json({ items: await Promise.all(rows.map((r) => view(deps.db, r))) });
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

  for (const op of ['pause', 'resume', 'abort'] as const) {
    router
      .route(`/rollouts/:id/${op}`)
      .post(async (req, res) => {
        const { id } = parseOrThrow(rolloutPathParams, req.params, 'path parameters');
        const principal = principalOf(res);
        await requireAllowed(
          deps.authorizer,
          deps.log,
          principal,
          'rollouts:write',
          { type: 'rollouts', tenant: principal.tenant },
          deps.audit,
        );
        const body = parseOrThrow(rolloutOperationBody, req.body ?? {}, 'body');
        const row = await store.get(principal.tenant, id);
        if (!row) throw new NotFoundError();
        const t = operatorTransition(row.state as RolloutState, op);
        if ('error' in t) throw new RolloutStateConflict(t.error);
        const reason =
          op === 'abort'
            ? `aborted by ${principal.subject}${body.reason ? `: ${body.reason}` : ''}`
            : undefined;
        const ok = await store.transition(id, row.state, t.to, deps.now(), { reason });
        if (!ok) throw new RolloutStateConflict('the rollout changed state meanwhile; retry');
        await audit(deps, principal.tenant, principal.subject, `rollout.${op}`, id, {
          from: row.state,
          to: t.to,
          reason: body.reason ?? null,
        });
        const updated = await store.get(principal.tenant, id);
        res.json(await view(deps.db, updated!));
      })
      .all(methodNotAllowed('POST'));
  }
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
