import { X509Certificate, createPrivateKey } from 'node:crypto';
import forge from 'node-forge';
import { describe, expect, it } from 'vitest';
import { PkiError, createCa, deviceUri, issueClientCert, issueServerCert, serviceUri } from '../src/index.js';
import { DAY_MS, notAfterOf, notBeforeOf, sec } from './helpers.js';

const NOW = new Date('2030-03-04T05:06:07.890Z');
const SKEW_MS = 5 * 60_000;
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

const ca = createCa({ commonName: 'Test CA', now: NOW });
const caX = new X509Certificate(ca.certPem);

type Ext = Record<string, unknown> & { critical?: boolean };
function ext(pem: string, name: string): Ext | null {
  return forge.pki.certificateFromPem(pem).getExtension(name) as Ext | null;
}

describe('createCa', () => {
  it('is a self-signed RSA-2048 CA, SHA-256 signed, with CA extensions', () => {
    expect(caX.ca).toBe(true);
    expect(caX.subject).toBe('CN=Test CA');
    expect(caX.issuer).toBe('CN=Test CA');
    expect(caX.checkIssued(caX)).toBe(true);
    expect(caX.verify(caX.publicKey)).toBe(true);
    expect(caX.checkPrivateKey(createPrivateKey(ca.keyPem))).toBe(true);
    expect(createPrivateKey(ca.keyPem).asymmetricKeyDetails?.modulusLength).toBe(2048);
    const f = forge.pki.certificateFromPem(ca.certPem);
    expect(f.siginfo.algorithmOid).toBe('1.2.840.113549.1.1.11');
    const bc = ext(ca.certPem, 'basicConstraints');
    expect(bc).toMatchObject({ cA: true, pathLenConstraint: 0, critical: true });
    const ku = ext(ca.certPem, 'keyUsage');
    expect(ku).toMatchObject({ keyCertSign: true, cRLSign: true, digitalSignature: false, critical: true });
    const ski = ext(ca.certPem, 'subjectKeyIdentifier') as { subjectKeyIdentifier: string };
    expect(ski.subjectKeyIdentifier).toBe(f.generateSubjectKeyIdentifier().toHex());
  });

  it('defaults to 3650 days, backdated 5 minutes', () => {
    expect(notBeforeOf(caX)).toBe(sec(NOW.getTime() - SKEW_MS));
    expect(notAfterOf(caX)).toBe(sec(NOW.getTime() + 3650 * DAY_MS));
  });

  it('honours validityDays and uses GeneralizedTime past 2049', () => {
    const x = new X509Certificate(
      createCa({ commonName: 'Long CA', now: NOW, validityDays: 10_000 }).certPem,
    );
    expect(notAfterOf(x)).toBe(sec(NOW.getTime() + 10_000 * DAY_MS));
    expect(new Date(notAfterOf(x)).getUTCFullYear()).toBe(2057);
  });

  it('writes random positive 16-byte serials with a minimal DER encoding', () => {
    const serials = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const s = new X509Certificate(issueClientCert(ca, { commonName: `c${i}`, now: NOW }).certPem)
        .serialNumber;
      expect(s).toMatch(/^[0-9A-F]{32}$/);
      const first = Number.parseInt(s.slice(0, 2), 16);
      expect(first).toBeGreaterThan(0);
      expect(first).toBeLessThan(0x80);
      serials.add(s);
    }
    expect(serials.size).toBe(4);
  });

  it('encodes a non-ASCII CA name once (issuer DN of leaves matches byte for byte)', () => {
    const intl = createCa({ commonName: 'Vigil Dév CA ✓', now: NOW });
    const intlX = new X509Certificate(intl.certPem);
    expect(intlX.subject).toBe('CN=Vigil Dév CA ✓');
    const leaf = new X509Certificate(issueClientCert(intl, { commonName: 'x', now: NOW }).certPem);
    expect(leaf.issuer).toBe('CN=Vigil Dév CA ✓');
    expect(leaf.checkIssued(intlX)).toBe(true);
  });

  it('rejects a bad validity', () => {
    expect(() => createCa({ commonName: 'x', validityDays: 0 })).toThrow(PkiError);
    expect(() => createCa({ commonName: '' })).toThrow(/commonName/);
  });
});

describe('issueServerCert', () => {
  const server = issueServerCert(ca, {
    commonName: 'nats-server',
    dnsNames: ['localhost', 'nats.local'],
    ipAddresses: ['127.0.0.1', '::1'],
    now: NOW,
  });
  const x = new X509Certificate(server.certPem);

  it('is issued and signed by the CA', () => {
    expect(x.checkIssued(caX)).toBe(true);
    expect(x.verify(caX.publicKey)).toBe(true);
    expect(x.checkPrivateKey(createPrivateKey(server.keyPem))).toBe(true);
    expect(x.ca).toBe(false);
    expect(x.subject).toBe('CN=nats-server');
  });

  it('carries DNS and IP SANs and serverAuth only', () => {
    expect(x.subjectAltName).toBe(
      'DNS:localhost, DNS:nats.local, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1',
    );
    expect(x.checkHost('localhost')).toBe('localhost');
    expect(x.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(x.checkHost('example.com')).toBeUndefined();
    expect(x.keyUsage).toEqual([SERVER_AUTH]);
    expect(ext(server.certPem, 'keyUsage')).toMatchObject({
      digitalSignature: true,
      keyEncipherment: true,
      critical: true,
    });
    expect(ext(server.certPem, 'basicConstraints')).toMatchObject({ cA: false, critical: true });
  });

  it('has an AKI equal to the CA SKI', () => {
    const aki = forge.pki.certificateFromPem(server.certPem).getExtension('authorityKeyIdentifier') as {
      value: string;
    };
    const caSki = (ext(ca.certPem, 'subjectKeyIdentifier') as { subjectKeyIdentifier: string })
      .subjectKeyIdentifier;
    // value is the DER of AuthorityKeyIdentifier: SEQUENCE { [0] keyIdentifier }
    expect(forge.util.bytesToHex(aki.value)).toContain(`8014${caSki}`);
  });

  it('defaults to 825 days from now, backdated 5 minutes', () => {
    expect(notBeforeOf(x)).toBe(sec(NOW.getTime() - SKEW_MS));
    expect(notAfterOf(x)).toBe(sec(NOW.getTime() + 825 * DAY_MS));
  });

  it('does not verify against another CA', () => {
    const other = new X509Certificate(createCa({ commonName: 'Test CA', now: NOW }).certPem);
    expect(x.verify(other.publicKey)).toBe(false);
  });

  it('rejects bad SAN input', () => {
    expect(() => issueServerCert(ca, { commonName: 'x', dnsNames: [], ipAddresses: [] })).toThrow(PkiError);
    expect(() => issueServerCert(ca, { commonName: 'x', dnsNames: [], ipAddresses: ['999.1.1.1'] })).toThrow(
      /999\.1\.1\.1/,
    );
    expect(() => issueServerCert(ca, { commonName: 'x', dnsNames: ['bad name'], ipAddresses: [] })).toThrow(
      /bad name/,
    );
  });

  it('refuses a CA whose key does not match, or a leaf used as CA', () => {
    const other = createCa({ commonName: 'Other', now: NOW });
    const mixed = { certPem: ca.certPem, keyPem: other.keyPem };
    expect(() => issueServerCert(mixed, { commonName: 'x', dnsNames: ['a'], ipAddresses: [] })).toThrow(
      expect.objectContaining({ code: 'CA_INVALID' }),
    );
    expect(() => issueServerCert(server, { commonName: 'x', dnsNames: ['a'], ipAddresses: [] })).toThrow(
      expect.objectContaining({ code: 'CA_INVALID' }),
    );
  });
});

describe('issueClientCert', () => {
  const uri = deviceUri('t1', 'd1');
  const client = issueClientCert(ca, { commonName: 'd1', uris: [uri], now: NOW });
  const x = new X509Certificate(client.certPem);

  it('has EKU clientAuth, the URI SAN and the CN', () => {
    expect(x.checkIssued(caX)).toBe(true);
    expect(x.verify(caX.publicKey)).toBe(true);
    expect(x.keyUsage).toEqual([CLIENT_AUTH]);
    expect(x.subjectAltName).toBe('URI:spiffe://vigil/tenant/t1/device/d1');
    expect(x.subject).toBe('CN=d1');
    expect(ext(client.certPem, 'keyUsage')).toMatchObject({ digitalSignature: true, keyEncipherment: false });
  });

  it('defaults to 30 days and honours validityDays', () => {
    expect(notAfterOf(x)).toBe(sec(NOW.getTime() + 30 * DAY_MS));
    const y = new X509Certificate(
      issueClientCert(ca, { commonName: 'y', validityDays: 2, now: NOW }).certPem,
    );
    expect(notBeforeOf(y)).toBe(sec(NOW.getTime() - SKEW_MS));
    expect(notAfterOf(y)).toBe(sec(NOW.getTime() + 2 * DAY_MS));
  });

  it('omits the SAN extension when there are no URIs', () => {
    const y = new X509Certificate(issueClientCert(ca, { commonName: 'y', now: NOW }).certPem);
    expect(y.subjectAltName).toBeUndefined();
  });

  it('gives every cert its own key', () => {
    const other = issueClientCert(ca, { commonName: 'd1', uris: [uri], now: NOW });
    expect(other.keyPem).not.toBe(client.keyPem);
  });
});

describe('deviceUri / serviceUri', () => {
  it('builds SPIFFE-style URIs', () => {
    expect(deviceUri('acme', 'cam-01')).toBe('spiffe://vigil/tenant/acme/device/cam-01');
    expect(deviceUri('A_1', 'x')).toBe('spiffe://vigil/tenant/A_1/device/x');
    expect(serviceUri('cloud')).toBe('spiffe://vigil/service/cloud');
    expect(deviceUri('a', 'b'.repeat(63))).toContain('b'.repeat(63));
  });

  it.each([
    ['', 'ok'],
    ['ok', 'b'.repeat(64)],
    ['-lead', 'ok'],
    ['ok', '_lead'],
    ['a/b', 'ok'],
    ['ok', '..'],
    ['ok', 'dev 1'],
    ['ok', 'dév'],
  ])('rejects tenant %j / device %j and names the bad value', (tenant, device) => {
    const bad = /^[a-z0-9][a-z0-9_-]{0,62}$/i.test(tenant) ? device : tenant;
    expect(() => deviceUri(tenant, device)).toThrow(PkiError);
    expect(() => deviceUri(tenant, device)).toThrow(JSON.stringify(bad));
  });

  it('rejects bad service names', () => {
    expect(() => serviceUri('../etc')).toThrow(/"\.\.\/etc"/);
  });
});

describe('PkiError', () => {
  it('carries code, retryable false and cause', () => {
    const cause = new Error('inner');
    const e = new PkiError('CSR_INVALID', 'boom', { cause });
    expect(e).toBeInstanceOf(Error);
    expect(e.code).toBe('CSR_INVALID');
    expect(e.retryable).toBe(false);
    expect(e.cause).toBe(cause);
    expect(e.message).toBe('boom');
  });
});
