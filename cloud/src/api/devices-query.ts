import { z } from 'zod';
import { DEVICE_STATUSES } from '../fleet/status.js';
import type { DeviceFilter } from './device-store.js';
import { DEFAULT_PAGE_SIZE, idParam, limitParam } from './events-query.js';

const cursorSchema = z.strictObject({ id: idParam });

/** Cursors are base64url(JSON {id}) of the last device of a page. Opaque to clients. */
export function encodeDeviceCursor(id: string): string {
  return Buffer.from(JSON.stringify({ id })).toString('base64url');
}

/** Null for anything that is not a cursor this API made. */
export function decodeDeviceCursor(text: string): string | null {
  if (text.length > 256 || !/^[A-Za-z0-9_-]+$/.test(text)) return null;
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    return null;
  }
  const parsed = cursorSchema.safeParse(json);
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
      cursor: z.string().optional(),
    })
    .superRefine((q, ctx) => {
      if (q.cursor !== undefined && decodeDeviceCursor(q.cursor) === null)
        ctx.addIssue({ code: 'custom', path: ['cursor'], message: 'is not a cursor returned by this API' });
    })
    .transform((q): DeviceFilter => ({
      site: q.site,
      status: q.status,
      after: q.cursor === undefined ? undefined : (decodeDeviceCursor(q.cursor) ?? undefined),
      limit: q.limit ?? defaultLimit,
    }));
}
