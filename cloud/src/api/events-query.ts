import { z } from 'zod';
import type { EventCursor, EventFilter } from './event-store.js';
import { InvalidCursorError, ValidationError, type FieldIssue } from './errors.js';

/** Default page size of GET /v1/events. */
export const DEFAULT_PAGE_SIZE = 50;

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

/** Ids as the edge knows them (device, camera): subject-token safe, bounded. */
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

const exactTimestamp = /^(\d{4})-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const cursorSchema = z.strictObject({
  occurred_at: z.string().regex(exactTimestamp),
  event_id: eventIdParam,
});

/** What a cursor query parameter that this API did not make gets (api/errors.ts InvalidCursorError). */
export const INVALID_CURSOR = 'is not a cursor returned by this API';

/** Longest cursor text any list accepts. */
const MAX_CURSOR_LENGTH = 256;

/**
 * A `cursor` query parameter: `decode` returns null for anything it did not make, and must check every value
 * it decodes the way the database will read it (dates in range, ids well-formed), so that a forged cursor is
 * a 400 `invalid-cursor` (parseOrThrow), never a query PostgreSQL refuses.
 */
export function cursorParam<T>(decode: (text: string) => T | null) {
  return z.string().transform((text, ctx): T => {
    const value = text.length > MAX_CURSOR_LENGTH ? null : decode(text);
    if (value === null) {
      ctx.addIssue({ code: 'custom', message: INVALID_CURSOR });
      return z.NEVER;
    }
    return value;
  });
}

/** The JSON inside base64url cursor text, or undefined when it is not base64url of JSON. */
export function cursorJson(text: string): unknown {
  if (!/^[A-Za-z0-9_-]+$/.test(text)) return undefined;
  try {
    return JSON.parse(Buffer.from(text, 'base64url').toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

/** True when `s` (YYYY-MM-DDTHH:MM:SS.ffffffZ) names a real instant PostgreSQL stores: a real calendar date
 * and time of years 1 to 9999 (not 31 February, not hour 24). */
function isStorableInstant(s: string): boolean {
  const year = Number(exactTimestamp.exec(s)?.[1] ?? 0);
  if (year < 1) return false;
  const d = new Date(`${s.slice(0, 19)}Z`);
  return !Number.isNaN(d.getTime()) && d.toISOString().slice(0, 19) === s.slice(0, 19);
}

/** Cursors are base64url(JSON {occurred_at, event_id}) of the last item of a page. Opaque to clients. */
export function encodeCursor(c: EventCursor): string {
  return Buffer.from(JSON.stringify({ occurred_at: c.occurredAt, event_id: c.eventId })).toString(
    'base64url',
  );
}

/** Null for anything that is not a cursor this API made (wrong alphabet, JSON, fields, or an invalid time). */
export function decodeCursor(text: string): EventCursor | null {
  if (text.length > MAX_CURSOR_LENGTH) return null;
  const parsed = cursorSchema.safeParse(cursorJson(text));
  if (!parsed.success || !isStorableInstant(parsed.data.occurred_at)) return null;
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
      cursor: cursorParam(decodeCursor).optional(),
    })
    .superRefine((q, ctx) => {
      if (q.since !== undefined && q.until !== undefined && Date.parse(q.since) >= Date.parse(q.until))
        ctx.addIssue({ code: 'custom', path: ['until'], message: 'must be later than since' });
    })
    .transform((q): EventFilter => ({
      site: q.site,
      device: q.device,
      camera: q.camera,
      label: q.label,
      since: q.since === undefined ? undefined : new Date(q.since),
      until: q.until === undefined ? undefined : new Date(q.until),
      after: q.cursor,
      limit: q.limit ?? defaultLimit,
    }));
}

/** The message of an unknown query parameter or body field (api/limits.ts counts these apart). */
export const UNKNOWN_PARAMETER = 'is not a known parameter';

/**
 * zod issues -> problem `errors` entries, named by dotted path; `root` names the input itself (`(query)`,
 * `(body)`). An unknown member is named with its object's path.
 */
export function issuesOf(error: z.ZodError, root = '(query)'): FieldIssue[] {
  const name = (path: readonly PropertyKey[]): string =>
    path.length === 0 ? root : path.map(String).join('.');
  return error.issues.flatMap((i): FieldIssue[] => {
    if (i.code === 'unrecognized_keys')
      return i.keys.map((k) => ({ path: name([...i.path, k]), message: UNKNOWN_PARAMETER }));
    // A repeated parameter (?device=a&device=b) arrives as an array: say so instead of "expected string".
    const message =
      root === '(query)' && i.code === 'invalid_type' && i.expected === 'string'
        ? 'must be given once, as a string'
        : i.message;
    return [{ path: name(i.path), message }];
  });
}

/** Parses with `schema` or throws a ValidationError listing every issue (InvalidCursorError for a bad cursor). */
export function parseOrThrow<S extends z.ZodType>(schema: S, input: unknown, what: string): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const root = what === 'body' ? '(body)' : what === 'path parameters' ? '(path)' : '(query)';
  const issues = issuesOf(result.error, root);
  if (issues.some((i) => i.message === INVALID_CURSOR)) throw new InvalidCursorError(issues);
  throw new ValidationError(issues, `The request has invalid ${what}.`);
}
