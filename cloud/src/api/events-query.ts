import { z } from 'zod';
import type { EventCursor, EventFilter } from './event-store.js';
import { ValidationError, type FieldIssue } from './errors.js';

/** Default page size of GET /v1/events. */
export const DEFAULT_PAGE_SIZE = 50;

/** Ids as the edge knows them (device, camera): subject-token safe, bounded. */
/** A page size from the query string: 1..maxPageSize; a larger value is a 400, never silently clamped. */
export function limitParam(maxPageSize: number) {
  return z
    .string()
    .regex(/^\d{1,6}$/, `must be an integer from 1 to ${maxPageSize}`)
    .transform(Number)
    .pipe(
      z
        .number()
        .int()
        .min(1, `must be an integer from 1 to ${maxPageSize}`)
        .max(maxPageSize, `must be at most ${maxPageSize}`),
    );
}

export const idParam = z.string().regex(/^[A-Za-z0-9_-]{1,63}$/, 'must be 1-63 letters, digits, - or _');
const labelParam = z.string().min(1).max(128);
const rfc3339 = z.iso.datetime({
  offset: true,
  error: 'must be an RFC 3339 date-time, e.g. 2026-01-31T12:00:00Z',
});

/** Any RFC 9562 textual UUID (ids from the edge are v7; older or foreign ids may be other versions). */
export const eventIdParam = z
  .string()
  .regex(/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/, 'must be a UUID')
  .transform((s) => s.toLowerCase());

const exactTimestamp = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const cursorSchema = z.strictObject({
  occurred_at: z.string().regex(exactTimestamp),
  event_id: eventIdParam,
});

/** Cursors are base64url(JSON {occurred_at, event_id}) of the last item of a page. Opaque to clients. */
export function encodeCursor(c: EventCursor): string {
  return Buffer.from(JSON.stringify({ occurred_at: c.occurredAt, event_id: c.eventId })).toString(
    'base64url',
  );
}

/** Null for anything that is not a cursor this API made (wrong alphabet, JSON, fields, or an invalid time). */
export function decodeCursor(text: string): EventCursor | null {
  if (text.length > 256 || !/^[A-Za-z0-9_-]+$/.test(text)) return null;
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    return null;
  }
  const parsed = cursorSchema.safeParse(json);
  if (!parsed.success || Number.isNaN(Date.parse(parsed.data.occurred_at))) return null;
  return { occurredAt: parsed.data.occurred_at, eventId: parsed.data.event_id };
}

/** Query schema of GET /v1/events. Unknown parameters are refused (a typo must not silently widen a query). */
export function listEventsQuerySchema(maxPageSize: number) {
  const defaultLimit = Math.min(DEFAULT_PAGE_SIZE, maxPageSize);
  return z
    .strictObject({
      site: idParam.optional(),
      device: idParam.optional(),
      camera: idParam.optional(),
      label: labelParam.optional(),
      since: rfc3339.optional(),
      until: rfc3339.optional(),
      limit: limitParam(maxPageSize).optional(),
      cursor: z.string().optional(),
    })
    .superRefine((q, ctx) => {
      if (q.since !== undefined && q.until !== undefined && Date.parse(q.since) >= Date.parse(q.until))
        ctx.addIssue({ code: 'custom', path: ['until'], message: 'must be later than since' });
      if (q.cursor !== undefined && decodeCursor(q.cursor) === null)
        ctx.addIssue({ code: 'custom', path: ['cursor'], message: 'is not a cursor returned by this API' });
    })
    .transform((q): EventFilter => ({
      site: q.site,
      device: q.device,
      camera: q.camera,
      label: q.label,
      since: q.since === undefined ? undefined : new Date(q.since),
      until: q.until === undefined ? undefined : new Date(q.until),
      after: q.cursor === undefined ? undefined : (decodeCursor(q.cursor) ?? undefined),
      limit: q.limit ?? defaultLimit,
    }));
}

/** The message of an unknown query parameter or body field (api/limits.ts counts these apart). */
export const UNKNOWN_PARAMETER = 'is not a known parameter';

/** zod issues -> problem `errors` entries. Query parameters are named by their key. */
export function issuesOf(error: z.ZodError): FieldIssue[] {
  return error.issues.flatMap((i): FieldIssue[] => {
    if (i.code === 'unrecognized_keys') return i.keys.map((k) => ({ path: k, message: UNKNOWN_PARAMETER }));
    const path = i.path.map(String).join('.');
    // A repeated parameter (?device=a&device=b) arrives as an array: say so instead of "expected string".
    const message =
      i.code === 'invalid_type' && i.expected === 'string' ? 'must be given once, as a string' : i.message;
    return [{ path: path === '' ? '(query)' : path, message }];
  });
}

/** Parses with `schema` or throws a ValidationError listing every issue. */
export function parseOrThrow<S extends z.ZodType>(schema: S, input: unknown, what: string): z.output<S> {
  const result = schema.safeParse(input);
  if (!result.success) throw new ValidationError(issuesOf(result.error), `The request has invalid ${what}.`);
  return result.data;
}
