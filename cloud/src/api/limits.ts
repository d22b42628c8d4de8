import type { ErrorRequestHandler, RequestHandler } from 'express';
import { Counter, type Registry } from 'prom-client';
import {
  BodyTooDeepError,
  HostileTextError,
  IdempotencyKeyInvalidError,
  InvalidCursorError,
  UnsupportedMediaTypeError,
  UriTooLongError,
  ValidationError,
  type FieldIssue,
} from './errors.js';
import { UNKNOWN_PARAMETER } from './events-query.js';

/*
 * Request limits of the /v1 API. Bad input ends as a problem+json 4xx before (or instead of) any handler, and
 * every such rejection is counted in vigil_cloud_api_rejected_total{reason}:
 *
 *   limit                              response   reason
 *   request target > API_MAX_URL_LENGTH   414     uri_too_long  (larger than Node's 16 KiB header limit:
 *                                                                Node itself answers 431, outside express)
 *   body > API_BODY_LIMIT (router.ts)     413     body_too_large
 *   body that is not JSON                 400     body_malformed
 *   JSON nested > API_MAX_JSON_DEPTH      400     body_too_deep
 *   charset other than UTF-8, or a body   415     unsupported_media_type
 *   other than JSON for a JSON route
 *   unknown query parameter / body field  400     unknown_parameter (zod strict objects; a route without a
 *                                                                query schema accepts no query at all, one
 *                                                                without a body schema no JSON body but {})
 *   limit above api.maxPageSize           400     page_size
 *   NUL, unpaired surrogate, 1e400, not   400     invalid_text  (anywhere: path, query, body; request-text.ts)
 *   UTF-8
 *   a cursor this API did not make        400     invalid_cursor (urn:vigil:problem:invalid-cursor)
 *   any other invalid parameter or field  400     invalid_parameter
 *   Idempotency-Key malformed / in use /  400/409/ idempotency_key_invalid / _in_use / _reused /
 *   reused / result not replayable        422/409  idempotent_result_unavailable
 */

/** Longest request target (path and query, as sent) the API reads. */
export const API_MAX_URL_LENGTH = 8192;

/** Deepest nesting of objects and arrays a JSON body may have (the top-level value is level 1). */
export const API_MAX_JSON_DEPTH = 32;

export const REJECTION_REASONS = [
  'uri_too_long',
  'body_too_large',
  'body_malformed',
  'body_too_deep',
  'unsupported_media_type',
  'unknown_parameter',
  'page_size',
  'invalid_text',
  'invalid_cursor',
  'invalid_parameter',
  'idempotency_key_invalid',
  'idempotency_key_in_use',
  'idempotency_key_reused',
  'idempotent_result_unavailable',
] as const;
export type RejectionReason = (typeof REJECTION_REASONS)[number];

/** `vigil_cloud_api_rejected_total{reason}`, every reason present from the start (at 0). */
export function rejectionCounter(metrics: Registry): Counter<'reason'> {
  const counter = new Counter({
    name: 'vigil_cloud_api_rejected_total',
    help: 'API requests refused for bad input (size, depth, URL length, parameters, Idempotency-Key), by reason',
    labelNames: ['reason'],
    registers: [metrics],
  });
  for (const reason of REJECTION_REASONS) counter.inc({ reason }, 0);
  return counter;
}

/** 414 for a request target longer than {@link API_MAX_URL_LENGTH}; runs before authentication. */
export function limitUrlLength(max = API_MAX_URL_LENGTH): RequestHandler {
  return (req, _res, next) => {
    next(req.originalUrl.length > max ? new UriTooLongError(max) : undefined);
  };
}

/** True when `value` nests objects/arrays deeper than `max` levels. Iterative: no recursion on hostile input. */
export function nestedDeeperThan(value: unknown, max: number): boolean {
  const stack: Array<{ v: object; depth: number }> = [];
  if (value !== null && typeof value === 'object') stack.push({ v: value, depth: 1 });
  while (stack.length > 0) {
    const { v, depth } = stack.pop()!;
    if (depth > max) return true;
    for (const child of Array.isArray(v) ? (v as unknown[]) : Object.values(v))
      if (child !== null && typeof child === 'object') stack.push({ v: child as object, depth: depth + 1 });
  }
  return false;
}

/** 400 for a parsed JSON body deeper than `max`; runs right after the body parser, before every route. */
export function limitJsonDepth(max = API_MAX_JSON_DEPTH): RequestHandler {
  return (req, _res, next) => {
    next(nestedDeeperThan(req.body, max) ? new BodyTooDeepError(max) : undefined);
  };
}

/** For a route that takes no query parameters: any parameter is unknown (400), like the strict query schemas. */
export const rejectQueryParameters: RequestHandler = (req, _res, next) => {
  const keys = Object.keys(req.query);
  if (keys.length === 0) {
    next();
    return;
  }
  const issues: FieldIssue[] = keys.map((k) => ({ path: k, message: UNKNOWN_PARAMETER }));
  next(new ValidationError(issues, 'The request has invalid query parameters.'));
};

/**
 * For a route that takes no body: a JSON body must be absent or `{}` (a member is unknown, 400, like the strict
 * body schemas); bodies of other media types are not read at all.
 */
export const rejectBodyFields: RequestHandler = (req, _res, next) => {
  const body: unknown = req.body;
  if (body === undefined || (isPlainObject(body) && Object.keys(body).length === 0)) {
    next();
    return;
  }
  const issues: FieldIssue[] = isPlainObject(body)
    ? Object.keys(body).map((k) => ({ path: k, message: UNKNOWN_PARAMETER }))
    : [{ path: '(body)', message: 'must be absent or {}: this operation takes no body' }];
  next(new ValidationError(issues, 'The request has an invalid body.'));
};

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * For a route with a JSON body schema: a body in another media type is a 415 (it would not be parsed, and the
 * route would run as if it had been sent `{}`).
 */
export const requireJsonBody: RequestHandler = (req, _res, next) => {
  next(
    hasBody(req) && req.is(['application/json', 'application/*+json']) === false
      ? new UnsupportedMediaTypeError('application/json')
      : undefined,
  );
};

/** As RFC 9112 says a request has a body: a Transfer-Encoding, or a Content-Length other than 0. */
function hasBody(req: Parameters<RequestHandler>[0]): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** Why a request was refused, or null for errors that are not about bad input (auth, 404, 5xx...). */
export function rejectionReason(err: unknown): RejectionReason | null {
  if (err instanceof UriTooLongError) return 'uri_too_long';
  if (err instanceof BodyTooDeepError) return 'body_too_deep';
  if (err instanceof IdempotencyKeyInvalidError) return 'idempotency_key_invalid';
  if (err instanceof InvalidCursorError) return 'invalid_cursor';
  if (err instanceof UnsupportedMediaTypeError) return 'unsupported_media_type';
  if (err instanceof HostileTextError) return 'invalid_text';
  if (err instanceof ValidationError) {
    if (err.issues.some((i) => i.message === UNKNOWN_PARAMETER)) return 'unknown_parameter';
    if (err.issues.some((i) => i.path === 'limit')) return 'page_size';
    return 'invalid_parameter';
  }
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'IDEMPOTENCY_KEY_IN_USE') return 'idempotency_key_in_use';
  if (code === 'IDEMPOTENCY_KEY_REUSED') return 'idempotency_key_reused';
  if (code === 'IDEMPOTENT_RESULT_UNAVAILABLE') return 'idempotent_result_unavailable';
  // express's body parser (http-errors)
  switch ((err as { type?: unknown } | null)?.type) {
    case 'entity.too.large':
      return 'body_too_large';
    case 'entity.parse.failed':
      return 'body_malformed';
    case 'encoding.invalid':
      return 'invalid_text';
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return 'unsupported_media_type';
    default:
      return null;
  }
}

/** Error middleware at the end of the API router: counts the rejection, then hands the error on. */
export function countRejections(counter: Counter<'reason'>): ErrorRequestHandler {
  return (err, _req, _res, next) => {
    const reason = rejectionReason(err);
    if (reason !== null) counter.inc({ reason });
    next(err);
  };
}
