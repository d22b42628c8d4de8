import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { RENEW_WITHIN_MS } from './dev-pki.js';
import { commonNameOf, notAfter } from './x509.js';

export interface CertSummary {
  /** path relative to the PKI dir */
  file: string;
  commonName: string | undefined;
  sans: string[];
  notAfter: Date;
  isCa: boolean;
  /** 'ok' | 'expiring' | 'expired' | 'foreign' (not issued by ca.crt) | 'unreadable' */
  status: 'ok' | 'expiring' | 'expired' | 'foreign' | 'unreadable';
  keyPresent: boolean;
}

function crtFiles(dir: string): string[] {
  const out: string[] = [];
  for (const ent of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, ent.name);
    if (ent.isDirectory()) out.push(...crtFiles(p));
    else if (ent.isFile() && ent.name.endsWith('.crt')) out.push(p);
  }
  return out;
}

/** Every *.crt under `dir`, ca.crt first, with identity, expiry and whether it chains to ca.crt. */
export function listCerts(dir: string, now: Date = new Date()): CertSummary[] {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) return [];
  const caPath = join(dir, 'ca.crt');
  let ca: X509Certificate | undefined;
  try {
    ca = new X509Certificate(readFileSync(caPath));
  } catch {
    ca = undefined;
  }
  const files = crtFiles(dir).sort((a, b) => (a === caPath ? -1 : b === caPath ? 1 : a.localeCompare(b)));
  return files.map((path): CertSummary => {
    const keyPresent = existsSync(path.replace(/\.crt$/, '.key'));
    const file = relative(dir, path);
    let x: X509Certificate;
    try {
      x = new X509Certificate(readFileSync(path));
    } catch {
      return {
        file,
        commonName: undefined,
        sans: [],
        notAfter: new Date(NaN),
        isCa: false,
        status: 'unreadable',
        keyPresent,
      };
    }
    const until = notAfter(x);
    let status: CertSummary['status'] = 'ok';
    if (!ca || !x.checkIssued(ca) || !x.verify(ca.publicKey)) status = 'foreign';
    else if (until.getTime() <= now.getTime()) status = 'expired';
    else if (until.getTime() - now.getTime() <= RENEW_WITHIN_MS) status = 'expiring';
    return {
      file,
      commonName: commonNameOf(x),
      sans: x.subjectAltName ? x.subjectAltName.split(', ') : [],
      notAfter: until,
      isCa: x.ca,
      status,
      keyPresent,
    };
  });
}
