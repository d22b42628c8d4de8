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
  ) {
    super('VALIDATION_FAILED', message, false);
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
