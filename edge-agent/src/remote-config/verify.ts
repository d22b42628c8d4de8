/**
 * Verification of a SignedConfig before anything in it is acted on. The checks run in a fixed order and the
 * first failure wins; each failure names its reason (a metric label and the ConfigStatus reason prefix).
 *
 * The algorithm is pinned to ES256 and checked from the protected header before any key is used: a token
 * that says `alg: none` or `HS256` (the classic "verify with the public key as an HMAC secret" attack) is
 * refused without being verified at all. Only then the key is chosen by `kid` from the trust set.
 */
import { compactVerify, decodeProtectedHeader, importJWK, type JWK } from 'jose';
import { DeviceConfig, type SignedConfig } from '@vigil/proto';

export const CONFIG_JWS_ALG = 'ES256';
export const CONFIG_JWS_TYP = 'vigil-config+jws';
/** How far in the future issued_at may lie (clock skew between cloud and device). */
export const MAX_ISSUED_AHEAD_MS = 5 * 60_000;

export type ConfigRejectReason =
  | 'malformed'
  | 'alg'
  | 'kid'
  | 'signature'
  | 'typ'
  | 'decode'
  | 'addressee'
  | 'replay'
  | 'expired'
  | 'not_yet_valid'
  | 'invalid';

/** A refused config; `reason` is a stable label, the message says what exactly was wrong. */
export class ConfigRejectedError extends Error {
  override readonly name = 'ConfigRejectedError';
  constructor(
    readonly reason: ConfigRejectReason,
    message: string,
  ) {
    super(`${reason}: ${message}`);
  }
}

/** A JWKS (`{keys: [...]}`), as the cloud hands it out in EnrollResponse/RenewResponse.config_signing_jwks. */
export interface ConfigTrustSet {
  keys: JWK[];
}

export interface VerifyConfigOptions {
  trust: ConfigTrustSet;
  identity: { tenantId: string; deviceId: string };
  /** The highest config version this device ever accepted; only a greater one passes. */
  highWater: bigint;
  now: Date;
}

/** Parses a JWKS JSON text; throws on anything that is not `{keys: [objects]}`. */
export function parseTrustSet(text: string): ConfigTrustSet {
  const v = JSON.parse(text) as unknown;
  if (
    typeof v !== 'object' ||
    v === null ||
    !Array.isArray((v as { keys?: unknown }).keys) ||
    !(v as { keys: unknown[] }).keys.every((k) => typeof k === 'object' && k !== null)
  )
    throw new Error('a JWKS must be {"keys": [...]}');
  return v as ConfigTrustSet;
}

/** Verifies signature, addressee, monotonicity and validity window; returns the decoded DeviceConfig. */
export async function verifySignedConfig(
  signed: Pick<SignedConfig, 'jws'>,
  opts: VerifyConfigOptions,
): Promise<DeviceConfig> {
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(signed.jws);
  } catch (err) {
    throw new ConfigRejectedError('malformed', `not a compact JWS (${(err as Error).message})`);
  }
  if (signed.jws.split('.').length !== 3) throw new ConfigRejectedError('malformed', 'not a compact JWS');
  if (header.alg !== CONFIG_JWS_ALG)
    throw new ConfigRejectedError('alg', `algorithm ${JSON.stringify(header.alg)} refused (only ES256)`);
  const jwk = opts.trust.keys.find((k) => k.kid !== undefined && k.kid === header.kid);
  if (!jwk) throw new ConfigRejectedError('kid', `key id ${JSON.stringify(header.kid)} is not trusted`);
  let payload: Uint8Array;
  try {
    const key = await importJWK({ ...jwk, alg: CONFIG_JWS_ALG }, CONFIG_JWS_ALG);
    ({ payload } = await compactVerify(signed.jws, key, { algorithms: [CONFIG_JWS_ALG] }));
  } catch (err) {
    throw new ConfigRejectedError('signature', `signature verification failed (${(err as Error).message})`);
  }
  if (header.typ !== CONFIG_JWS_TYP)
    throw new ConfigRejectedError('typ', `type ${JSON.stringify(header.typ)} is not ${CONFIG_JWS_TYP}`);
  let cfg: DeviceConfig;
  try {
    cfg = DeviceConfig.decode(payload);
  } catch (err) {
    throw new ConfigRejectedError('decode', `payload is not a DeviceConfig (${(err as Error).message})`);
  }
  const { tenantId, deviceId } = opts.identity;
  if (cfg.tenantId !== tenantId || cfg.deviceId !== deviceId)
    throw new ConfigRejectedError(
      'addressee',
      `config is addressed to ${cfg.tenantId}/${cfg.deviceId}, not to this device (${tenantId}/${deviceId})`,
    );
  if (cfg.version <= opts.highWater)
    throw new ConfigRejectedError(
      'replay',
      `version ${cfg.version} is not newer than the highest accepted version ${opts.highWater}`,
    );
  const now = opts.now.getTime();
  if (cfg.expiresAt && cfg.expiresAt.getTime() <= now)
    throw new ConfigRejectedError('expired', `config expired at ${cfg.expiresAt.toISOString()}`);
  if (cfg.issuedAt && cfg.issuedAt.getTime() > now + MAX_ISSUED_AHEAD_MS)
    throw new ConfigRejectedError(
      'not_yet_valid',
      `issued_at ${cfg.issuedAt.toISOString()} is more than 5 minutes in the future`,
    );
  return cfg;
}
