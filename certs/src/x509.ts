import type { X509Certificate } from 'node:crypto';
import forge from 'node-forge';

/** X509Certificate.validFromDate/validToDate only exist from Node 22.10; parse the OpenSSL date strings. */
export function notBefore(x: X509Certificate): Date {
  return new Date(Date.parse(x.validFrom));
}

export function notAfter(x: X509Certificate): Date {
  return new Date(Date.parse(x.validTo));
}

export function commonNameOf(x: X509Certificate): string | undefined {
  for (const line of x.subject.split('\n')) {
    if (line.startsWith('CN=')) return line.slice(3);
  }
  return undefined;
}

export interface SanSet {
  dns: string[];
  ip: string[]; // canonical hex of the address bytes
  uri: string[];
}

function ipHex(ip: string): string {
  const util = forge.util as typeof forge.util & { bytesFromIP(ip: string): string | null };
  const bytes = util.bytesFromIP(ip);
  return bytes === null ? `invalid:${ip}` : forge.util.bytesToHex(bytes);
}

export function sanSetOf(certPem: string): SanSet {
  const cert = forge.pki.certificateFromPem(certPem);
  const ext = cert.getExtension('subjectAltName') as {
    altNames?: Array<{ type: number; value: string }>;
  } | null;
  const out: SanSet = { dns: [], ip: [], uri: [] };
  for (const n of ext?.altNames ?? []) {
    if (n.type === 2) out.dns.push(n.value.toLowerCase());
    else if (n.type === 7) out.ip.push(forge.util.bytesToHex(n.value));
    else if (n.type === 6) out.uri.push(n.value);
  }
  return out;
}

export function expectedSanSet(dnsNames: string[], ipAddresses: string[], uris: string[]): SanSet {
  return { dns: dnsNames.map((d) => d.toLowerCase()), ip: ipAddresses.map(ipHex), uri: [...uris] };
}

export function sameSans(a: SanSet, b: SanSet): boolean {
  const eq = (x: string[], y: string[]) =>
    x.length === y.length && [...x].sort().every((v, i) => v === [...y].sort()[i]);
  return eq(a.dns, b.dns) && eq(a.ip, b.ip) && eq(a.uri, b.uri);
}
