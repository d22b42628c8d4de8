import { X509Certificate, createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import forge from 'node-forge';
import { describe, expect, it } from 'vitest';
import { PkiError, createCa, createCsr, deviceUri, signCsr } from '../src/index.js';

const ca = createCa({ commonName: 'Fleet CA' });

function rsaKeyPem(bits = 2048): string {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: bits });
  return privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
}

function spkiOf(pem: string): string {
  return createPublicKey(pem).export({ type: 'spki', format: 'pem' }) as string;
}

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('createCsr', () => {
  const keyPem = rsaKeyPem();

  it('makes a CSR that signCsr accepts; the cert carries the key it was made for', () => {
    const csrPem = createCsr({ privateKeyPem: keyPem, commonName: 'gw-01' });
    const certPem = signCsr(ca, csrPem, { commonName: 'gw-01', uris: [deviceUri('acme', 'gw-01')] });
    const cert = new X509Certificate(certPem);
    expect(cert.publicKey.export({ type: 'spki', format: 'pem' })).toBe(spkiOf(keyPem));
    expect(cert.checkPrivateKey(createPrivateKey(keyPem))).toBe(true);
    expect(cert.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
  });

  it('has exactly one CN (UTF8String), no attributes, sha256WithRSA, and a valid self-signature', () => {
    const csrPem = createCsr({ privateKeyPem: keyPem, commonName: 'site_7-gw' });
    const csr = forge.pki.certificationRequestFromPem(csrPem);
    expect(csr.verify()).toBe(true);
    const attrs = csr.subject.attributes as Array<{ type: string; value: string; valueTagClass: number }>;
    expect(attrs).toHaveLength(1);
    expect(attrs[0]).toMatchObject({
      type: '2.5.4.3',
      value: 'site_7-gw',
      valueTagClass: forge.asn1.Type.UTF8,
    });
    expect(csr.signatureOid).toBe(forge.pki.oids.sha256WithRSAEncryption);
    expect(csr.getAttribute({ name: 'extensionRequest' })).toBeNull();
  });

  it.skipIf(!hasOpenssl())('is a CSR OpenSSL verifies', () => {
    const csrPem = createCsr({ privateKeyPem: keyPem, commonName: 'gw-01' });
    const out = execFileSync('openssl', ['req', '-noout', '-verify', '-subject'], {
      input: csrPem,
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    expect(out).toMatch(/subject=\s*CN\s*=\s*gw-01/);
  });

  it('refuses a non-RSA or too small key and a bad common name', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    }) as string;
    expect(() => createCsr({ privateKeyPem: ec, commonName: 'gw-01' })).toThrow(/must be RSA/);
    expect(() => createCsr({ privateKeyPem: rsaKeyPem(1024), commonName: 'gw-01' })).toThrow(/2048\.\.8192/);
    expect(() => createCsr({ privateKeyPem: 'not a key', commonName: 'gw-01' })).toThrow(PkiError);
    expect(() => createCsr({ privateKeyPem: keyPem, commonName: '' })).toThrow(/commonName/);
    expect(() => createCsr({ privateKeyPem: keyPem, commonName: 'a\nb' })).toThrow(/control/);
  });
});
