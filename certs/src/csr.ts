import { constants, createPublicKey, verify, type KeyObject } from 'node:crypto';
import { DerError, children, decodeOid, readTlv, type Tlv } from './der.js';
import { PkiError } from './errors.js';
import {
  CLIENT_VALIDITY_DAYS,
  planLeafSigner,
  type CertKeyPem,
  type IssuedCert,
  type IssueOptions,
  type LeafSigner,
  type LoadedCa,
} from './pki.js';

const MAX_CSR_PEM_CHARS = 64 * 1024;
const MIN_RSA_BITS = 2048;
const MAX_RSA_BITS = 8192;

const SIGNATURE_HASHES: Record<string, string> = {
  '1.2.840.113549.1.1.11': 'sha256', // sha256WithRSAEncryption
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
};

interface ParsedCsr {
  info: Buffer; // CertificationRequestInfo, exactly as received (the signed bytes)
  subject: Array<{ oid: string; value: string }>;
  /** The CSR asks for attributes (e.g. extensionRequest with SANs): never honoured, but visible to callers. */
  hasAttributes: boolean;
  spki: Buffer;
  signatureOid: string;
  signature: Buffer;
}

function pemToDer(pem: string): Buffer {
  if (typeof pem !== 'string' || pem.length > MAX_CSR_PEM_CHARS) {
    throw new PkiError('CSR_INVALID', 'CSR must be a PEM string of at most 64 KiB');
  }
  const m =
    /-----BEGIN (NEW )?CERTIFICATE REQUEST-----\r?\n([A-Za-z0-9+/=\s]+?)-----END \1?CERTIFICATE REQUEST-----/.exec(
      pem,
    );
  if (!m) throw new PkiError('CSR_INVALID', 'no PEM "CERTIFICATE REQUEST" block found');
  const der = Buffer.from(m[2]!.replace(/\s+/g, ''), 'base64');
  if (der.length === 0) throw new PkiError('CSR_INVALID', 'empty CSR');
  return der;
}

function parseCsr(der: Buffer): ParsedCsr {
  try {
    const outer = readTlv(der, 0, der.length);
    if (outer.tag !== 0x30 || outer.end !== der.length) throw new DerError('CSR is not a single SEQUENCE');
    const [info, sigAlg, sigBits, ...rest] = children(der, outer);
    if (!info || !sigAlg || !sigBits || rest.length > 0) throw new DerError('CSR must have 3 elements');
    if (info.tag !== 0x30 || sigAlg.tag !== 0x30 || sigBits.tag !== 0x03)
      throw new DerError('unexpected CSR structure');
    const [version, subject, spki, attributes] = children(der, info);
    if (
      !version ||
      version.tag !== 0x02 ||
      version.end - version.contentStart !== 1 ||
      der[version.contentStart] !== 0
    ) {
      throw new DerError('CSR version must be 0 (v1)');
    }
    if (!subject || subject.tag !== 0x30 || !spki || spki.tag !== 0x30)
      throw new DerError('unexpected CSR info');
    const [oid] = children(der, sigAlg);
    if (!oid || oid.tag !== 0x06) throw new DerError('missing signature algorithm');
    if (sigBits.end - sigBits.contentStart < 2 || der[sigBits.contentStart] !== 0)
      throw new DerError('bad signature BIT STRING');
    return {
      info: der.subarray(info.start, info.end),
      subject: readName(der, subject),
      hasAttributes: attributes !== undefined && attributes.end > attributes.contentStart,
      spki: der.subarray(spki.start, spki.end),
      signatureOid: decodeOid(der.subarray(oid.contentStart, oid.end)),
      signature: der.subarray(sigBits.contentStart + 1, sigBits.end),
    };
  } catch (cause) {
    if (cause instanceof DerError)
      throw new PkiError('CSR_INVALID', `malformed CSR: ${cause.message}`, { cause });
    throw cause;
  }
}

const STRING_TAGS = new Set([0x0c, 0x13, 0x16, 0x14]); // UTF8String, PrintableString, IA5String, T61String

/** Name ::= SEQUENCE OF SET OF AttributeTypeAndValue; values of other string types are reported as ''. */
function readName(der: Buffer, name: Tlv): Array<{ oid: string; value: string }> {
  const out: Array<{ oid: string; value: string }> = [];
  for (const rdn of children(der, name)) {
    if (rdn.tag !== 0x31) throw new DerError('subject RDN is not a SET');
    for (const atv of children(der, rdn)) {
      const [oid, value] = children(der, atv);
      if (atv.tag !== 0x30 || !oid || oid.tag !== 0x06 || !value) throw new DerError('bad subject attribute');
      out.push({
        oid: decodeOid(der.subarray(oid.contentStart, oid.end)),
        value: STRING_TAGS.has(value.tag) ? der.subarray(value.contentStart, value.end).toString('utf8') : '',
      });
    }
  }
  return out;
}

const OID_COMMON_NAME = '2.5.4.3';

/** What a CSR asks for, before any signature or key check: callers decide whether the subject is acceptable. */
export interface CsrSubject {
  /** Every subject attribute in order (OID and string value). */
  attributes: Array<{ oid: string; value: string }>;
  /** The CN when the subject is exactly one CN and nothing else; otherwise undefined. */
  commonName: string | undefined;
  /** The CSR carries attributes such as requested extensions (SANs): they are never copied into a cert. */
  requestsAttributes: boolean;
}

/** Reads a CSR's subject (throws CSR_INVALID for a malformed CSR). */
export function inspectCsr(csrPem: string): CsrSubject {
  const csr = parseCsr(pemToDer(csrPem));
  const only = csr.subject.length === 1 ? csr.subject[0] : undefined;
  return {
    attributes: csr.subject,
    commonName: only?.oid === OID_COMMON_NAME ? only.value : undefined,
    requestsAttributes: csr.hasAttributes,
  };
}

/**
 * Checks a CSR without issuing anything: parsable, an RSA key of 2048..8192 bits, a supported signature
 * algorithm, and a self-signature that verifies (proof of possession). Returns the public key.
 */
export function verifyCsr(csrPem: string): KeyObject {
  const csr = parseCsr(pemToDer(csrPem));
  let key: KeyObject;
  try {
    key = createPublicKey({ key: csr.spki, format: 'der', type: 'spki' });
  } catch (cause) {
    throw new PkiError('CSR_INVALID', 'CSR public key cannot be parsed', { cause });
  }
  if (key.asymmetricKeyType !== 'rsa') {
    throw new PkiError('CSR_KEY_TYPE', `CSR key must be RSA, got ${String(key.asymmetricKeyType)}`);
  }
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < MIN_RSA_BITS || bits > MAX_RSA_BITS) {
    throw new PkiError(
      'CSR_KEY_TYPE',
      `CSR RSA key must be ${MIN_RSA_BITS}..${MAX_RSA_BITS} bits, got ${bits}`,
    );
  }
  const hash = SIGNATURE_HASHES[csr.signatureOid];
  if (!hash) throw new PkiError('CSR_INVALID', `unsupported CSR signature algorithm ${csr.signatureOid}`);
  let ok: boolean;
  try {
    ok = verify(hash, csr.info, { key, padding: constants.RSA_PKCS1_PADDING }, csr.signature);
  } catch (cause) {
    throw new PkiError('CSR_INVALID', 'CSR signature cannot be checked', { cause });
  }
  if (!ok) throw new PkiError('CSR_INVALID', 'CSR signature does not verify (tampered CSR or wrong key)');
  return key;
}

/** A CSR whose self-signature and key {@link verifyCsrOnce} checked: {@link signCsr} takes it without a re-check. */
export interface VerifiedCsr {
  readonly publicKey: KeyObject;
}

// Only objects made here are accepted as verified (a structurally equal object from elsewhere is not).
const verified = new WeakSet<VerifiedCsr>();

/** {@link verifyCsr}, remembered: pass the result to {@link signCsr} to issue without verifying twice. */
export function verifyCsrOnce(csrPem: string): VerifiedCsr {
  const out = Object.freeze({ publicKey: verifyCsr(csrPem) });
  verified.add(out);
  return out;
}

/**
 * Signs a PKCS#10 CSR as a client certificate (EKU clientAuth). The CSR only contributes its public key:
 * its subject and requested extensions are ignored — the issuer decides identity via `opts`.
 * Checks the CSR as {@link verifyCsr} does (unless given the result of {@link verifyCsrOnce}). Default
 * validity: 30 days. Pass a {@link loadCa} result as `ca` to sign many without re-parsing the CA each time.
 */
export function signCsr(
  ca: CertKeyPem | LoadedCa,
  csr: string | VerifiedCsr,
  opts: { commonName: string; uris: string[] } & IssueOptions,
): string {
  return issueFromCsr(ca, csr, opts).certPem;
}

/** {@link signCsr}, also returning Node's parsed view of the certificate (serial, fingerprint, validity). */
export function issueFromCsr(
  ca: CertKeyPem | LoadedCa,
  csr: string | VerifiedCsr,
  opts: { commonName: string; uris: string[] } & IssueOptions,
): IssuedCert {
  const key = csrKey(csr);
  return clientSigner(ca, opts).sign(key);
}

/** {@link issueFromCsr} with the RSA signature on libuv's thread pool (a server: the event loop stays free). */
export async function issueFromCsrAsync(
  ca: CertKeyPem | LoadedCa,
  csr: string | VerifiedCsr,
  opts: { commonName: string; uris: string[] } & IssueOptions,
): Promise<IssuedCert> {
  const key = csrKey(csr);
  return clientSigner(ca, opts).signAsync(key);
}

function csrKey(csr: string | VerifiedCsr): KeyObject {
  if (typeof csr !== 'string' && !verified.has(csr))
    throw new PkiError('CSR_INVALID', 'not a CSR checked by verifyCsrOnce');
  return typeof csr === 'string' ? verifyCsr(csr) : csr.publicKey;
}

function clientSigner(
  ca: CertKeyPem | LoadedCa,
  opts: { commonName: string; uris: string[] } & IssueOptions,
): LeafSigner {
  return planLeafSigner(
    ca,
    { commonName: opts.commonName, uris: opts.uris, eku: 'clientAuth', defaultDays: CLIENT_VALIDITY_DAYS },
    opts,
  );
}
