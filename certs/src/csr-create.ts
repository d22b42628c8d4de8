import { createPrivateKey, createPublicKey, sign, type KeyObject } from 'node:crypto';
import * as der from './der-write.js';
import { PkiError } from './errors.js';

/** Same bounds as signCsr/the cloud: a CSR outside them would only be refused on the other side. */
const MIN_RSA_BITS = 2048;
const MAX_RSA_BITS = 8192;

/**
 * A PKCS#10 CSR (PEM) for an RSA private key: subject exactly one CN (UTF8String, so ids with '_' survive),
 * no attributes or requested extensions (the issuer decides SANs), signed sha256WithRSAEncryption.
 *
 * Built with the DER writer of der-write.ts and signed by Node's crypto (OpenSSL), as buildCert does for
 * certificates: node-forge took ~3 ms of JavaScript per CSR (its pure-JS RSA signing is also not constant-time).
 */
export function createCsr(opts: { privateKeyPem: string; commonName: string }): string {
  const { privateKeyPem, commonName } = opts;
  if (typeof commonName !== 'string' || commonName.length === 0 || commonName.length > 64) {
    throw new PkiError('INVALID_ARGUMENT', 'commonName must be 1-64 characters');
  }
  if (/\p{Cc}/u.test(commonName)) {
    throw new PkiError('INVALID_ARGUMENT', 'commonName must not contain control characters');
  }
  let key: KeyObject;
  try {
    // The same key again (a simulated fleet): parsing a PEM RSA key costs more than signing with it.
    key = lastKey?.pem === privateKeyPem ? lastKey.key : createPrivateKey(privateKeyPem);
    lastKey = { pem: privateKeyPem, key };
  } catch (cause) {
    throw new PkiError('INVALID_ARGUMENT', 'the private key cannot be parsed (expected a PEM RSA key)', {
      cause,
    });
  }
  if (key.asymmetricKeyType !== 'rsa') {
    throw new PkiError('INVALID_ARGUMENT', `the key must be RSA, got ${String(key.asymmetricKeyType)}`);
  }
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < MIN_RSA_BITS || bits > MAX_RSA_BITS) {
    throw new PkiError(
      'INVALID_ARGUMENT',
      `the RSA key must be ${MIN_RSA_BITS}..${MAX_RSA_BITS} bits, got ${bits}`,
    );
  }

  // CertificationRequestInfo: version 0, subject exactly one CN, the key, [0] no attributes.
  const info = der.seq(
    der.smallInteger(0),
    der.seq(der.set(der.seq(der.oid(OID_COMMON_NAME), der.utf8String(commonName)))),
    spkiOf(key),
    Buffer.from([0xa0, 0x00]),
  );
  const algorithm = der.seq(der.oid(OID_SHA256_WITH_RSA), der.nullValue());
  const csr = der.seq(info, algorithm, der.bitString(sign('sha256', info, key)));
  return der.toPem(csr, 'CERTIFICATE REQUEST');
}

const OID_COMMON_NAME = '2.5.4.3';
const OID_SHA256_WITH_RSA = '1.2.840.113549.1.1.11';

// A device makes many CSRs for one key (fleet-sim: thousands): the public key's DER once per private key.
const spkiCache = new WeakMap<KeyObject, Buffer>();
let lastKey: { pem: string; key: KeyObject } | undefined;

function spkiOf(key: KeyObject): Buffer {
  let spki = spkiCache.get(key);
  if (!spki) {
    spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
    spkiCache.set(key, spki);
  }
  return spki;
}
