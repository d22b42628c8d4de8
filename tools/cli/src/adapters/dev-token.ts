import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT, type JWK } from 'jose';
import { CliError } from '../errors.js';

/*
 * Dev tokens, minted with the signing key that the cloud's dev-keys module creates in the dev PKI dir
 * (cloud/src/auth/dev-keys.ts writes it; `./dev up` calls it). The CLI only reads the key: there is one
 * writer of that file. The claims match what the cloud verifies (auth/jwt.ts): iss, aud, sub, exp, tenant,
 * roles.
 */

/** File name of the private dev signing key in the PKI dir (must match cloud DEV_SIGNING_KEY_FILE). */
export const DEV_SIGNING_KEY_FILE = 'api-signing.jwk.json';
/** Defaults of the cloud's `auth.issuer` / `auth.audience`. */
export const DEFAULT_ISSUER = 'vigil-dev';
export const DEFAULT_AUDIENCE = 'vigil-api';
export const MAX_TTL_SECONDS = 86_400;

/**
 * The subject of a dev token minted without --sub: a dev user of that tenant with those roles. The cloud
 * records it as the principal (who revoked a device, who created a token), so it names the roles, not the CLI.
 */
export function devSubject(tenant: string, roles: readonly string[]): string {
  return `dev-${roles.join('+')}@${tenant}`;
}
export const DEV_SUBJECT_HELP = 'the principal the cloud records as acting (default: dev-<roles>@<tenant>)';

export interface DevKey {
  kid: string;
  jwk: JWK;
  file: string;
}

export function loadDevSigningKey(pkiDir: string): DevKey {
  const file = join(pkiDir, DEV_SIGNING_KEY_FILE);
  let jwk: JWK;
  try {
    jwk = JSON.parse(readFileSync(file, 'utf8')) as JWK;
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new CliError(
      missing
        ? `no dev signing key at ${file}: \`./dev up\` (or \`pnpm up\`) creates it; or pass --pki <dir>, or --token`
        : `cannot read ${file}: ${(err as Error).message}`,
      1,
      { cause: err },
    );
  }
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || typeof jwk.d !== 'string' || typeof jwk.kid !== 'string')
    throw new CliError(`${file} is not an ES256 private JWK with a kid`);
  return { kid: jwk.kid, jwk, file };
}

export interface MintOptions {
  tenant: string;
  roles: readonly string[];
  sub: string;
  ttlSeconds: number;
  issuer: string;
  audience: string;
  now?: Date;
}

export interface MintedToken {
  token: string;
  expiresAt: Date;
  claims: Record<string, unknown>;
}

export async function mintToken(key: DevKey, o: MintOptions): Promise<MintedToken> {
  const iat = Math.floor((o.now ?? new Date()).getTime() / 1000);
  const exp = iat + o.ttlSeconds;
  const claims = {
    iss: o.issuer,
    aud: o.audience,
    sub: o.sub,
    tenant: o.tenant,
    roles: [...o.roles],
    iat,
    exp,
  };
  const token = await new SignJWT({ tenant: o.tenant, roles: [...o.roles] })
    .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: 'JWT' })
    .setIssuer(o.issuer)
    .setAudience(o.audience)
    .setSubject(o.sub)
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .sign(key.jwk);
  return { token, expiresAt: new Date(exp * 1000), claims };
}
