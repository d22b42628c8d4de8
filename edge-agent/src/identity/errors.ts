/**
 * Errors of the device identity capability (enrollment, the identity store, renewal). Each message says what
 * the installer or operator does next: these errors end up on a terminal during `vigil-agent enroll` or in the
 * agent's log on a box nobody is looking at.
 */

export type IdentityErrorCode =
  | 'DEVICE_ID_INVALID' // the device id the installer asked for cannot be an id (client-side check)
  | 'ENROLL_TOKEN_INVALID' // Enroll: UNAUTHENTICATED (token unknown, expired or already used)
  | 'ENROLL_REJECTED' // Enroll: INVALID_ARGUMENT (CSR, key, subject or NATS key refused)
  | 'DEVICE_EXISTS' // Enroll: ALREADY_EXISTS (the id is taken in the token's tenant)
  | 'DEVICE_REVOKED' // Renew: PERMISSION_DENIED (an admin revoked the device)
  | 'CERT_REJECTED' // Renew: UNAUTHENTICATED (client cert missing, expired or from another CA)
  | 'RENEW_REJECTED' // Renew: INVALID_ARGUMENT (our CSR or NATS key refused: a bug on one side)
  | 'CLOUD_UNAVAILABLE' // UNAVAILABLE, DEADLINE_EXCEEDED, connection or TLS failures
  | 'CLOUD_ERROR' // any other gRPC status (INTERNAL, UNKNOWN, RESOURCE_EXHAUSTED, ...)
  | 'CLOUD_RESPONSE_INVALID' // the cloud answered, but with credentials that do not fit our keys or request
  | 'IDENTITY_EXISTS' // enroll without --force into a directory that already holds an identity
  | 'IDENTITY_INVALID' // the stored identity cannot be used (unreadable, mismatched key, bad mode, ...)
  | 'NOT_ENROLLED'; // renewal or start-up needs an identity and there is none

/** Worth trying again later with the same inputs (the renewer backs off; enroll says "try again"). */
const RETRYABLE: ReadonlySet<IdentityErrorCode> = new Set(['CLOUD_UNAVAILABLE', 'CLOUD_ERROR']);

export class IdentityError extends Error {
  override readonly name = 'IdentityError';
  readonly retryable: boolean;
  /**
   * The cloud's own words (gRPC status details), when the message already says what they mean in the
   * installer's terms: kept for logs, left out of the message so it does not say the same thing twice.
   */
  readonly cloudSaid: string | undefined;
  constructor(
    readonly code: IdentityErrorCode,
    message: string,
    options?: { cause?: unknown; cloudSaid?: string },
  ) {
    super(message, options);
    this.retryable = RETRYABLE.has(code);
    this.cloudSaid = options?.cloudSaid;
  }
}

/** Device ids as the cloud accepts them: 1-63 of [a-z0-9_-], first alphanumeric (lower case only). */
export const DEVICE_ID_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;

export function assertDeviceId(deviceId: string): void {
  if (!DEVICE_ID_RE.test(deviceId)) {
    throw new IdentityError(
      'DEVICE_ID_INVALID',
      `invalid device id ${JSON.stringify(deviceId)}: use 1-63 characters of a-z, 0-9, "-" and "_", ` +
        'starting with a letter or digit (lower case only), e.g. --device-id lobby-gw-01',
    );
  }
}
