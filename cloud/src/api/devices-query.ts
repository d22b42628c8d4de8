import { z } from 'zod';
import { DEVICE_STATUSES } from '../fleet/status.js';
import type { DeviceFilter } from './device-store.js';
import { cursorJson, cursorParam, DEFAULT_PAGE_SIZE, idParam, limitParam } from './events-query.js';

const cursorSchema = z.strictObject({ id: idParam });

/** Cursors are base64url(JSON {id}) of the last device of a page. Opaque to clients. */
export function encodeDeviceCursor(id: string): string {
  return Buffer.from(JSON.stringify({ id })).toString('base64url');
}

/** Null for anything that is not a cursor this API made. */
export function decodeDeviceCursor(text: string): string | null {
  const parsed = cursorSchema.safeParse(cursorJson(text));
  return parsed.success ? parsed.data.id : null;
}

export const devicePathParams = z.strictObject({ id: idParam });

/** Query schema of GET /v1/devices. Unknown parameters are refused. */
export function listDevicesQuerySchema(maxPageSize: number) {
  const defaultLimit = Math.min(DEFAULT_PAGE_SIZE, maxPageSize);
  return z
    .strictObject({
      site: idParam.optional(),
      status: z.enum(DEVICE_STATUSES, { error: `must be one of ${DEVICE_STATUSES.join(', ')}` }).optional(),
      limit: limitParam(maxPageSize).optional(),
      cursor: cursorParam(decodeDeviceCursor).optional(),
    })
    .transform((q): DeviceFilter => ({
      site: q.site,
      status: q.status,
      after: q.cursor,
      limit: q.limit ?? defaultLimit,
    }));
}
