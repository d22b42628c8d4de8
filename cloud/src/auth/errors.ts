import { VigilError } from '../lib/errors.js';

/**
 * Bounded set of reasons a bearer token was refused. They go to logs and metrics only: the client always
 * gets the same generic 401, so a caller cannot probe which check failed.
 */
export type AuthFailureReason =
  | 'missing'
  | 'malformed'
  | 'algorithm'
  | 'signature'
  | 'unknown_key'
  | 'expired'
  | 'claims'
  | 'lifetime'
  | 'other';

/** No usable bearer token (HTTP 401). The message is deliberately generic; `reason` is for the logs. */
export class AuthenticationError extends VigilError {
  constructor(
    readonly reason: AuthFailureReason,
    /** What exactly failed, for the server log only (never sent to the client). */
    readonly logDetail: string,
    options?: { cause?: unknown },
  ) {
    super('UNAUTHENTICATED', 'missing or invalid bearer token', false, options);
  }
}

/** The caller is authenticated but no policy allows the action (HTTP 403). */
export class AccessDeniedError extends VigilError {
  constructor(message = 'not allowed', options?: { cause?: unknown }) {
    super('FORBIDDEN', message, false, options);
  }
}

/** The keys that verify tokens cannot be fetched right now (remote JWKS down): HTTP 503, retryable. */
export class KeySourceUnavailableError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('UNAVAILABLE', message, true, options);
  }
}
