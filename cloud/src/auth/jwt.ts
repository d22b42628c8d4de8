import { readFileSync, statSync } from 'node:fs';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  errors,
  jwtVerify,
  type JSONWebKeySet,
  type JWTVerifyGetKey,
} from 'jose';
import { z } from 'zod';
import { ConfigError } from '../lib/errors.js';
import { AuthenticationError, KeySourceUnavailableError, type AuthFailureReason } from './errors.js';
import { SITE_ID_PATTERN, TENANT_ID_PATTERN, type Principal } from './principal.js';

/** Asymmetric JWS algorithms only: a JWKS holds public keys, and `none`/HMAC must never verify a user token. */
export const ALLOWED_JWT_ALGORITHMS = [
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
] as const;
export type JwtAlgorithm = (typeof ALLOWED_JWT_ALGORITHMS)[number];

/** The `auth` section of the cloud config. */
export interface TokenVerifierOptions {
  issuer: string;
  audience: string;
  algorithms: readonly JwtAlgorithm[];
  jwksFile?: string | undefined;
  jwksUrl?: string | undefined;
  clockToleranceSeconds: number;
  /** Longest lifetime (`exp - iat`) a token may have; default {@link DEFAULT_MAX_TOKEN_LIFETIME_SECONDS}. */
  maxTokenLifetimeSeconds?: number | undefined;
}

/** Config auth.maxTokenLifetimeSeconds by default: 24 h (the CLI's `token mint --ttl` allows as much). */
export const DEFAULT_MAX_TOKEN_LIFETIME_SECONDS = 86_400;

export interface TokenVerifier {
  /** Verifies a compact JWS and returns its principal; throws AuthenticationError (or KeySourceUnavailableError). */
  verify(token: string): Promise<Principal>;
}

/** The claims Vigil needs beyond the registered ones; other claims are ignored. */
const vigilClaims = z.object({
  sub: z.string().min(1).max(256),
  tenant: z.string().regex(TENANT_ID_PATTERN),
  roles: z.array(z.string().min(1).max(64)).max(64).default([]),
  /** Present for a site-scoped user: the sites of its tenant it may act on (authorization enforces it). */
  sites: z.array(z.string().regex(SITE_ID_PATTERN)).max(256).optional(),
});

/** Longest compact token accepted; a real one is well under 2 KiB. */
export const MAX_TOKEN_LENGTH = 8192;

/**
 * Reads a public JWKS file at start-up. A file holding private key material is refused: it is almost
 * certainly the signing key by mistake, and the API process has no business holding it.
 */
export function loadJwksFile(path: string): JSONWebKeySet {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ConfigError(`auth.jwksFile: cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  const keys = (parsed as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.length === 0 || !keys.every((k) => k && typeof k === 'object')) {
    throw new ConfigError(
      `auth.jwksFile: ${path} is not a JWKS (expected {"keys": [ ... ]} with at least one key)`,
    );
  }
  for (const k of keys as Array<Record<string, unknown>>) {
    if ('d' in k || 'k' in k || 'p' in k) {
      throw new ConfigError(
        `auth.jwksFile: ${path} contains private or symmetric key material; point it at the public JWKS`,
      );
    }
  }
  return { keys: keys as JSONWebKeySet['keys'] };
}

/** How often the JWKS file's mtime is looked at (key rotation without a restart). */
export const JWKS_FILE_CHECK_MS = 5_000;

/**
 * A JWKS file, read now (a bad file fails the start) and again whenever its mtime changes (checked at most
 * every JWKS_FILE_CHECK_MS), so keys rotate by rewriting the file: add the new key, switch signers, later
 * drop the old one. A rewritten file that is invalid is ignored (the last good keys stay) until it is fixed.
 */
export function rotatingFileKeys(path: string, now: () => number = Date.now): JWTVerifyGetKey {
  let keys = createLocalJWKSet(loadJwksFile(path));
  let mtime = statSync(path).mtimeMs;
  let checkedAt = now();
  return (header, token) => {
    if (now() - checkedAt >= JWKS_FILE_CHECK_MS) {
      checkedAt = now();
      try {
        const m = statSync(path).mtimeMs;
        if (m !== mtime) {
          keys = createLocalJWKSet(loadJwksFile(path));
          mtime = m;
        }
      } catch {
        // Unreadable or invalid for now (mid-rewrite?): keep verifying with the last good keys.
      }
    }
    return keys(header, token);
  };
}

/** The key source named by the config: a JWKS file (re-read when it changes) or a JWKS URL (cached by jose). */
export function keySourceFromConfig(opts: TokenVerifierOptions): {
  getKey: JWTVerifyGetKey;
  remote: boolean;
} {
  if (opts.jwksFile) return { getKey: rotatingFileKeys(opts.jwksFile), remote: false };
  if (opts.jwksUrl) {
    return {
      getKey: createRemoteJWKSet(new URL(opts.jwksUrl), {
        timeoutDuration: 5_000,
        cooldownDuration: 30_000,
        cacheMaxAge: 10 * 60_000,
      }),
      remote: true,
    };
  }
  throw new ConfigError('auth: one of auth.jwksFile or auth.jwksUrl is required when the API is enabled');
}

function reasonOf(err: errors.JOSEError): AuthFailureReason {
  switch (err.code) {
    case 'ERR_JWT_EXPIRED':
      return 'expired';
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      return 'claims';
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return 'signature';
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
    case 'ERR_JOSE_NOT_SUPPORTED':
      return 'algorithm';
    case 'ERR_JWKS_NO_MATCHING_KEY':
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return 'unknown_key';
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
      return 'malformed';
    default:
      return 'other';
  }
}

/**
 * The rules jose does not apply (issue 12, finding 7), on a payload whose signature, `iss`, `aud` and `exp`
 * jose accepted; a refusal reason and detail, or null. `now` in seconds.
 *
 * - `iat` is required, finite and not in the future beyond the clock tolerance: a lifetime is measured from it.
 * - `exp` is finite (`1e400` parses as Infinity, which jose takes for a time far ahead: a token that never
 *   expires), `exp - iat` is at most the maximum lifetime, and so is `exp - now` (beyond the tolerance).
 * - `aud` names our audience alone: the string, or an array of exactly that one member. A token minted for
 *   several APIs could be replayed by any of them against the others, so it is refused here.
 */
export function checkTokenRules(
  payload: Record<string, unknown>,
  now: number,
  opts: { audience: string; clockToleranceSeconds: number; maxTokenLifetimeSeconds: number },
): { reason: AuthFailureReason; detail: string } | null {
  const { iat, exp, aud } = payload;
  const max = opts.maxTokenLifetimeSeconds;
  const tol = opts.clockToleranceSeconds;
  if (typeof exp !== 'number' || !Number.isFinite(exp))
    return { reason: 'claims', detail: 'exp must be a finite number' };
  if (typeof iat !== 'number' || !Number.isFinite(iat))
    return { reason: 'claims', detail: 'iat is required and must be a finite number' };
  if (iat > now + tol) return { reason: 'claims', detail: `iat is ${iat - now} s in the future` };
  if (exp - iat > max)
    return { reason: 'lifetime', detail: `lifetime exp - iat = ${exp - iat} s exceeds ${max} s` };
  if (exp - now > max + tol)
    return { reason: 'lifetime', detail: `exp is ${exp - now} s ahead, more than ${max} s` };
  if (Array.isArray(aud) && (aud.length !== 1 || aud[0] !== opts.audience))
    return {
      reason: 'claims',
      detail: `aud lists ${aud.length} audiences; only ["${opts.audience}"] is accepted`,
    };
  return null;
}

/**
 * Bearer token verification: algorithms pinned, `iss`, `aud`, `exp`, `iat` and `sub` required and checked,
 * clock tolerance bounded, lifetime bounded and `aud` exactly ours ({@link checkTokenRules}), then the Vigil
 * claims (`tenant`, `roles`, optional `sites`) validated. `getKey` is injectable for tests.
 */
export function createTokenVerifier(
  opts: TokenVerifierOptions,
  source: { getKey: JWTVerifyGetKey; remote: boolean } = keySourceFromConfig(opts),
): TokenVerifier {
  const verifyOptions = {
    algorithms: [...opts.algorithms],
    issuer: opts.issuer,
    audience: opts.audience,
    clockTolerance: opts.clockToleranceSeconds,
    requiredClaims: ['iss', 'aud', 'exp', 'iat', 'sub'],
  };
  const limits = {
    audience: opts.audience,
    clockToleranceSeconds: opts.clockToleranceSeconds,
    maxTokenLifetimeSeconds: opts.maxTokenLifetimeSeconds ?? DEFAULT_MAX_TOKEN_LIFETIME_SECONDS,
  };
  return {
    async verify(token: string): Promise<Principal> {
      if (token.length > MAX_TOKEN_LENGTH)
        throw new AuthenticationError('malformed', `token longer than ${MAX_TOKEN_LENGTH} characters`);
      let payload: Record<string, unknown>;
      try {
        ({ payload } = await jwtVerify(token, source.getKey, verifyOptions));
      } catch (err) {
        if (err instanceof errors.JOSEError) {
          if (err.code === 'ERR_JWKS_TIMEOUT' || (source.remote && err.code === 'ERR_JWKS_INVALID'))
            throw new KeySourceUnavailableError('the token signing keys cannot be fetched', { cause: err });
          const claim = err instanceof errors.JWTClaimValidationFailed ? ` (claim ${err.claim})` : '';
          throw new AuthenticationError(reasonOf(err), `${err.code}: ${err.message}${claim}`, { cause: err });
        }
        // Not a verdict on the token: the remote key set could not be fetched (network, DNS, TLS...).
        if (source.remote)
          throw new KeySourceUnavailableError('the token signing keys cannot be fetched', { cause: err });
        throw err;
      }
      const refused = checkTokenRules(payload, Math.floor(Date.now() / 1000), limits);
      if (refused) throw new AuthenticationError(refused.reason, refused.detail);
      return principalFromClaims(payload);
    },
  };
}

/**
 * The principal of verified claims (`sub`, `tenant`, `roles`, optional `sites`): the one mapping of the API's
 * bearer tokens and the console's OpenID Connect ID tokens. Throws AuthenticationError('claims').
 */
export function principalFromClaims(payload: Record<string, unknown>): Principal {
  const claims = vigilClaims.safeParse(payload);
  if (!claims.success) {
    const what = claims.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new AuthenticationError('claims', `vigil claims invalid: ${what}`);
  }
  const { sub, tenant, roles, sites } = claims.data;
  return sites === undefined ? { subject: sub, tenant, roles } : { subject: sub, tenant, roles, sites };
}
