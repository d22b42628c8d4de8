import { STATUS_CODES } from 'node:http';
import type { ErrorRequestHandler, Request, RequestHandler } from 'express';
import type { Logger } from 'pino';
import { AuthenticationError } from '../auth/errors.js';
import { VigilError } from '../lib/errors.js';
import {
  MethodNotAllowedError,
  NotFoundError,
  RateLimitedError,
  ValidationError,
  type FieldIssue,
} from './errors.js';

/*
 * The one place where errors become HTTP responses: RFC 9457 problem details (application/problem+json).
 * Handlers throw VigilErrors with a stable code; this maps the code to a status. Anything else is a 500
 * whose details stay in the server log.
 */

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** RFC 9457 problem details, plus `errors` for validation problems. */
export interface ProblemDetails {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  errors?: FieldIssue[];
}

interface ProblemKind {
  status: number;
  slug: string;
  title: string;
}

/** VigilError code -> HTTP status, problem type and title. */
export const PROBLEM_KINDS: Readonly<Record<string, ProblemKind>> = {
  VALIDATION_FAILED: { status: 400, slug: 'invalid-request', title: 'Invalid request' },
  // A forged or garbled pagination cursor: the client should start over from the first page.
  INVALID_CURSOR: { status: 400, slug: 'invalid-cursor', title: 'Invalid cursor' },
  UNAUTHENTICATED: { status: 401, slug: 'unauthenticated', title: 'Authentication required' },
  FORBIDDEN: { status: 403, slug: 'forbidden', title: 'Forbidden' },
  NOT_FOUND: { status: 404, slug: 'not-found', title: 'Not found' },
  METHOD_NOT_ALLOWED: { status: 405, slug: 'method-not-allowed', title: 'Method not allowed' },
  PAYLOAD_TOO_LARGE: { status: 413, slug: 'payload-too-large', title: 'Payload too large' },
  URI_TOO_LONG: { status: 414, slug: 'uri-too-long', title: 'URI too long' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, slug: 'unsupported-media-type', title: 'Unsupported media type' },
  // Idempotency-Key (api/idempotency.ts; draft-ietf-httpapi-idempotency-key-header): 409 while the first
  // request runs, 422 for the same key with another payload.
  IDEMPOTENCY_KEY_IN_USE: { status: 409, slug: 'idempotency-key-in-use', title: 'Request in progress' },
  IDEMPOTENT_RESULT_UNAVAILABLE: {
    status: 409,
    slug: 'idempotent-result-unavailable',
    title: 'Result not replayable',
  },
  IDEMPOTENCY_KEY_REUSED: { status: 422, slug: 'idempotency-key-reused', title: 'Idempotency key reused' },
  // A rollout operation its state does not allow (pause a completed rollout, ...).
  ROLLOUT_STATE_CONFLICT: { status: 409, slug: 'rollout-state-conflict', title: 'Rollout state conflict' },
  // An agent-version rollout whose release is not published, or whose devices cannot upgrade to it (rollouts/agent-check.ts).
  AGENT_ROLLOUT_REFUSED: { status: 422, slug: 'agent-rollout-refused', title: 'Agent rollout refused' },
  // Media deleted by retention or an erasure request: the tombstone answers, not a 404.
  MEDIA_GONE: { status: 410, slug: 'media-gone', title: 'Media deleted' },
  // Erasure of media under an active legal hold (media/holds.ts).
  MEDIA_HELD: { status: 409, slug: 'media-held', title: 'Media under legal hold' },
  // Legal holds and retention policies (privacy/).
  HOLD_REASON_REQUIRED: { status: 400, slug: 'invalid-request', title: 'Invalid request' },
  HOLD_INVALID: { status: 400, slug: 'invalid-request', title: 'Invalid request' },
  HOLD_NOT_FOUND: { status: 404, slug: 'not-found', title: 'Not found' },
  HOLD_STATE_CONFLICT: { status: 409, slug: 'hold-state-conflict', title: 'Legal hold state conflict' },
  HOLD_SAME_ADMIN: {
    status: 409,
    slug: 'hold-needs-another-admin',
    title: 'The approval must come from another admin',
  },
  HOLD_LIMIT: { status: 409, slug: 'hold-limit', title: 'Too many legal holds' },
  RETENTION_POLICY_LIMIT: {
    status: 409,
    slug: 'retention-policy-limit',
    title: 'Too many retention policies',
  },
  // An evidence export whose scope is over config privacy.export limits (privacy/export.ts).
  EXPORT_TOO_LARGE: { status: 422, slug: 'export-too-large', title: 'Export scope too large' },
  // Release metadata (releases/): signed by a key root does not list, or not the next version.
  RELEASE_SIGNATURE_INVALID: {
    status: 422,
    slug: 'release-signature-invalid',
    title: 'Release metadata not signed by a trusted key',
  },
  RELEASE_VERSION_CONFLICT: {
    status: 409,
    slug: 'release-version-conflict',
    title: 'Release version conflict',
  },
  RELEASE_REPOSITORY_NOT_INITIALIZED: {
    status: 409,
    slug: 'release-repository-not-initialized',
    title: 'Release repository has no root yet',
  },
  KEY_INVALID: { status: 400, slug: 'invalid-request', title: 'Invalid request' },
  RATE_LIMITED: { status: 429, slug: 'rate-limited', title: 'Too many requests' },
  UNAVAILABLE: { status: 503, slug: 'unavailable', title: 'Service unavailable' },
  INTERNAL: { status: 500, slug: 'internal', title: 'Internal server error' },
  // Consumed by enrollment (gRPC today); mapped here so it can never surface as a 500.
  ENROLLMENT_TOKEN_INVALID: {
    status: 403,
    slug: 'enrollment-token-invalid',
    title: 'Enrollment token invalid',
  },
};

/** Problem type URIs are stable identifiers (not links): `urn:vigil:problem:<slug>`. */
export const problemType = (slug: string): string => `urn:vigil:problem:${slug}`;

/** The realm in every WWW-Authenticate challenge. */
export const AUTH_REALM = 'vigil';

export interface HttpProblem {
  problem: ProblemDetails;
  headers: Record<string, string>;
  /** True when the error is ours to fix (5xx, unknown error): log it with its stack. */
  internal: boolean;
}

/** Errors from express's body parser (http-errors): a `type` and a client status. */
function bodyParserCode(err: unknown): { code: string; detail: string; issue?: FieldIssue } | null {
  const e = err as { type?: unknown; status?: unknown; expose?: unknown } | null;
  if (!e || typeof e.type !== 'string' || typeof e.status !== 'number') return null;
  switch (e.type) {
    case 'entity.too.large':
      return { code: 'PAYLOAD_TOO_LARGE', detail: 'The request body is larger than this endpoint accepts.' };
    case 'entity.parse.failed':
      // Named like every other invalid field; the parser's message (a position) says no more than that.
      return {
        code: 'VALIDATION_FAILED',
        detail: 'The request body is not valid JSON.',
        issue: { path: '(body)', message: 'is not valid JSON' },
      };
    case 'encoding.invalid': // api/request-text.ts requireUtf8Body
      return {
        code: 'VALIDATION_FAILED',
        detail: 'The request body is not valid UTF-8.',
        issue: { path: '(body)', message: 'is not valid UTF-8' },
      };
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return { code: 'UNSUPPORTED_MEDIA_TYPE', detail: 'The request body encoding is not supported.' };
    default:
      return null;
  }
}

/** Maps any thrown value to a problem; pure, so that it is unit-testable. */
export function toProblem(err: unknown, instance?: string): HttpProblem {
  const headers: Record<string, string> = {};
  const build = (code: string, detail: string | undefined, internal = false): HttpProblem => {
    const kind = PROBLEM_KINDS[code] ?? PROBLEM_KINDS.INTERNAL!;
    const problem: ProblemDetails = { type: problemType(kind.slug), title: kind.title, status: kind.status };
    if (detail !== undefined) problem.detail = detail;
    if (instance !== undefined) problem.instance = instance;
    return { problem, headers, internal: internal || kind.status >= 500 };
  };

  if (err instanceof VigilError) {
    if (err instanceof ValidationError) {
      const p = build(err.code, err.message);
      p.problem.errors = err.issues.map((i) => ({ path: i.path, message: i.message }));
      return p;
    }
    if (err instanceof AuthenticationError) {
      // RFC 6750 section 3.1: no error code when the request carried no credentials at all.
      headers['WWW-Authenticate'] =
        err.reason === 'missing'
          ? `Bearer realm="${AUTH_REALM}"`
          : `Bearer realm="${AUTH_REALM}", error="invalid_token", error_description="The access token is invalid"`;
      return build(err.code, 'A valid bearer token is required.');
    }
    if (err instanceof MethodNotAllowedError) headers.Allow = err.allow.join(', ');
    if (err instanceof RateLimitedError) headers['Retry-After'] = String(err.retryAfterSeconds);
    else if (err.code === 'UNAVAILABLE' || err.code === 'RATE_LIMITED') headers['Retry-After'] = '5';
    else if (err.code === 'IDEMPOTENCY_KEY_IN_USE') headers['Retry-After'] = '1';
    if (err.code in PROBLEM_KINDS && err.code !== 'INTERNAL') {
      const status = PROBLEM_KINDS[err.code]!.status;
      // 5xx details may name internals: keep them in the log.
      return build(err.code, status >= 500 ? 'Please retry later.' : err.message);
    }
    return build('INTERNAL', 'An unexpected error occurred.', true);
  }
  const parsed = bodyParserCode(err);
  if (parsed) {
    const p = build(parsed.code, parsed.detail);
    if (parsed.issue) p.problem.errors = [parsed.issue];
    return p;
  }
  // A path segment that is not percent-encoded UTF-8 (%FF, an encoded surrogate): express's router throws a
  // URIError marked 400 while matching, before any route runs.
  if (err instanceof URIError && (err as { status?: unknown }).status === 400) {
    const p = build('VALIDATION_FAILED', 'The request path could not be decoded.');
    p.problem.errors = [{ path: '(path)', message: 'is not valid percent-encoded UTF-8' }];
    return p;
  }
  // Other client errors raised by express itself (e.g. a malformed percent-encoding in the path).
  const e = err as { status?: unknown; expose?: unknown } | null;
  if (e && typeof e.status === 'number' && e.status >= 400 && e.status < 500 && e.expose === true) {
    const p = build('VALIDATION_FAILED', 'The request could not be understood.');
    p.problem.status = e.status;
    p.problem.title = STATUS_CODES[e.status] ?? 'Bad request';
    return p;
  }
  return build('INTERNAL', 'An unexpected error occurred.', true);
}

/** The request path without the query string (no secrets there today, but a query is not an identifier). */
function instanceOf(req: Request): string {
  const url = req.originalUrl || req.url;
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/** Express error middleware: the single mapping from errors to problem+json responses. */
export function problemErrorHandler(log: Logger): ErrorRequestHandler {
  return (err, req, res, next) => {
    if (res.headersSent) {
      next(err);
      return;
    }
    const { problem, headers, internal } = toProblem(err, instanceOf(req));
    if (internal) log.error({ err, method: req.method, path: problem.instance }, 'request failed');
    else log.debug({ status: problem.status, method: req.method, path: problem.instance }, problem.title);
    res.status(problem.status).set(headers).type(PROBLEM_CONTENT_TYPE).json(problem);
  };
}

/** Last route: everything unmatched is a 404 problem. */
export const notFoundHandler: RequestHandler = (_req, _res, next) => {
  next(new NotFoundError());
};

/** For `router.route(...).all(...)` after the supported methods. */
export function methodNotAllowed(...allow: string[]): RequestHandler {
  return (_req, _res, next) => {
    next(new MethodNotAllowedError(allow));
  };
}
