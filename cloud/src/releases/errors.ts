import { VigilError } from '../lib/errors.js';

/**
 * Why a release operation was refused. `reason` is the metrics label (vigil_cloud_release_refused_total) and
 * the problem detail says what to do. Codes map to HTTP in api/problem.ts.
 */
export type ReleaseErrorCode =
  | 'KEY_INVALID'
  | 'VALIDATION_FAILED'
  | 'PAYLOAD_TOO_LARGE'
  | 'NOT_FOUND'
  | 'RELEASE_SIGNATURE_INVALID'
  | 'RELEASE_VERSION_CONFLICT'
  | 'RELEASE_REPOSITORY_NOT_INITIALIZED'
  | 'UNAVAILABLE';

export class ReleaseError extends VigilError {
  constructor(code: ReleaseErrorCode, message: string, options?: { cause?: unknown; reason?: string }) {
    super(code, message, code === 'UNAVAILABLE', options);
    this.reason = options?.reason ?? code.toLowerCase();
  }
  /** The metrics label for this refusal. */
  readonly reason: string;
}
