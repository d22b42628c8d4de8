import { createPrivateKey, createPublicKey, sign, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { PkiError } from './errors.js';

/** Same bounds as signCsr/the cloud: a CSR outside them would only be refused on the other side. */
const MIN_RSA_BITS = 2048;
const MAX_RSA_BITS = 8192;

/** Not in @types/node-forge, but public in node-forge itself (as getTBSCertificate is for certificates). */
const forgePki = forge.pki as typeof forge.pki & {
  getCertificationRequestInfo(csr: forge.pki.CertificateSigningRequest): forge.asn1.Asn1;
};

/**
 * A PKCS#10 CSR (PEM) for an RSA private key: subject exactly one CN (UTF8String, so ids with '_' survive),
 * no attributes or requested extensions (the issuer decides SANs), signed sha256WithRSAEncryption.
 *
 * forge builds the CertificationRequestInfo, Node's crypto (OpenSSL) signs it, as buildCert does for
 * certificates: forge's pure-JS RSA signing is slow and not constant-time.
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
    key = createPrivateKey(privateKeyPem);
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

  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(
    createPublicKey(key).export({ type: 'spki', format: 'pem' }) as string,
  );
  // UTF8String, not forge's default PrintableString (which cannot carry '_'); typed as pki.ts types it.
  const cn: { name: string; value: string; valueTagClass: number } = {
    name: 'commonName',
    value: commonName,
    valueTagClass: forge.asn1.Type.UTF8,
  };
  csr.setSubject([cn]);
  const oid = forge.pki.oids.sha256WithRSAEncryption!;
  const cri = forgePki.getCertificationRequestInfo(csr);
  const criDer = Buffer.from(forge.asn1.toDer(cri).getBytes(), 'binary');
  // certificationRequestToPem serialises the cached CRI with these fields, exactly the bytes signed here.
  const signed = csr as forge.pki.CertificateSigningRequest & { certificationRequestInfo: forge.asn1.Asn1 };
  signed.certificationRequestInfo = cri;
  signed.signatureOid = oid;
  signed.siginfo.algorithmOid = oid;
  signed.signature = sign('sha256', criDer, key).toString('binary');
  return forge.pki.certificationRequestToPem(csr);
}
