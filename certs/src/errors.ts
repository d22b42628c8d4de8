/**
 * Error codes raised by @vigil/certs. Every PKI error is a caller or state problem, never a transient one,
 * so `retryable` is always false.
 */
export type PkiErrorCode =
  | 'CSR_INVALID' // unparsable CSR, bad signature, unsupported signature algorithm
  | 'CSR_KEY_TYPE' // CSR key is not RSA, or its size is outside 2048..8192 bits
  | 'INVALID_ARGUMENT' // bad id, name, SAN value or validity
  | 'CA_INVALID' // CA cert/key unreadable, not a CA, key does not match, expired or expiring
  | 'CA_KEY_MISSING' // ca.crt present without ca.key
  | 'PKI_DIR' // the dev PKI directory is unusable (e.g. a non-empty directory that is not a PKI dir)
  | 'PKI_LOCKED' // another process holds the dev PKI lock for too long
  | 'INTERNAL'; // a certificate we built does not verify against its issuer (a bug)

export class PkiError extends Error {
  readonly code: string;
  readonly retryable = false as const;

  constructor(code: PkiErrorCode | (string & {}), message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PkiError';
    this.code = code;
  }
}
