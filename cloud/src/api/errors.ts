import { VigilError } from '../lib/errors.js';

export interface FieldIssue {
  /** Where the problem is: a query parameter name, or a dotted path into the body. */
  path: string;
  message: string;
}

/** The request is malformed (HTTP 400); `issues` lists every problem, one per field. */
export class ValidationError extends VigilError {
  constructor(
    readonly issues: readonly FieldIssue[],
    message = 'The request has invalid parameters.',
    code = 'VALIDATION_FAILED',
  ) {
    super(code, message, false);
  }
}

/** Text no route accepts (NUL, an unpaired surrogate, a non-finite number: api/request-text.ts), HTTP 400. */
export class HostileTextError extends ValidationError {
  constructor(issues: readonly FieldIssue[]) {
    super(issues, 'The request holds text the API does not accept.');
  }
}

/** A pagination cursor this API did not make, or made for another list (HTTP 400, `invalid-cursor`). */
export class InvalidCursorError extends ValidationError {
  constructor(issues: readonly FieldIssue[]) {
    super(
      issues,
      'The cursor is not one this API returned; start again from the first page.',
      'INVALID_CURSOR',
    );
  }
}

/** Nothing here, or nothing the caller may know about (HTTP 404). */
export class NotFoundError extends VigilError {
  constructor(message = 'The requested resource does not exist.') {
    super('NOT_FOUND', message, false);
  }
}

/** The route exists but not for this method (HTTP 405 with `Allow`). */
export class MethodNotAllowedError extends VigilError {
  constructor(readonly allow: readonly string[]) {
    super('METHOD_NOT_ALLOWED', `This resource supports ${allow.join(', ')}.`, false);
  }
}

/** Too many requests (HTTP 429); `retryAfterSeconds` becomes the `Retry-After` header. */
export class RateLimitedError extends VigilError {
  constructor(
    readonly retryAfterSeconds: number,
    message = 'Too many requests: the rate limit is exceeded.',
  ) {
    super('RATE_LIMITED', message, true);
  }
}

/** The request target (path and query) is longer than the API reads (HTTP 414). */
export class UriTooLongError extends VigilError {
  constructor(readonly maxLength: number) {
    super('URI_TOO_LONG', `The request URL is longer than ${maxLength} characters.`, false);
  }
}

/** A JSON body nested deeper than the API accepts (HTTP 400, before any handler sees it). */
export class BodyTooDeepError extends ValidationError {
  constructor(readonly maxDepth: number) {
    super(
      [{ path: '(body)', message: `is nested deeper than ${maxDepth} levels` }],
      `The request body is nested deeper than ${maxDepth} levels.`,
    );
  }
}

/** A malformed `Idempotency-Key` header (HTTP 400). */
export class IdempotencyKeyInvalidError extends ValidationError {
  constructor(message: string) {
    super([{ path: 'Idempotency-Key', message }], 'The Idempotency-Key header is invalid.');
  }
}

/** A request with this Idempotency-Key is still being processed (HTTP 409, retry later). */
export class IdempotencyKeyInUseError extends VigilError {
  constructor() {
    super(
      'IDEMPOTENCY_KEY_IN_USE',
      'A request with this Idempotency-Key is still being processed; retry later.',
      true,
    );
  }
}

/** The Idempotency-Key was used before for a different request payload (HTTP 422). */
export class IdempotencyKeyReusedError extends VigilError {
  constructor() {
    super(
      'IDEMPOTENCY_KEY_REUSED',
      'This Idempotency-Key was already used for a request with a different body; use a new key for a new request.',
      false,
    );
  }
}

/** The request with this key completed, but its response is not kept for replay (HTTP 409). */
export class IdempotentResultUnavailableError extends VigilError {
  constructor(message: string) {
    super('IDEMPOTENT_RESULT_UNAVAILABLE', message, false);
  }
}

/** A body in a media type the operation does not read (HTTP 415). */
export class UnsupportedMediaTypeError extends VigilError {
  constructor(expected: string) {
    super('UNSUPPORTED_MEDIA_TYPE', `The request body must be ${expected}.`, false);
  }
}
