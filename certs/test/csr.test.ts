import { X509Certificate, createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import forge from 'node-forge';
import { describe, expect, it } from 'vitest';
import { PkiError, createCa, issueClientCert, signCsr } from '../src/index.js';
import { DAY_MS, buildCsrPem, derToPem, notAfterOf, pemToDer, sec } from './helpers.js';

const NOW = new Date('2031-01-02T03:04:05Z');
const ca = createCa({ commonName: 'Fleet CA', now: NOW });
const caX = new X509Certificate(ca.certPem);
const URI = 'spiffe://vigil/tenant/acme/device/cam-01';

function rsaKey(bits: number) {
  return generateKeyPairSync('rsa', { modulusLength: bits });
}

/** A CSR made with node-forge, the way the edge agent makes it, asking for an identity it should not get. */
function forgeCsr(bits = 2048): { csrPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = rsaKey(bits);
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }) as string);
  csr.setSubject([{ name: 'commonName', value: 'evil-admin' }]);
  csr.setAttributes([
    {
      name: 'extensionRequest',
      extensions: [
        { name: 'subjectAltName', altNames: [{ type: 6, value: 'spiffe://vigil/service/admin' }] },
      ],
    },
  ]);
  csr.sign(
    forge.pki.privateKeyFromPem(privateKey.export({ type: 'pkcs8', format: 'pem' }) as string),
    forge.md.sha256.create(),
  );
  return {
    csrPem: forge.pki.certificationRequestToPem(csr),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }) as string,
  };
}

function expectPkiError(fn: () => unknown, code: string): PkiError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(PkiError);
  const err = caught as PkiError;
  expect(err.code).toBe(code);
  expect(err.retryable).toBe(false);
  return err;
}

describe('signCsr', () => {
  it('issues a client cert for the CSR key with the identity chosen by the issuer', () => {
    const { csrPem, publicKeyPem } = forgeCsr();
    const certPem = signCsr(ca, csrPem, { commonName: 'cam-01', uris: [URI], now: NOW });
    const x = new X509Certificate(certPem);
    expect(x.checkIssued(caX)).toBe(true);
    expect(x.verify(caX.publicKey)).toBe(true);
    expect(x.subject).toBe('CN=cam-01'); // not evil-admin
    expect(x.subjectAltName).toBe(`URI:${URI}`); // not the requested service SAN
    expect(x.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(x.ca).toBe(false);
    expect(x.publicKey.export({ type: 'spki', format: 'pem' })).toBe(publicKeyPem);
    expect(notAfterOf(x)).toBe(sec(NOW.getTime() + 30 * DAY_MS));
  });

  it('honours validityDays', () => {
    const certPem = signCsr(ca, forgeCsr().csrPem, {
      commonName: 'cam-01',
      uris: [URI],
      now: NOW,
      validityDays: 7,
    });
    expect(notAfterOf(new X509Certificate(certPem))).toBe(sec(NOW.getTime() + 7 * DAY_MS));
  });

  it('accepts a hand-built RSA CSR (the same builder the EC rejection test uses)', () => {
    const certPem = signCsr(ca, buildCsrPem(rsaKey(2048).privateKey, 'x'), {
      commonName: 'x',
      uris: [],
      now: NOW,
    });
    expect(new X509Certificate(certPem).verify(caX.publicKey)).toBe(true);
  });

  it('accepts a 3072-bit key', () => {
    const certPem = signCsr(ca, forgeCsr(3072).csrPem, { commonName: 'x', uris: [URI], now: NOW });
    expect(new X509Certificate(certPem).publicKey.asymmetricKeyDetails?.modulusLength).toBe(3072);
  });

  it('rejects a CSR whose signed content was tampered with', () => {
    const der = pemToDer(forgeCsr().csrPem);
    const at = der.indexOf(Buffer.from('evil-admin'));
    expect(at).toBeGreaterThan(0);
    der[at] = 'E'.charCodeAt(0);
    const err = expectPkiError(
      () => signCsr(ca, derToPem(der, 'CERTIFICATE REQUEST'), { commonName: 'x', uris: [] }),
      'CSR_INVALID',
    );
    expect(err.message).toMatch(/signature/);
  });

  it('rejects a CSR with a corrupted signature', () => {
    const der = pemToDer(forgeCsr().csrPem);
    der.writeUInt8(der.readUInt8(der.length - 1) ^ 0x01, der.length - 1);
    expectPkiError(
      () => signCsr(ca, derToPem(der, 'CERTIFICATE REQUEST'), { commonName: 'x', uris: [] }),
      'CSR_INVALID',
    );
  });

  it('rejects a CSR signed by a different key than the one it carries', () => {
    const a = rsaKey(2048);
    const b = rsaKey(2048);
    const derA = pemToDer(buildCsrPem(a.privateKey, 'x'));
    const derB = pemToDer(buildCsrPem(b.privateKey, 'x'));
    // same structure and lengths: swap B's signature (last 256 bytes) into A's CSR
    derB.subarray(derB.length - 256).copy(derA, derA.length - 256);
    expectPkiError(
      () => signCsr(ca, derToPem(derA, 'CERTIFICATE REQUEST'), { commonName: 'x', uris: [] }),
      'CSR_INVALID',
    );
  });

  it.each([
    ['garbage', 'not a csr'],
    ['a certificate instead of a CSR', ca.certPem],
    ['truncated DER', '-----BEGIN CERTIFICATE REQUEST-----\nMIIBIjAN\n-----END CERTIFICATE REQUEST-----\n'],
    ['empty string', ''],
  ])('rejects %s as CSR_INVALID', (_name, pem) => {
    expectPkiError(() => signCsr(ca, pem, { commonName: 'x', uris: [] }), 'CSR_INVALID');
  });

  it('rejects a 1024-bit RSA key as CSR_KEY_TYPE', () => {
    const err = expectPkiError(
      () => signCsr(ca, forgeCsr(1024).csrPem, { commonName: 'x', uris: [] }),
      'CSR_KEY_TYPE',
    );
    expect(err.message).toMatch(/1024/);
  });

  it('rejects an EC (P-256) key as CSR_KEY_TYPE', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const err = expectPkiError(
      () => signCsr(ca, buildCsrPem(privateKey, 'x'), { commonName: 'x', uris: [] }),
      'CSR_KEY_TYPE',
    );
    expect(err.message).toMatch(/ec/);
  });

  it('rejects an Ed25519 key as CSR_KEY_TYPE', () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const err = expectPkiError(
      () => signCsr(ca, buildCsrPem(privateKey, 'x'), { commonName: 'x', uris: [] }),
      'CSR_KEY_TYPE',
    );
    expect(err.message).toMatch(/ed25519/);
  });

  it('refuses to sign with a non-CA certificate', () => {
    const leaf = issueClientCert(ca, { commonName: 'leaf', now: NOW });
    expectPkiError(() => signCsr(leaf, forgeCsr().csrPem, { commonName: 'x', uris: [] }), 'CA_INVALID');
  });

  it('does not leak the CA key into the issued certificate', () => {
    const certPem = signCsr(ca, forgeCsr().csrPem, { commonName: 'x', uris: [URI], now: NOW });
    const caPub = createPublicKey(createPrivateKey(ca.keyPem)).export({ type: 'spki', format: 'pem' });
    expect(new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'pem' })).not.toBe(caPub);
  });
});
