/**
 * Why the updater refused a bundle, as the metrics label (`vigil_updater_refused_total{reason}`). The TUF
 * client's own reasons (tampered, wrong_signing_key, oversized, ...) are counted under the same metric.
 */
export type BundleRefusal =
  | 'traversal'
  | 'link'
  | 'special_file'
  | 'oversized'
  | 'bad_manifest'
  | 'digest_mismatch'
  | 'unexpected_file'
  | 'missing_file'
  | 'corrupt';

/** A release bundle that must not be installed; never retried into success (the same bytes stay bad). */
export class BundleRefusedError extends Error {
  readonly code = 'BUNDLE_REFUSED';
  readonly retryable = false;
  constructor(
    readonly reason: BundleRefusal,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'BundleRefusedError';
  }
}

export type UpdaterErrorCode =
  | 'CONFIG_INVALID'
  | 'NO_CURRENT_RELEASE'
  | 'RESTART_FAILED'
  | 'DOWNGRADE_NOT_INSTALLED'
  | 'CHANNEL_MISMATCH'
  | 'IO';

export class UpdaterError extends Error {
  constructor(
    readonly code: UpdaterErrorCode,
    message: string,
    readonly retryable = false,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'UpdaterError';
  }
}
