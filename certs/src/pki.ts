import {
  X509Certificate,
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign,
  type KeyObject,
} from 'node:crypto';
import { isIP } from 'node:net';
import { DerError, children, decodeOid, readTlv } from './der.js';
import * as der from './der-write.js';
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

/** The GeneralNames of a subjectAltName extension (DER), or null when there are none. */
function subjectAltNames(dnsNames: string[], ipAddresses: string[], uris: string[]): Buffer | null {
  const altNames: Buffer[] = [];
  for (const name of dnsNames) {
    if (typeof name !== 'string' || name.length > 253 || !DNS_RE.test(name)) {
      throw new PkiError('INVALID_ARGUMENT', `invalid DNS name ${JSON.stringify(name)}`);
    }
    altNames.push(der.implicitPrimitive(2, Buffer.from(name, 'ascii')));
  }
  for (const ip of ipAddresses) {
    if (typeof ip !== 'string' || isIP(ip) === 0 || ip.includes('%')) {
      throw new PkiError('INVALID_ARGUMENT', `invalid IP address ${JSON.stringify(ip)}`);
    }
    altNames.push(der.implicitPrimitive(7, der.ipBytes(ip)));
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
    altNames.push(der.implicitPrimitive(6, Buffer.from(uri, 'ascii')));
  }
  return altNames.length > 0 ? der.seq(...altNames) : null;
}

/** One Extension (RFC 5280): critical only when true (DER omits the default). */
function extension(oid: string, value: Buffer, critical = false): Buffer {
  return der.seq(der.oid(oid), ...(critical ? [der.booleanTrue()] : []), der.octetString(value));
}

const OID = {
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  commonName: '2.5.4.3',
  sha256WithRSAEncryption: '1.2.840.113549.1.1.11',
} as const;

/** keyUsage bits (first byte, RFC 5280 order): digitalSignature 0x80, keyEncipherment 0x20, keyCertSign 0x04, cRLSign 0x02. */
const KU = { digitalSignature: 0x80, keyEncipherment: 0x20, keyCertSign: 0x04, cRLSign: 0x02 } as const;

/** The parsed issuing CA: its subject (DER, copied verbatim as the issuer), key identifier, Node views, signing key. */
export interface LoadedCa {
  x509: X509Certificate;
  key: KeyObject;
  /** The CA certificate's subject Name exactly as encoded in it: a leaf's issuer matches it byte for byte. */
  subjectDer: Buffer;
  /** The CA's subjectKeyIdentifier (or, without one, the SHA-1 of its public key): the leaves' AKI. */
  keyIdentifier: Buffer;
}

/**
 * Parses and checks the CA once (certificate, key, that they match, cA set). Callers that issue many
 * certificates (the cloud's enrollment) keep the result: re-parsing the CA key costs more than a signature.
 */
export function loadCa(ca: CertKeyPem): LoadedCa {
  let x509: X509Certificate;
  let key: KeyObject;
  try {
    x509 = new X509Certificate(ca.certPem);
    key = createPrivateKey(ca.keyPem);
  } catch (cause) {
    throw new PkiError('CA_INVALID', 'the CA certificate or key cannot be parsed', { cause });
  }
  if (!x509.ca)
    throw new PkiError(
      'CA_INVALID',
      `${x509.subject} is not a CA certificate (basicConstraints cA is not set)`,
    );
  if (!x509.checkPrivateKey(key))
    throw new PkiError('CA_INVALID', 'the CA key does not match the CA certificate');
  if (key.asymmetricKeyType !== 'rsa')
    throw new PkiError('CA_INVALID', `the CA key must be RSA, got ${String(key.asymmetricKeyType)}`);
  try {
    const parts = certificateParts(x509.raw);
    return {
      x509,
      key,
      subjectDer: parts.subject,
      keyIdentifier: parts.subjectKeyIdentifier ?? publicKeyIdentifier(x509.publicKey),
    };
  } catch (cause) {
    throw new PkiError('CA_INVALID', 'the CA certificate cannot be parsed', { cause });
  }
}

/** The subject Name and the subjectKeyIdentifier of a certificate (DER), read with the strict reader of der.ts. */
function certificateParts(raw: Buffer): { subject: Buffer; subjectKeyIdentifier: Buffer | undefined } {
  const [tbs] = children(raw, readTlv(raw, 0, raw.length));
  if (!tbs) throw new DerError('empty certificate');
  const fields = children(raw, tbs);
  const offset = fields[0]?.tag === 0xa0 ? 1 : 0; // [0] version is absent in v1 certificates
  const subject = fields[offset + 4];
  if (!subject || subject.tag !== 0x30) throw new DerError('no subject');
  let ski: Buffer | undefined;
  const extsField = fields.find((f) => f.tag === 0xa3);
  if (extsField) {
    const [exts] = children(raw, extsField);
    for (const ext of exts ? children(raw, exts) : []) {
      const parts = children(raw, ext);
      const id = parts[0];
      const value = parts[parts.length - 1];
      if (!id || !value || decodeOid(raw.subarray(id.contentStart, id.end)) !== OID.subjectKeyIdentifier)
        continue;
      const inner = readTlv(raw, value.contentStart, value.end); // OCTET STRING inside the extnValue
      if (inner.tag === 0x04) ski = Buffer.from(raw.subarray(inner.contentStart, inner.end));
    }
  }
  return { subject: Buffer.from(raw.subarray(subject.start, subject.end)), subjectKeyIdentifier: ski };
}

/** RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING's value (the RSAPublicKey DER). */
function publicKeyIdentifier(key: KeyObject | Buffer): Buffer {
  const spki = Buffer.isBuffer(key) ? key : key.export({ type: 'spki', format: 'der' });
  const [, bits] = children(spki, readTlv(spki, 0, spki.length));
  if (!bits || bits.tag !== 0x03) throw new DerError('no subjectPublicKey');
  return createHash('sha1')
    .update(spki.subarray(bits.contentStart + 1, bits.end))
    .digest();
}

interface BuildParams {
  commonName: string;
  publicKey: KeyObject;
  /** The issuer Name (DER), or 'self' for a self-signed certificate (issuer = subject). */
  issuer: Buffer | 'self';
  signingKey: KeyObject;
  notBefore: Date;
  notAfter: Date;
  /** Extensions (DER) in order; 'ski': the subjectKeyIdentifier of `publicKey`, at that place. */
  extensions: Array<Buffer | 'ski'>;
}

/** The TBSCertificate (DER) and its signature algorithm, built natively with der-write.ts. */
function buildTbs(p: BuildParams): { tbs: Buffer; algorithm: Buffer } {
  const algorithm = der.seq(der.oid(OID.sha256WithRSAEncryption), der.nullValue());
  // UTF8String, not PrintableString (which cannot carry '_' and other characters our ids allow).
  const subject = der.seq(der.set(der.seq(der.oid(OID.commonName), der.utf8String(p.commonName))));
  const spki = p.publicKey.export({ type: 'spki', format: 'der' });
  const tbs = der.seq(
    der.explicit(0, der.smallInteger(2)), // v3
    der.integer(Buffer.from(randomSerialHex(), 'hex')),
    algorithm,
    p.issuer === 'self' ? subject : p.issuer,
    der.seq(der.time(p.notBefore), der.time(p.notAfter)),
    subject,
    spki,
    der.explicit(
      3,
      der.seq(
        ...p.extensions.map((e) =>
          e === 'ski' ? extension(OID.subjectKeyIdentifier, der.octetString(publicKeyIdentifier(spki))) : e,
        ),
      ),
    ),
  );
  return { tbs, algorithm };
}

function assemble(tbs: Buffer, algorithm: Buffer, signature: Buffer): { certPem: string; der: Buffer } {
  const cert = der.seq(tbs, algorithm, der.bitString(signature));
  return { certPem: der.toPem(cert, 'CERTIFICATE'), der: cert };
}

/** Builds the certificate and signs it with Node's crypto (OpenSSL, constant-time RSA), on this thread. */
function buildCert(p: BuildParams): { certPem: string; der: Buffer } {
  const { tbs, algorithm } = buildTbs(p);
  return assemble(tbs, algorithm, sign('sha256', tbs, p.signingKey));
}

/**
 * The same, with the RSA signature computed on libuv's thread pool: the one expensive step (~0.5 ms idle, several
 * ms on a loaded host) no longer blocks the event loop, so a server's other requests (and their database round
 * trips, some under a lock) go on meanwhile, and a second core can sign.
 */
async function buildCertAsync(p: BuildParams): Promise<{ certPem: string; der: Buffer }> {
  const { tbs, algorithm } = buildTbs(p);
  const signature = await new Promise<Buffer>((resolve, reject) =>
    sign('sha256', tbs, p.signingKey, (err, sig) => (err ? reject(err) : resolve(sig))),
  );
  return assemble(tbs, algorithm, signature);
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
  const { certPem } = buildCert({
    commonName: opts.commonName,
    publicKey: createPublicKey(signingKey),
    issuer: 'self',
    signingKey,
    notBefore,
    notAfter,
    extensions: [
      extension(OID.basicConstraints, der.seq(der.booleanTrue(), der.smallInteger(0)), true),
      extension(OID.keyUsage, der.namedBits([KU.keyCertSign | KU.cRLSign]), true),
      'ski',
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

/** A certificate as issued: its PEM and Node's parsed view (callers read serial, fingerprint, validity from it). */
export interface IssuedCert {
  certPem: string;
  x509: X509Certificate;
}

/** Signs the planned leaf for a public key: on this thread, or with the RSA signature on the thread pool. */
export interface LeafSigner {
  sign(publicKey: KeyObject): IssuedCert;
  signAsync(publicKey: KeyObject): Promise<IssuedCert>;
}

/**
 * Validates everything about a leaf (CA, names, validity) and returns the signer for its public key, so callers
 * only spend time on key generation once the request is known to be good. The signer checks that the result
 * chains to the CA before returning it. Pass a {@link loadCa} result to issue many without re-parsing the CA.
 */
export function planLeafSigner(ca: CertKeyPem | LoadedCa, p: LeafParams, opts: IssueOptions): LeafSigner {
  const loaded = 'x509' in ca ? ca : loadCa(ca);
  assertCommonName(p.commonName);
  const san = subjectAltNames(p.dnsNames ?? [], p.ipAddresses ?? [], p.uris ?? []);
  const { notBefore, notAfter } = validity(opts, p.defaultDays);
  const ekus = p.eku === 'serverAndClientAuth' ? [OID_SERVER_AUTH, OID_CLIENT_AUTH] : [EKU[p.eku]];
  const extensions: Array<Buffer | 'ski'> = [
    extension(OID.basicConstraints, der.seq(), true), // cA FALSE: the DEFAULT, so omitted
    extension(
      OID.keyUsage,
      der.namedBits([
        p.eku === 'clientAuth' ? KU.digitalSignature : KU.digitalSignature | KU.keyEncipherment,
      ]),
      true,
    ),
    extension(OID.extKeyUsage, der.seq(...ekus.map((o) => der.oid(o)))),
    ...(san ? [extension(OID.subjectAltName, san)] : []),
    'ski',
    extension(OID.authorityKeyIdentifier, der.seq(der.implicitPrimitive(0, loaded.keyIdentifier))),
  ];
  const params = (publicKey: KeyObject): BuildParams => ({
    commonName: p.commonName,
    publicKey,
    issuer: loaded.subjectDer,
    signingKey: loaded.key,
    notBefore,
    notAfter,
    extensions,
  });
  const checked = ({ certPem, der: raw }: { certPem: string; der: Buffer }): IssuedCert => {
    const x509 = new X509Certificate(raw);
    if (!x509.checkIssued(loaded.x509) || !x509.verify(loaded.x509.publicKey)) {
      throw new PkiError(
        'INTERNAL',
        `issued certificate for ${p.commonName} does not verify against ${loaded.x509.subject}`,
      );
    }
    return { certPem, x509 };
  };
  return {
    sign: (publicKey) => checked(buildCert(params(publicKey))),
    signAsync: async (publicKey) => checked(await buildCertAsync(params(publicKey))),
  };
}

/** {@link planLeafSigner} for a public key in PEM, returning the certificate PEM. */
export function planLeaf(
  ca: CertKeyPem | LoadedCa,
  p: LeafParams,
  opts: IssueOptions,
): (publicKeyPem: string) => string {
  const signer = planLeafSigner(ca, p, opts);
  return (publicKeyPem) => signer.sign(createPublicKey(publicKeyPem)).certPem;
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
