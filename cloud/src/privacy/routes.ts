import type { Response, Router } from 'express';
import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { z } from 'zod';
import { principalOf, requireAllowed } from '../api/authenticate.js';
import { NotFoundError } from '../api/errors.js';
import { parseOrThrow } from '../api/events-query.js';
import { methodNotAllowed } from '../api/problem.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Authorizer } from '../auth/authorize.js';
import type { Principal } from '../auth/principal.js';
import type { Database } from '../storage/tables.js';
import {
  approveHoldBody,
  checkQuery,
  holdPathParams,
  listHoldsQuery,
  placeHoldBody,
  policyKeyBody,
  privacySettingsBody,
  releaseHoldBody,
  setPolicyBody,
  type holdViewSchema,
} from './api.js';
import { AUDIT_FIXED_WHY, retentionReport } from './check.js';
import type { HoldScope } from './holds.js';
import { LegalHolds, type HoldRow, type PrivacySettings } from './legal-holds.js';
import {
  RetentionPolicies,
  STORED_DATA_CLASSES,
  type PolicyKey,
  type RetentionDefaults,
  type RetentionPolicy,
  type StoredDataClass,
} from './policies.js';

export interface PrivacyRoutesDeps {
  db: Kysely<Database>;
  audit: AuditLog;
  authorizer: Authorizer;
  log: Logger;
  defaults: RetentionDefaults;
  now: () => Date;
  /** A media policy changed: start the config re-issue now (privacy/edge-sync.ts; it also polls). */
  nudgeEdgeSync?: (() => void) | undefined;
}

const iso = (d: Date | null): string | null => (d === null ? null : d.toISOString());

export function holdView(h: HoldRow): z.output<typeof holdViewSchema> {
  return {
    id: h.id,
    kind: h.kind,
    event_id: h.event_id,
    device_id: h.device_id,
    camera_id: h.camera_id,
    track_id: h.track_id,
    from: iso(h.from_ts),
    to: iso(h.to_ts),
    reason: h.reason,
    state: h.state,
    effective: h.state === 'active' || h.state === 'release_pending',
    placed_by: h.placed_by,
    placed_at: h.placed_at.toISOString(),
    approved_by: h.approved_by,
    release_requested_by: h.release_requested_by,
    release_requested_at: iso(h.release_requested_at),
    released_by: h.released_by,
    released_at: iso(h.released_at),
    release_reason: h.release_reason,
  };
}

const policyView = (p: RetentionPolicy) => ({
  scope: p.scope,
  site_id: p.siteId,
  device_id: p.deviceId,
  camera_id: p.cameraId,
  data_class: p.dataClass,
  max_age_hours: p.maxAgeHours,
  max_bytes: p.maxBytes,
  updated_by: p.updatedBy,
  updated_at: p.updatedAt.toISOString(),
});

const settingsView = (s: PrivacySettings) => ({
  holds_two_admin: s.holdsTwoAdmin,
  two_admin_off_requested_by: s.twoAdminOffRequestedBy,
});

function keyOf(b: z.output<typeof policyKeyBody>): PolicyKey {
  return {
    scope: b.scope,
    siteId: b.site_id ?? '',
    deviceId: b.device_id ?? '',
    cameraId: b.camera_id ?? '',
    // The schema refuses `audit` (fixed retention).
    dataClass: b.data_class as StoredDataClass,
  };
}

/**
 * /retention/policies, /retention/check, /holds, /privacy/settings (tenant-wide). Every id a caller names is
 * looked up in its own tenant: another tenant's site, device, event or hold is a 404 like a missing one.
 */
export function mountPrivacyRoutes(router: Router, deps: PrivacyRoutesDeps): void {
  const policies = new RetentionPolicies(deps.db, deps.audit, deps.now);
  const holds = new LegalHolds(deps.db, deps.audit, deps.now);
  const allow = async (
    res: Response,
    action: 'retention:read' | 'retention:write' | 'holds:read' | 'holds:write',
  ): Promise<Principal> => {
    const principal = principalOf(res);
    const type = action.startsWith('retention') ? ('retention' as const) : ('holds' as const);
    await requireAllowed(
      deps.authorizer,
      deps.log,
      principal,
      action,
      { type, tenant: principal.tenant },
      deps.audit,
    );
    return principal;
  };
  const by = (p: Principal) => ({ actor: p.subject, actorKind: 'user' as const });

  async function requireDevice(tenantId: string, deviceId: string): Promise<void> {
    const row = await deps.db
      .selectFrom('devices')
      .select('id')
      .where('tenant_id', '=', tenantId)
      .where('id', '=', deviceId)
      .executeTakeFirst();
    if (!row) throw new NotFoundError();
  }
  async function requireScope(tenantId: string, key: PolicyKey): Promise<void> {
    if (key.scope === 'camera') await requireDevice(tenantId, key.deviceId);
    if (key.scope === 'site') {
      const row = await deps.db
        .selectFrom('sites')
        .select('id')
        .where('tenant_id', '=', tenantId)
        .where('id', '=', key.siteId)
        .executeTakeFirst();
      if (!row) throw new NotFoundError();
    }
  }

  router
    .route('/retention/policies')
    .get(async (_req, res) => {
      const principal = await allow(res, 'retention:read');
      const defaults = Object.fromEntries(
        STORED_DATA_CLASSES.map((c) => [c, { max_age_hours: deps.defaults[c] }]),
      );
      res.json({
        defaults,
        audit: { policy: 'fixed', why: AUDIT_FIXED_WHY },
        items: (await policies.list(principal.tenant)).map(policyView),
      });
    })
    .post(async (req, res) => {
      const principal = await allow(res, 'retention:write');
      const body = parseOrThrow(setPolicyBody, req.body ?? {}, 'body');
      const key = keyOf(body);
      await requireScope(principal.tenant, key);
      const p = await policies.set(
        principal.tenant,
        key,
        {
          maxAgeHours:
            body.max_age_hours ?? (body.max_age_days === undefined ? null : body.max_age_days * 24),
          maxBytes: body.max_bytes ?? null,
        },
        by(principal),
      );
      deps.nudgeEdgeSync?.();
      res.json(policyView(p));
    })
    .all(methodNotAllowed('GET', 'HEAD', 'POST'));

  router
    .route('/retention/policies/delete')
    .post(async (req, res) => {
      const principal = await allow(res, 'retention:write');
      const key = keyOf(parseOrThrow(policyKeyBody, req.body ?? {}, 'body'));
      await policies.delete(principal.tenant, key, by(principal));
      deps.nudgeEdgeSync?.();
      res.json({ deleted: true });
    })
    .all(methodNotAllowed('POST'));

  router
    .route('/retention/check')
    .get(async (req, res) => {
      const q = parseOrThrow(checkQuery, req.query, 'query parameters');
      const principal = await allow(res, 'retention:read');
      res.json(await retentionReport(deps.db, principal.tenant, deps.defaults, deps.now(), q.limit ?? 10));
    })
    .all(methodNotAllowed('GET', 'HEAD'));

  router
    .route('/holds')
    .post(async (req, res) => {
      const principal = await allow(res, 'holds:write');
      const b = parseOrThrow(placeHoldBody, req.body ?? {}, 'body');
      let scope: HoldScope;
      if (b.kind === 'event') {
        // Any partition: the event id alone (UUIDv7) is unique; only this tenant's count.
        const { rows } = await sql<{ one: number }>`select 1 as one from events
          where tenant_id = ${principal.tenant} and event_id = ${b.event_id} limit 1`.execute(deps.db);
        if (rows.length === 0) throw new NotFoundError();
        scope = { kind: 'event', eventId: b.event_id };
      } else {
        await requireDevice(principal.tenant, b.device_id);
        scope =
          b.kind === 'device'
            ? { kind: 'device', deviceId: b.device_id }
            : b.kind === 'track'
              ? { kind: 'track', deviceId: b.device_id, cameraId: b.camera_id, trackId: b.track_id }
              : {
                  kind: 'camera_range',
                  deviceId: b.device_id,
                  cameraId: b.camera_id,
                  from: new Date(b.from),
                  to: new Date(b.to),
                };
      }
      const id = await holds.place(principal.tenant, scope, b.reason, by(principal));
      res.status(201).json(holdView((await holds.get(principal.tenant, id))!));
    })
    .get(async (req, res) => {
      const q = parseOrThrow(listHoldsQuery, req.query, 'query parameters');
      const principal = await allow(res, 'holds:read');
      const rows = await holds.list(principal.tenant, q.state ?? 'effective', q.limit ?? 100);
      res.json({ items: rows.map(holdView) });
    })
    .all(methodNotAllowed('GET', 'HEAD', 'POST'));

  async function loadHold(principal: Principal, id: string): Promise<HoldRow> {
    const hold = await holds.get(principal.tenant, id);
    if (!hold) throw new NotFoundError();
    return hold;
  }

  router
    .route('/holds/:id')
    .get(async (req, res) => {
      const { id } = parseOrThrow(holdPathParams, req.params, 'path parameters');
      const principal = await allow(res, 'holds:read');
      res.json(holdView(await loadHold(principal, id)));
    })
    .all(methodNotAllowed('GET', 'HEAD'));

  router
    .route('/holds/:id/release')
    .post(async (req, res) => {
      const { id } = parseOrThrow(holdPathParams, req.params, 'path parameters');
      const principal = await allow(res, 'holds:write');
      const body = parseOrThrow(releaseHoldBody, req.body ?? {}, 'body');
      await loadHold(principal, id);
      await holds.release(principal.tenant, id, body.reason, by(principal));
      res.json(holdView(await loadHold(principal, id)));
    })
    .all(methodNotAllowed('POST'));

  router
    .route('/holds/:id/approve')
    .post(async (req, res) => {
      const { id } = parseOrThrow(holdPathParams, req.params, 'path parameters');
      const principal = await allow(res, 'holds:write');
      const body = parseOrThrow(approveHoldBody, req.body ?? {}, 'body');
      await loadHold(principal, id);
      await holds.approve(principal.tenant, id, by(principal), body.note);
      res.json(holdView(await loadHold(principal, id)));
    })
    .all(methodNotAllowed('POST'));

  router
    .route('/privacy/settings')
    .get(async (_req, res) => {
      const principal = await allow(res, 'holds:read');
      res.json(settingsView(await holds.settings(principal.tenant)));
    })
    .post(async (req, res) => {
      const principal = await allow(res, 'holds:write');
      const body = parseOrThrow(privacySettingsBody, req.body ?? {}, 'body');
      res.json(settingsView(await holds.setTwoAdmin(principal.tenant, body.holds_two_admin, by(principal))));
    })
    .all(methodNotAllowed('GET', 'HEAD', 'POST'));
}
