import { X509Certificate, createPrivateKey } from 'node:crypto';
import { jwtClaims, parseCreds } from './creds.js';
import { IdentityError, type IdentityErrorCode } from './errors.js';
import { natsPublicKeyOf } from './keys.js';

/** Everything secret or signed that makes up a device identity, as PEM/text. */
export interface IdentityMaterial {
  keyPem: string;
  certPem: string;
  /** The CA chain, PEM certificates concatenated (leaf-most first). */
  caPem: string;
  natsJwt: string;
  natsSeed: string;
}

export interface CheckedMaterial {
  notBefore: Date;
  notAfter: Date;
  natsPublicKey: string;
}

/** What the checks call each piece in their messages: file paths for the store, field names for the cloud. */
export interface MaterialNames {
  key: string;
  cert: string;
  ca: string;
  creds: string;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----/g;

export function splitPemCerts(pem: string): string[] {
  return pem.match(PEM_CERT) ?? [];
}

/**
 * Checks that the pieces belong together, so that a mix-up is caught here with a message naming the piece
 * instead of as a TLS handshake or NATS authorization failure much later:
 * - the certificate parses, is for `deviceId` (CN), matches the private key and is issued by the CA chain;
 * - the NATS seed is a user seed and the JWT (when it names a subject) is bound to its public key.
 * Throws IdentityError(code) naming the piece at fault.
 */
export function checkMaterial(
  m: IdentityMaterial,
  deviceId: string,
  names: MaterialNames,
  code: IdentityErrorCode,
): CheckedMaterial {
  const fail = (message: string, cause?: unknown): never => {
    throw new IdentityError(code, message, { cause });
  };
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(m.certPem);
  } catch (cause) {
    return fail(`${names.cert} is not a PEM certificate`, cause);
  }
  let keyMatches: boolean;
  try {
    keyMatches = cert.checkPrivateKey(createPrivateKey(m.keyPem));
  } catch (cause) {
    return fail(`${names.key} is not a readable private key`, cause);
  }
  if (!keyMatches) fail(`the certificate in ${names.cert} does not match the private key in ${names.key}`);
  const cn = /^CN=(.*)$/m.exec(cert.subject)?.[1];
  if (cn !== deviceId) {
    fail(`the certificate in ${names.cert} is for CN=${String(cn)}, not for device "${deviceId}"`);
  }
  const cas = splitPemCerts(m.caPem).flatMap((pem) => {
    try {
      return [new X509Certificate(pem)];
    } catch {
      return [];
    }
  });
  if (cas.length === 0) fail(`${names.ca} holds no PEM certificate`);
  if (!cas.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey))) {
    fail(`the certificate in ${names.cert} is not issued by the CA chain in ${names.ca}`);
  }
  let natsPublicKey = '';
  try {
    natsPublicKey = natsPublicKeyOf(m.natsSeed);
  } catch (cause) {
    fail(`${names.creds} holds no valid NATS seed`, cause);
  }
  if (!natsPublicKey.startsWith('U')) fail(`${names.creds} holds a NATS seed that is not a user seed`);
  const claims = jwtClaims(m.natsJwt);
  if (!claims) fail(`${names.creds} holds no readable NATS user JWT`);
  if (claims?.sub !== undefined && claims.sub !== natsPublicKey) {
    fail(
      `the NATS user JWT in ${names.creds} is for ${JSON.stringify(claims.sub)}, not for its seed (${natsPublicKey})`,
    );
  }
  return { notBefore: new Date(cert.validFrom), notAfter: new Date(cert.validTo), natsPublicKey };
}

/** The JWT and seed of a creds file, or an IdentityError naming it. */
export function readCredsText(
  text: string,
  name: string,
  code: IdentityErrorCode,
): { jwt: string; seed: string } {
  const parsed = parseCreds(text);
  if (!parsed) throw new IdentityError(code, `${name} is not a NATS credentials file`);
  return parsed;
}
