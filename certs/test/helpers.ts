import { createPublicKey, sign, type KeyObject, type X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import forge from 'node-forge';

/** A fresh temp directory outside the repo (private keys never land in the working tree). */
export function makeTempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `vigil-certs-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface FileSnap {
  bytes: string;
  mtimeMs: number;
  mode: number;
}

/** Every regular file under dir (relative path -> content, mtime, mode). */
export function snapshot(dir: string): Map<string, FileSnap> {
  const out = new Map<string, FileSnap>();
  const walk = (d: string) => {
    for (const ent of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, ent.name);
      if (ent.isDirectory()) walk(p);
      else {
        const st = statSync(p);
        out.set(relative(dir, p), {
          bytes: readFileSync(p, 'base64'),
          mtimeMs: st.mtimeMs,
          mode: st.mode & 0o777,
        });
      }
    }
  };
  walk(dir);
  return out;
}

export function modeOf(path: string): number {
  return statSync(path).mode & 0o777;
}

export const DAY_MS = 86_400_000;

export function notAfterOf(x: X509Certificate): number {
  return Date.parse(x.validTo);
}

export function notBeforeOf(x: X509Certificate): number {
  return Date.parse(x.validFrom);
}

/** Truncates to whole seconds (X.509 times carry no milliseconds). */
export function sec(ms: number): number {
  return Math.floor(ms / 1000) * 1000;
}

/**
 * Builds a PKCS#10 CSR by hand (forge's CSR code is RSA-only), signed with Node's crypto, so tests can make
 * CSRs for EC and Ed25519 keys too; the signature algorithm follows the key type.
 */
export function buildCsrPem(privateKey: KeyObject, commonName: string): string {
  const asn1 = forge.asn1;
  const type = privateKey.asymmetricKeyType;
  const isRsa = type === 'rsa';
  // sha256WithRSAEncryption, Ed25519 (signs the message itself, no separate hash), ecdsa-with-SHA256
  const sigOid = isRsa ? '1.2.840.113549.1.1.11' : type === 'ed25519' ? '1.3.101.112' : '1.2.840.10045.4.3.2';
  const spkiDer = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const info = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, '\x00'),
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
      asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SET, true, [
        asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
          asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer('2.5.4.3').getBytes()),
          asn1.create(asn1.Class.UNIVERSAL, asn1.Type.UTF8, false, commonName),
        ]),
      ]),
    ]),
    asn1.fromDer(Buffer.from(spkiDer).toString('binary')),
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, []),
  ]);
  const infoDer = Buffer.from(asn1.toDer(info).getBytes(), 'binary');
  const signature = sign(type === 'ed25519' ? null : 'sha256', infoDer, privateKey);
  const algId = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(sigOid).getBytes()),
    ...(isRsa ? [asn1.create(asn1.Class.UNIVERSAL, asn1.Type.NULL, false, '')] : []),
  ]);
  const csr = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    info,
    algId,
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.BITSTRING, false, '\x00' + signature.toString('binary')),
  ]);
  const b64 = Buffer.from(asn1.toDer(csr).getBytes(), 'binary').toString('base64');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${b64.replace(/(.{64})/g, '$1\n')}\n-----END CERTIFICATE REQUEST-----\n`;
}

export function pemToDer(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
}

export function derToPem(der: Buffer, label: string): string {
  return `-----BEGIN ${label}-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END ${label}-----\n`;
}
