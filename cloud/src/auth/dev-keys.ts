import { createHash, generateKeyPairSync, randomUUID } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  linkSync,
  mkdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { SignJWT, type JWK } from 'jose';

/*
 * Development token signing. `./dev up` (and tests) call ensureDevSigningKey(<dev PKI dir>) and point the
 * cloud's `auth.jwksFile` at the public JWKS; the CLI reads the private key to mint tokens. The dev PKI dir
 * (.vigil/pki) is gitignored: the private key never goes into git. Production uses a real identity
 * provider through `auth.jwksUrl`.
 */

/** Private signing key (a JWK with kid and alg), mode 0600. */
export const DEV_SIGNING_KEY_FILE = 'api-signing.jwk.json';
/** The public JWKS for `auth.jwksFile`. */
export const DEV_JWKS_FILE = 'api-jwks.json';

export interface DevSigningKey {
  readonly kid: string;
  readonly alg: 'ES256';
  /** Private JWK (kty EC, crv P-256, with d, kid, alg, use). */
  readonly privateJwk: JWK;
  /** The same key without `d`. */
  readonly publicJwk: JWK;
  readonly privateKeyFile: string;
  readonly jwksFile: string;
}

interface EcJwk {
  kty: string;
  crv: string;
  x: string;
  y: string;
  d: string;
}

function isEcP256Private(v: unknown): v is EcJwk {
  const k = v as Partial<EcJwk> | null;
  return (
    !!k &&
    k.kty === 'EC' &&
    k.crv === 'P-256' &&
    typeof k.x === 'string' &&
    typeof k.y === 'string' &&
    typeof k.d === 'string'
  );
}

/** RFC 7638 JWK thumbprint (SHA-256, base64url) of an EC public key: a stable key id. */
function thumbprint(k: EcJwk): string {
  const canonical = JSON.stringify({ crv: k.crv, kty: k.kty, x: k.x, y: k.y });
  return createHash('sha256').update(canonical).digest('base64url');
}

/**
 * Creates (once) an ES256 key pair in `dir`: `api-signing.jwk.json` (private, 0600) and `api-jwks.json`
 * (public JWKS with the key's kid). Idempotent and safe to race: the private key is published with a
 * hard link, which fails if another process got there first, and the JWKS is derived from it. Call it
 * after the dev PKI exists (`ensureDevPki` refuses a non-empty dir without ca.crt).
 */
export function ensureDevSigningKey(dir: string): DevSigningKey {
  const root = resolve(dir);
  mkdirSync(root, { recursive: true, mode: 0o700 });
  const privateKeyFile = join(root, DEV_SIGNING_KEY_FILE);
  const jwksFile = join(root, DEV_JWKS_FILE);

  if (!existsSync(privateKeyFile)) {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const jwk = privateKey.export({ format: 'jwk' }) as EcJwk;
    const kid = thumbprint(jwk);
    const body = { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, d: jwk.d, kid, alg: 'ES256', use: 'sig' };
    const tmp = `${privateKeyFile}.${randomUUID()}.tmp`;
    writeFileSync(tmp, JSON.stringify(body, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
    try {
      linkSync(tmp, privateKeyFile);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err; // a concurrent caller won: use theirs
    } finally {
      unlinkSync(tmp);
    }
  }

  let stored: unknown;
  try {
    stored = JSON.parse(readFileSync(privateKeyFile, 'utf8'));
  } catch (err) {
    throw new Error(
      `${privateKeyFile} is unreadable (${(err as Error).message}); delete it to make a new one`,
      {
        cause: err,
      },
    );
  }
  if (!isEcP256Private(stored))
    throw new Error(`${privateKeyFile} is not an EC P-256 private JWK; delete it to make a new one`);
  if ((statSync(privateKeyFile).mode & 0o077) !== 0) chmodSync(privateKeyFile, 0o600);

  const kid = thumbprint(stored);
  const publicJwk: JWK = {
    kty: stored.kty,
    crv: stored.crv,
    x: stored.x,
    y: stored.y,
    kid,
    alg: 'ES256',
    use: 'sig',
  };
  const privateJwk: JWK = { ...publicJwk, d: stored.d };
  const jwksText = JSON.stringify({ keys: [publicJwk] }, null, 2) + '\n';
  const current = existsSync(jwksFile) ? readFileSync(jwksFile, 'utf8') : null;
  if (current !== jwksText) {
    const tmp = `${jwksFile}.${randomUUID()}.tmp`;
    writeFileSync(tmp, jwksText, { mode: 0o644 });
    renameSync(tmp, jwksFile);
  }
  return { kid, alg: 'ES256', privateJwk, publicJwk, privateKeyFile, jwksFile };
}

export interface MintDevTokenOptions {
  key: Pick<DevSigningKey, 'privateJwk' | 'kid' | 'alg'>;
  issuer: string;
  audience: string;
  tenant: string;
  roles: readonly string[];
  /** A site-scoped user: the `sites` claim (absent: the whole tenant). */
  sites?: readonly string[] | undefined;
  sub: string;
  ttlSeconds: number;
  /** The clock; injected by tests (e.g. to mint an expired token). */
  now?: Date;
}

/**
 * Signs a development access token: ES256, kid header, iss/aud/sub/iat/exp plus `tenant`, `roles` and, for a
 * site-scoped user, `sites`.
 */
export async function mintDevToken(opts: MintDevTokenOptions): Promise<string> {
  const iat = Math.floor((opts.now ?? new Date()).getTime() / 1000);
  const claims = { tenant: opts.tenant, roles: [...opts.roles] };
  return new SignJWT(opts.sites === undefined ? claims : { ...claims, sites: [...opts.sites] })
    .setProtectedHeader({ alg: opts.key.alg, kid: opts.key.kid, typ: 'JWT' })
    .setIssuer(opts.issuer)
    .setAudience(opts.audience)
    .setSubject(opts.sub)
    .setIssuedAt(iat)
    .setExpirationTime(iat + opts.ttlSeconds)
    .sign(opts.key.privateJwk);
}
