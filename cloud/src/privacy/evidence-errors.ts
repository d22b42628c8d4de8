import { VigilError } from '../lib/errors.js';

export type EvidenceErrorCode =
  | 'ARCHIVE_INVALID'
  | 'ARCHIVE_TOO_LARGE'
  | 'MANIFEST_MISSING'
  | 'MANIFEST_INVALID'
  | 'SIGNATURE_INVALID'
  | 'MANIFEST_TAMPERED'
  | 'EVIDENCE_MISMATCH'
  | 'EXPORT_KEY_INVALID';

/** An evidence archive that does not verify, or a key that cannot be used; never retryable. */
export class EvidenceError extends VigilError {
  constructor(
    code: EvidenceErrorCode,
    message: string,
    /** For EVIDENCE_MISMATCH: every problem found, one line each. */
    readonly problems: readonly string[] = [],
    options?: { cause?: unknown },
  ) {
    super(code, message, false, options);
  }
}

/** The export scope holds more than config privacy.export allows: HTTP 422, with the figures. */
export class ExportTooLargeError extends VigilError {
  constructor(message: string) {
    super('EXPORT_TOO_LARGE', message, false);
  }
}

/** No export signing key is configured (privacy.export.signingKeyFile): HTTP 503. */
export class ExportUnavailableError extends VigilError {
  constructor(message: string) {
    super('UNAVAILABLE', message, true);
  }
}
