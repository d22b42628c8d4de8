// The native DER writer that replaced node-forge on the certificate and CSR paths: its encodings checked
// against fixed bytes, and the one-time CSR verification (verifyCsrOnce) that signing relies on.
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { integer, ipBytes, namedBits, oid, time } from '../src/der-write.js';
import {
  createCa,
  createCsr,
  issueFromCsr,
  issueFromCsrAsync,
  loadCa,
  PkiError,
  verifyCsrOnce,
} from '../src/index.js';

const hex = (b: Buffer): string => b.toString('hex');

describe('der-write', () => {
  it('encodes INTEGERs minimally and positive', () => {
    expect(hex(integer(Buffer.from([0x00, 0x00, 0x7f])))).toBe('02017f');
    expect(hex(integer(Buffer.from([0x80])))).toBe('02020080');
    expect(hex(integer(Buffer.from([0x00])))).toBe('020100');
  });

  it('encodes OIDs, including multi-byte arcs', () => {
    expect(hex(oid('2.5.29.17'))).toBe('0603551d11');
    expect(hex(oid('1.2.840.113549.1.1.11'))).toBe('06092a864886f70d01010b');
  });

  it('uses UTCTime through 2049 and GeneralizedTime from 2050', () => {
    expect(time(new Date('2049-12-31T23:59:59Z')).toString('latin1')).toBe('\x17\x0d491231235959Z');
    expect(time(new Date('2050-01-01T00:00:00Z')).toString('latin1')).toBe('\x18\x0f20500101000000Z');
  });

  it('counts trailing zero bits of a named-bit BIT STRING as unused', () => {
    expect(hex(namedBits([0x80]))).toBe('03020780'); // digitalSignature
    expect(hex(namedBits([0xa0]))).toBe('030205a0'); // + keyEncipherment
    expect(hex(namedBits([0x06]))).toBe('03020106'); // keyCertSign + cRLSign
  });

  it('writes IPv4 and IPv6 addresses (compressed, embedded IPv4) as their raw bytes', () => {
    expect(hex(ipBytes('127.0.0.1'))).toBe('7f000001');
    expect(hex(ipBytes('::1'))).toBe('00000000000000000000000000000001');
    expect(hex(ipBytes('2001:db8::ffff:1.2.3.4'))).toBe('20010db8000000000000ffff01020304');
    expect(hex(ipBytes('fe80::'))).toBe('fe800000000000000000000000000000');
    expect(() => ipBytes('fe80::1%eth0')).toThrow(/not an IP address/);
  });
});

describe('verifyCsrOnce and issueFromCsr', () => {
  const ca = createCa({ commonName: 'DER Test CA' });
  const keyPem = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
    type: 'pkcs8',
    format: 'pem',
  }) as string;
  const csrPem = createCsr({ privateKeyPem: keyPem, commonName: 'dev-1' });
  const opts = { commonName: 'dev-1', uris: ['spiffe://vigil/tenant/t/device/dev-1'] };

  it('issues the same identity synchronously and on the thread pool, from a CA loaded once', async () => {
    const loaded = loadCa(ca);
    const a = issueFromCsr(loaded, verifyCsrOnce(csrPem), opts);
    const b = await issueFromCsrAsync(loaded, verifyCsrOnce(csrPem), opts);
    const caX = new X509Certificate(ca.certPem);
    for (const { certPem, x509 } of [a, b]) {
      expect(new X509Certificate(certPem).fingerprint256).toBe(x509.fingerprint256);
      expect(x509.verify(caX.publicKey) && x509.checkIssued(caX)).toBe(true);
      expect(x509.subject).toBe('CN=dev-1');
      expect(x509.subjectAltName).toBe('URI:spiffe://vigil/tenant/t/device/dev-1');
      expect(x509.issuer).toBe(caX.subject);
    }
    expect(a.x509.serialNumber).not.toBe(b.x509.serialNumber);
  });

  it('refuses a look-alike of a verified CSR that verifyCsrOnce did not make', () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
    let err: unknown;
    try {
      issueFromCsr(ca, { publicKey: other }, opts);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PkiError);
    expect((err as PkiError).code).toBe('CSR_INVALID');
  });
});
