import type { Router } from 'express';
import { z } from 'zod';
import type { Logger } from 'pino';
import type { AuditLog } from '../audit/audit-log.js';
import type { Authorizer } from '../auth/authorize.js';
import type { Principal } from '../auth/principal.js';
import { principalOf, requireAllowed, requireVisible } from './authenticate.js';
import type { DeviceRevoker } from '../fleet/revocation.js';
import type { DeviceReader } from './device-store.js';
import { devicePathParams, encodeDeviceCursor, listDevicesQuerySchema } from './devices-query.js';
import { NotFoundError } from './errors.js';
import { parseOrThrow } from './events-query.js';
import { methodNotAllowed } from './problem.js';
import type { revokeResultSchema } from './views.js';

/** Body of POST /v1/devices/:id/revoke: why (kept with the device and in the log). */
export const revokeBody = z.strictObject({ reason: z.string().trim().min(1).max(500) });

export interface DeviceRoutesDeps {
  devices: DeviceReader;
  revoker: DeviceRevoker;
  /** Records denied revocations (the revoker records the revocations themselves). */
  audit?: AuditLog | undefined;
  authorizer: Authorizer;
  log: Logger;
  maxPageSize: number;
}

/**
 * GET /devices (by id, filters, cursor), GET /devices/:id and POST /devices/:id/revoke, always inside the
 * caller's tenant. A site-scoped caller lists with `?site=` (one of its sites) and sees and revokes devices of
 * its sites only (another site's device is a 404, like a missing one).
 */
export function mountDeviceRoutes(router: Router, deps: DeviceRoutesDeps): void {
  const listQuery = listDevicesQuerySchema(deps.maxPageSize);

  router
    .route('/devices')
    .get(async (req, res) => {
      const filter = parseOrThrow(listQuery, req.query, 'query parameters');
      const principal = principalOf(res);
      await requireAllowed(deps.authorizer, deps.log, principal, 'devices:read', {
        type: 'devices',
        tenant: principal.tenant,
        site: filter.site,
      });
      const page = await deps.devices.list(principal.tenant, filter);
      res.json({
        items: page.items,
        next_cursor: page.next === null ? null : encodeDeviceCursor(page.next),
      });
    })
    .all(methodNotAllowed('GET', 'HEAD'));

  router
    .route('/devices/:id')
    .get(async (req, res) => {
      const { id } = parseOrThrow(devicePathParams, req.params, 'path parameters');
      const principal = principalOf(res);
      await requireAllowed(deps.authorizer, deps.log, principal, 'devices:read', {
        type: 'device',
        tenant: principal.tenant,
        id,
      });
      // Another tenant's device and a missing one are the same 404: existence is never revealed.
      const device = await deps.devices.get(principal.tenant, id);
      if (device === null) throw new NotFoundError();
      // Asked again with the device's site; a deny is the same 404.
      await requireVisible(deps.authorizer, deps.log, principal, 'devices:read', {
        type: 'device',
        tenant: principal.tenant,
        id,
        site: device.site_id,
      });
      res.json(device);
    })
    .all(methodNotAllowed('GET', 'HEAD'));

  router
    .route('/devices/:id/revoke')
    .post(async (req, res) => {
      res.status(200).json(await revokeDevice(deps, principalOf(res), req.params, req.body));
    })
    .all(methodNotAllowed('POST'));
}

/**
 * Revokes a device of the caller's tenant (POST /v1/devices/{id}/revoke, and the console): `devices:revoke` asked
 * first and again with the device's site (denials audited; another site's device is a 404), then the revoker.
 */
export async function revokeDevice(
  deps: Pick<DeviceRoutesDeps, 'devices' | 'revoker' | 'audit' | 'authorizer' | 'log'>,
  principal: Principal,
  rawParams: unknown,
  rawBody: unknown,
): Promise<z.output<typeof revokeResultSchema>> {
  const { id } = parseOrThrow(devicePathParams, rawParams, 'path parameters');
  await requireAllowed(
    deps.authorizer,
    deps.log,
    principal,
    'devices:revoke',
    { type: 'device', tenant: principal.tenant, id },
    deps.audit,
  );
  const body = parseOrThrow(revokeBody, rawBody ?? {}, 'body');
  // Asked again with the device's site (a deny is audited, and a 404 like a missing device).
  const device = await deps.devices.get(principal.tenant, id);
  if (device === null) throw new NotFoundError();
  await requireVisible(
    deps.authorizer,
    deps.log,
    principal,
    'devices:revoke',
    { type: 'device', tenant: principal.tenant, id, site: device.site_id },
    deps.audit,
  );
  const outcome = await deps.revoker.revoke({
    tenantId: principal.tenant,
    deviceId: id,
    by: principal.subject,
    reason: body.reason,
  });
  if (outcome.result === 'missing') throw new NotFoundError();
  return {
    device_id: id,
    result: outcome.result,
    revoked_at: outcome.revokedAt.toISOString(),
    revoked_by: outcome.revokedBy,
    reason: outcome.reason,
    certificates_revoked: outcome.certificates,
    nats: outcome.nats,
  };
}
