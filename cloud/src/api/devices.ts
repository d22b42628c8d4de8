import type { Router } from 'express';
import type { Logger } from 'pino';
import type { Authorizer } from '../auth/authorize.js';
import { principalOf, requireAllowed } from './authenticate.js';
import type { DeviceReader } from './device-store.js';
import { devicePathParams, encodeDeviceCursor, listDevicesQuerySchema } from './devices-query.js';
import { NotFoundError } from './errors.js';
import { parseOrThrow } from './events-query.js';
import { methodNotAllowed } from './problem.js';

export interface DeviceRoutesDeps {
  devices: DeviceReader;
  authorizer: Authorizer;
  log: Logger;
  maxPageSize: number;
}

/** GET /devices (by id, filters, cursor) and GET /devices/:id, always inside the caller's tenant. */
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
      res.json(device);
    })
    .all(methodNotAllowed('GET', 'HEAD'));
}
