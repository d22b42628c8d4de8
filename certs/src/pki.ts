import {
  X509Certificate,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign,
  type KeyObject,
} from 'node:crypto';
import { isIP } from 'node:net';
import forge from 'node-forge';
import { PkiError } from './errors.js';

export interface CertKeyPem {
  certPem: string;
  keyPem: string;
}

export interface IssueOptions {
  /** Lifetime in days counted from `now`. */
  validityDays?: number;
  /** The clock; injected by tests. Defaults to the current time. */
  now?: Date;
}

export const RSA_BITS = 2048;
export const CA_VALIDITY_DAYS = 3650;
export const SERVER_VALIDITY_DAYS = 825;
export const CLIENT_VALIDITY_DAYS = 30;
/** notBefore is backdated by this much so a peer whose clock is slightly behind still accepts a fresh cert. */
export const CLOCK_SKEW_MS = 5 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;

const OID_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const OID_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
export const EKU = { serverAuth: OID_SERVER_AUTH, clientAuth: OID_CLIENT_AUTH } as const;

/** Not in @types/node-forge, but public in node-forge itself. */
const forgePki = forge.pki as typeof forge.pki & {
  getTBSCertificate(cert: forge.pki.Certificate): forge.asn1.Asn1;
};

type Extension = Record<string, unknown> & { name: string };
type Attr = { type?: string; name?: string; value: string; valueTagClass?: number };

/**
 * A fresh RSA-2048 key pair from Node's native crypto (OpenSSL). node-forge would also delegate to
 * `generateKeyPairSync` in Node, but its pure-JS fallback takes ~1 s per key, so we never go through it.
 * The private key is unencrypted PKCS#8 PEM, which Node, Go (nats-server) and OpenSSL all read.
 */
export function generateRsaKeyPair(): { keyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', {
    modulusLength: RSA_BITS,
    publicExponent: 0x10001,
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  return { keyPem: privateKey, publicKeyPem: publicKey };
}

/**
 * 16 random bytes as a positive DER INTEGER. The first byte is forced into 0x01..0x7f: < 0x80 keeps the
 * serial positive, and a zero first byte would be a non-minimal INTEGER encoding, which Go's x509 parser
 * (nats-server) rejects.
 */
export function randomSerialHex(): string {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f || 0x01;
  return b.toString('hex');
}

function validity(opts: IssueOptions, defaultDays: number): { notBefore: Date; notAfter: Date } {
  const days = opts.validityDays ?? defaultDays;
  if (typeof days !== 'number' || !Number.isFinite(days) || days <= 0) {
    throw new PkiError('INVALID_ARGUMENT', `validityDays must be a positive number, got ${String(days)}`);
  }
  const now = opts.now ?? new Date();
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) {
    throw new PkiError('INVALID_ARGUMENT', 'now must be a valid Date');
  }
  return {
    notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
    notAfter: new Date(now.getTime() + days * DAY_MS),
  };
}

function assertCommonName(cn: string): void {
  if (typeof cn !== 'string' || cn.length === 0 || cn.length > 64 || /\p{Cc}/u.test(cn)) {
    throw new PkiError(
      'INVALID_ARGUMENT',
      `invalid commonName ${JSON.stringify(cn)}: expected 1-64 printable characters`,
    );
  }
}

const DNS_LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const DNS_RE = new RegExp(`^(?:\\*\\.)?${DNS_LABEL}(?:\\.${DNS_LABEL})*$`, 'i');

function subjectAltNames(dnsNames: string[], ipAddresses: string[], uris: string[]): Extension | null {
  const altNames: Array<Record<string, unknown>> = [];
  for (const name of dnsNames) {
    if (typeof name !== 'string' || name.length > 253 || !DNS_RE.test(name)) {
      throw new PkiError('INVALID_ARGUMENT', `invalid DNS name ${JSON.stringify(name)}`);
    }
    altNames.push({ type: 2, value: name });
  }
  for (const ip of ipAddresses) {
    if (typeof ip !== 'string' || isIP(ip) === 0) {
      throw new PkiError('INVALID_ARGUMENT', `invalid IP address ${JSON.stringify(ip)}`);
    }
    altNames.push({ type: 7, ip });
  }
  for (const uri of uris) {
    let ok = typeof uri === 'string' && /^[\x21-\x7e]+$/.test(uri);
    if (ok) {
      try {
        ok = new URL(uri).protocol.length > 1;
      } catch {
        ok = false;
      }
    }
    if (!ok) throw new PkiError('INVALID_ARGUMENT', `invalid URI ${JSON.stringify(uri)}`);
    altNames.push({ type: 6, value: uri });
  }
  return altNames.length > 0 ? { name: 'subjectAltName', altNames } : null;
}

/** The parsed issuing CA: forge view (for the issuer DN and SKI), Node view (for checks), signing key. */
export interface LoadedCa {
  forgeCert: forge.pki.Certificate;
  x509: X509Certificate;
  key: KeyObject;
}

export function loadCa(ca: CertKeyPem): LoadedCa {
  let x509: X509Certificate;
  let key: KeyObject;
  let forgeCert: forge.pki.Certificate;
  try {
    x509 = new X509Certificate(ca.certPem);
    key = createPrivateKey(ca.keyPem);
  } catch (cause) {
    throw new PkiError('CA_INVALID', 'the CA certificate or key cannot be parsed', { cause });
  }
  try {
    forgeCert = forge.pki.certificateFromPem(ca.certPem);
  } catch (cause) {
    throw new PkiError('CA_INVALID', 'the CA certificate is not an RSA certificate node-forge can read', {
      cause,
    });
  }
  if (!x509.ca)
    throw new PkiError(
      'CA_INVALID',
      `${x509.subject} is not a CA certificate (basicConstraints cA is not set)`,
    );
  if (!x509.checkPrivateKey(key))
    throw new PkiError('CA_INVALID', 'the CA key does not match the CA certificate');
  return { forgeCert, x509, key };
}

/** The CA's subject, re-encoded exactly as parsed (forge keeps UTF8String values as raw UTF-8 bytes on parse
 *  but encodes them again on output, so they are decoded here to avoid double encoding). */
function issuerAttributes(caCert: forge.pki.Certificate): Attr[] {
  return (caCert.subject.attributes as Attr[]).map((a) => {
    const out: Attr = { type: a.type!, value: a.value };
    if (a.valueTagClass !== undefined) {
      out.valueTagClass = a.valueTagClass;
      if (a.valueTagClass === (forge.asn1.Type.UTF8 as number)) out.value = forge.util.decodeUtf8(a.value);
    }
    return out;
  });
}

function caKeyIdentifier(ca: LoadedCa): string {
  const ext = ca.forgeCert.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | null;
  if (ext?.subjectKeyIdentifier) return forge.util.hexToBytes(ext.subjectKeyIdentifier);
  return ca.forgeCert.generateSubjectKeyIdentifier().getBytes();
}

interface BuildParams {
  commonName: string;
  publicKeyPem: string;
  issuer: Attr[] | 'self';
  signingKey: KeyObject;
  notBefore: Date;
  notAfter: Date;
  extensions: Extension[];
}

/** Builds the TBSCertificate with forge and signs it with Node's crypto (OpenSSL, constant-time RSA). */
function buildCert(p: BuildParams): string {
  const cert = forge.pki.createCertificate();
  cert.version = 2; // v3
  cert.serialNumber = randomSerialHex();
  cert.publicKey = forge.pki.publicKeyFromPem(p.publicKeyPem);
  cert.validity.notBefore = p.notBefore;
  cert.validity.notAfter = p.notAfter;
  // UTF8String, not forge's default PrintableString (which cannot carry '_' and other characters our ids allow).
  const subject: Attr[] = [{ name: 'commonName', value: p.commonName, valueTagClass: forge.asn1.Type.UTF8 }];
  cert.setSubject(subject);
  cert.setIssuer(p.issuer === 'self' ? subject : p.issuer);
  cert.setExtensions(p.extensions);
  cert.signatureOid = forge.pki.oids.sha256WithRSAEncryption!;
  cert.siginfo.algorithmOid = forge.pki.oids.sha256WithRSAEncryption!;
  const tbs = forgePki.getTBSCertificate(cert);
  const tbsDer = Buffer.from(forge.asn1.toDer(tbs).getBytes(), 'binary');
  cert.tbsCertificate = tbs;
  cert.signature = sign('sha256', tbsDer, p.signingKey).toString('binary');
  return forge.pki.certificateToPem(cert);
}

/** Self-signed RSA-2048 CA: basicConstraints cA (pathlen 0), keyUsage keyCertSign+cRLSign, SKI. Default 3650 days. */
export function createCa(opts: { commonName: string } & IssueOptions): CertKeyPem {
  assertCommonName(opts.commonName);
  validity(opts, CA_VALIDITY_DAYS); // fail before spending time on a key
  const { keyPem } = generateRsaKeyPair();
  return { certPem: selfSignCa(keyPem, opts), keyPem };
}

/** Self-signs a CA certificate for an existing key (used to recover a lost ca.crt without changing the key). */
export function selfSignCa(keyPem: string, opts: { commonName: string } & IssueOptions): string {
  assertCommonName(opts.commonName);
  const { notBefore, notAfter } = validity(opts, CA_VALIDITY_DAYS);
  let signingKey: KeyObject;
  try {
    signingKey = createPrivateKey(keyPem);
  } catch (cause) {
    throw new PkiError('CA_INVALID', 'the CA key cannot be parsed', { cause });
  }
  if (signingKey.asymmetricKeyType !== 'rsa') {
    throw new PkiError('CA_INVALID', `the CA key must be RSA, got ${String(signingKey.asymmetricKeyType)}`);
  }
  const publicKeyPem = createPublicKey(signingKey).export({ type: 'spki', format: 'pem' }) as string;
  const certPem = buildCert({
    commonName: opts.commonName,
    publicKeyPem,
    issuer: 'self',
    signingKey,
    notBefore,
    notAfter,
    extensions: [
      { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
      { name: 'subjectKeyIdentifier' },
    ],
  });
  const x = new X509Certificate(certPem);
  if (!x.checkIssued(x) || !x.verify(x.publicKey))
    throw new PkiError('INTERNAL', 'self-signed CA does not verify');
  return certPem;
}

export interface LeafParams {
  commonName: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  uris?: string[];
  /** `serverAndClientAuth`: a NATS route certificate, presented both when accepting and when dialing a route. */
  eku: 'serverAuth' | 'clientAuth' | 'serverAndClientAuth';
  defaultDays: number;
}

/**
 * Validates everything about a leaf (CA, names, validity) and returns the signer for its public key, so callers
 * only spend time on key generation once the request is known to be good. The signer checks that the result
 * chains to the CA before returning it.
 */
export function planLeaf(
  ca: CertKeyPem | LoadedCa,
  p: LeafParams,
  opts: IssueOptions,
): (publicKeyPem: string) => string {
  const loaded = 'x509' in ca ? ca : loadCa(ca);
  assertCommonName(p.commonName);
  const san = subjectAltNames(p.dnsNames ?? [], p.ipAddresses ?? [], p.uris ?? []);
  const { notBefore, notAfter } = validity(opts, p.defaultDays);
  const extensions: Extension[] = [
    { name: 'basicConstraints', cA: false, critical: true },
    p.eku === 'clientAuth'
      ? { name: 'keyUsage', digitalSignature: true, critical: true }
      : { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    p.eku === 'serverAndClientAuth'
      ? { name: 'extKeyUsage', serverAuth: true, clientAuth: true }
      : { name: 'extKeyUsage', [p.eku]: true },
    ...(san ? [san] : []),
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: caKeyIdentifier(loaded) },
  ];
  const issuer = issuerAttributes(loaded.forgeCert);
  return (publicKeyPem) => {
    const certPem = buildCert({
      commonName: p.commonName,
      publicKeyPem,
      issuer,
      signingKey: loaded.key,
      notBefore,
      notAfter,
      extensions,
    });
    const x = new X509Certificate(certPem);
    if (!x.checkIssued(loaded.x509) || !x.verify(loaded.x509.publicKey)) {
      throw new PkiError(
        'INTERNAL',
        `issued certificate for ${p.commonName} does not verify against ${loaded.x509.subject}`,
      );
    }
    return certPem;
  };
}

function issueWithNewKey(ca: CertKeyPem, p: LeafParams, opts: IssueOptions): CertKeyPem {
  const signer = planLeaf(ca, p, opts);
  const { keyPem, publicKeyPem } = generateRsaKeyPair();
  return { certPem: signer(publicKeyPem), keyPem };
}

/** Server certificate (EKU serverAuth only) with DNS and IP SANs and a fresh RSA-2048 key. Default 825 days. */
export function issueServerCert(
  ca: CertKeyPem,
  opts: { commonName: string; dnsNames: string[]; ipAddresses: string[] } & IssueOptions,
): CertKeyPem {
  if ((opts.dnsNames?.length ?? 0) + (opts.ipAddresses?.length ?? 0) === 0) {
    throw new PkiError('INVALID_ARGUMENT', 'a server certificate needs at least one DNS name or IP address');
  }
  return issueWithNewKey(
    ca,
    {
      commonName: opts.commonName,
      dnsNames: opts.dnsNames,
      ipAddresses: opts.ipAddresses,
      eku: 'serverAuth',
      defaultDays: SERVER_VALIDITY_DAYS,
    },
    opts,
  );
}

/**
 * Route certificate of a NATS cluster node (EKU serverAuth and clientAuth): a node presents it when it accepts a
 * route and when it dials one, and the other node verifies it against the CA either way (mutual TLS between
 * nodes). A serverAuth-only certificate is refused by the accepting node ("incompatible key usage").
 */
export function issueRouteCert(
  ca: CertKeyPem,
  opts: { commonName: string; dnsNames: string[]; ipAddresses: string[] } & IssueOptions,
): CertKeyPem {
  if ((opts.dnsNames?.length ?? 0) + (opts.ipAddresses?.length ?? 0) === 0) {
    throw new PkiError('INVALID_ARGUMENT', 'a route certificate needs at least one DNS name or IP address');
  }
  return issueWithNewKey(
    ca,
    {
      commonName: opts.commonName,
      dnsNames: opts.dnsNames,
      ipAddresses: opts.ipAddresses,
      eku: 'serverAndClientAuth',
      defaultDays: SERVER_VALIDITY_DAYS,
    },
    opts,
  );
}

/** Client certificate (EKU clientAuth) with URI SANs and a fresh RSA-2048 key. Default 30 days. */
export function issueClientCert(
  ca: CertKeyPem,
  opts: { commonName: string; uris?: string[] } & IssueOptions,
): CertKeyPem {
  return issueWithNewKey(
    ca,
    {
      commonName: opts.commonName,
      uris: opts.uris ?? [],
      eku: 'clientAuth',
      defaultDays: CLIENT_VALIDITY_DAYS,
    },
    opts,
  );
}
