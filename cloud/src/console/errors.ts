import { VigilError } from '../lib/errors.js';

/** A state-changing console request without a valid CSRF token or from a foreign Origin: HTTP 403. */
export class CsrfError extends VigilError {
  constructor(readonly reason: 'origin' | 'token') {
    super(
      'CSRF_REFUSED',
      `The request was refused: ${reason === 'origin' ? 'foreign or missing Origin' : 'missing or invalid CSRF token'}.`,
      false,
    );
  }
}

/** The OpenID Connect login failed (state, PKCE, token or claims): HTTP 401, the user may start again. */
export class LoginError extends VigilError {
  constructor(
    readonly reason: 'state' | 'exchange' | 'claims' | 'provider',
    message: string,
    options?: { cause?: unknown },
  ) {
    super('LOGIN_FAILED', message, reason === 'provider', options);
  }
}
