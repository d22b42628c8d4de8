/**
 * Why an update was refused: `reason` is the metrics label (vigil_agent_update_refused_total) and the message
 * says what happened. A refusal is never retried into success by the device: only new, valid metadata from the
 * cloud changes the answer.
 */
export type UpdateRefusal =
  | 'tampered'
  | 'wrong_signing_key'
  | 'expired_metadata'
  | 'rollback'
  | 'metadata_rollback'
  | 'mix_and_match'
  | 'bad_target_path'
  | 'bad_custom_fields'
  | 'below_min_version'
  | 'oversized'
  | 'repository_error';

export class UpdateRefusedError extends Error {
  readonly code = 'UPDATE_REFUSED';
  readonly retryable = false;
  constructor(
    readonly reason: UpdateRefusal,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'UpdateRefusedError';
  }
}

/** The repository could not be reached or read (network, cloud down): try again later. */
export class UpdateUnavailableError extends Error {
  readonly code = 'UPDATE_UNAVAILABLE';
  readonly retryable = true;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UpdateUnavailableError';
  }
}

/**
 * Maps a tuf-js / @tufjs/models error to a refusal (the library's error classes are not exported: their names
 * are stable API all the same). Download failures that are not a verdict on the data are "unavailable".
 */
export function classifyTufError(
  err: unknown,
  stage: 'refresh' | 'download',
): UpdateRefusedError | UpdateUnavailableError {
  if (err instanceof UpdateRefusedError || err instanceof UpdateUnavailableError) return err;
  const e = err instanceof Error ? err : new Error(String(err));
  const name = e.constructor.name;
  const msg = e.message;
  const refuse = (reason: UpdateRefusal, what: string): UpdateRefusedError =>
    new UpdateRefusedError(reason, `${what}: ${msg}`, { cause: err });
  switch (name) {
    case 'ExpiredMetadataError':
      return refuse(
        'expired_metadata',
        'release metadata expired (a freeze attack, or the cloud stopped signing)',
      );
    case 'UnsignedMetadataError':
      return refuse('wrong_signing_key', 'release metadata is not signed by the keys the trusted root lists');
    case 'EqualVersionError':
    case 'BadVersionError':
      // "less than current": older than what this device already trusts. Otherwise versions that do not fit
      // together (snapshot vs timestamp, targets vs snapshot): metadata mixed from different points in time.
      return /less than current|Expected version/.test(msg)
        ? refuse('metadata_rollback', 'release metadata is older than what this device already trusts')
        : refuse('mix_and_match', 'release metadata files do not belong together');
    case 'LengthOrHashMismatchError':
      return stage === 'download'
        ? refuse('tampered', 'the downloaded bundle does not match its signed hash and length')
        : refuse('mix_and_match', 'release metadata does not match the hash or length its parent signed');
    case 'DownloadLengthMismatchError':
      return refuse('oversized', 'a download was longer than allowed');
    case 'RuntimeError': {
      // tuf-js wraps snapshot and targets failures in RuntimeError("Unable to load ... error <cause>"), keeping
      // only the cause's text: the verdict is read from that text. Anything else (network) stays unavailable.
      if (/signed by \d+\/\d+ keys/.test(msg))
        return refuse(
          'wrong_signing_key',
          'release metadata is not signed by the keys the trusted root lists',
        );
      if (/expired/i.test(msg)) return refuse('expired_metadata', 'release metadata expired');
      if (/less than current/.test(msg))
        return refuse('metadata_rollback', 'release metadata is older than what this device already trusts');
      if (/Max length reached/.test(msg)) return refuse('oversized', 'release metadata larger than allowed');
      if (/length|hash|does not match|doesn't match|Expected version/i.test(msg))
        return refuse('mix_and_match', 'release metadata files do not belong together');
      return new UpdateUnavailableError(`release repository unavailable: ${msg}`, { cause: err });
    }
    case 'RepositoryError':
    case 'ValueError':
    case 'SyntaxError':
      return refuse('repository_error', 'the release repository sent invalid metadata');
    default:
      return new UpdateUnavailableError(`release repository unavailable: ${msg}`, { cause: err });
  }
}
