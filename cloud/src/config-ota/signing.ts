import { generateKeyPairSync, randomUUID } from 'node:crypto';
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
import { calculateJwkThumbprint, CompactSign, importJWK, type CryptoKey, type JWK } from 'jose';
import { ConfigError } from '../lib/errors.js';

/** The JWS `typ` of a signed device config. */
export const CONFIG_JWS_TYPE = 'vigil-config+jws';
export const CONFIG_JWS_ALG = 'ES256';

/** Dev files written by {@link ensureDevConfigSigningKey}. */
export const DEV_CONFIG_SIGNING_KEY_FILE = 'config-signing.jwk.json';
export const DEV_CONFIG_JWKS_FILE = 'config-jwks.json';

export interface ConfigSigningOptions {
  /** The ES256 private JWK (mode 0600). */
  privateJwkFile: string;
  /** Key id; default: the JWK's kid, else its RFC 7638 thumbprint. */
  kid?: string | undefined;
  /** A JWKS of earlier public keys that devices should still accept (rotation). */
  previousPublicJwksFile?: string | undefined;
}

/** Signs DeviceConfig bytes as a compact JWS (ES256, kid, typ vigil-config+jws). */
export class ConfigSigner {
  private constructor(
    readonly kid: string,
    private readonly key: CryptoKey | Uint8Array,
    /** The public JWKS (JSON text) devices verify with: the current key, then any previous ones. */
    readonly publicJwks: string,
  ) {}

  static async fromJwk(privateJwk: JWK, kid?: string, previous: readonly JWK[] = []): Promise<ConfigSigner> {
    if (privateJwk.kty !== 'EC' || privateJwk.crv !== 'P-256' || typeof privateJwk.d !== 'string')
      throw new ConfigError('configSigning: the key must be an EC P-256 private JWK (ES256)');
    const id = kid ?? privateJwk.kid ?? (await calculateJwkThumbprint(privateJwk));
    const key = await importJWK({ ...privateJwk, alg: CONFIG_JWS_ALG }, CONFIG_JWS_ALG);
    const publicJwk: JWK = {
      kty: 'EC',
      crv: 'P-256',
      x: privateJwk.x,
      y: privateJwk.y,
      kid: id,
      alg: CONFIG_JWS_ALG,
      use: 'sig',
    };
    const keys = [publicJwk, ...previous.filter((k) => k.kid !== id)];
    return new ConfigSigner(id, key, JSON.stringify({ keys }));
  }

  /** Reads the key files of config `configSigning` (the private key must not be readable by others). */
  static async load(opts: ConfigSigningOptions): Promise<ConfigSigner> {
    const jwk = readJson(opts.privateJwkFile, 'configSigning.privateJwkFile') as JWK;
    if ((statSync(opts.privateJwkFile).mode & 0o077) !== 0)
      throw new ConfigError(
        `configSigning.privateJwkFile: ${opts.privateJwkFile} is readable by group or others; chmod 600 it`,
      );
    let previous: JWK[] = [];
    if (opts.previousPublicJwksFile) {
      const set = readJson(opts.previousPublicJwksFile, 'configSigning.previousPublicJwksFile') as {
        keys?: unknown;
      };
      if (!Array.isArray(set.keys))
        throw new ConfigError('configSigning.previousPublicJwksFile: not a JWKS ({"keys": [...]})');
      previous = (set.keys as JWK[]).map((k) => {
        const { d: _d, ...pub } = k;
        return pub;
      });
    }
    return ConfigSigner.fromJwk(jwk, opts.kid, previous);
  }

  /** The compact JWS of `payload` (the serialized DeviceConfig). */
  sign(payload: Uint8Array): Promise<string> {
    return new CompactSign(payload)
      .setProtectedHeader({ alg: CONFIG_JWS_ALG, kid: this.kid, typ: CONFIG_JWS_TYPE })
      .sign(this.key);
  }
}

function readJson(path: string, key: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (cause) {
    throw new ConfigError(`${key}: ${path} cannot be read as JSON`, { cause });
  }
}

export interface DevConfigSigningKey {
  readonly privateJwkFile: string;
  readonly jwksFile: string;
}

/**
 * Creates (once) a development config signing key in `dir`: `config-signing.jwk.json` (private ES256 JWK,
 * 0600) and `config-jwks.json` (its public JWKS). Idempotent and safe to race (hard-link publication).
 */
export async function ensureDevConfigSigningKey(dir: string): Promise<DevConfigSigningKey> {
  const root = resolve(dir);
  mkdirSync(root, { recursive: true, mode: 0o700 });
  const privateJwkFile = join(root, DEV_CONFIG_SIGNING_KEY_FILE);
  const jwksFile = join(root, DEV_CONFIG_JWKS_FILE);
  if (!existsSync(privateJwkFile)) {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const jwk = privateKey.export({ format: 'jwk' }) as JWK;
    const kid = await calculateJwkThumbprint(jwk);
    const body = { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, d: jwk.d, kid, alg: 'ES256', use: 'sig' };
    const tmp = `${privateJwkFile}.${randomUUID()}.tmp`;
    writeFileSync(tmp, JSON.stringify(body, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
    try {
      linkSync(tmp, privateJwkFile);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      unlinkSync(tmp);
    }
  }
  if ((statSync(privateJwkFile).mode & 0o077) !== 0) chmodSync(privateJwkFile, 0o600);
  const signer = await ConfigSigner.load({ privateJwkFile });
  const text = JSON.stringify(JSON.parse(signer.publicJwks), null, 2) + '\n';
  if (!existsSync(jwksFile) || readFileSync(jwksFile, 'utf8') !== text) {
    const tmp = `${jwksFile}.${randomUUID()}.tmp`;
    writeFileSync(tmp, text, { mode: 0o644 });
    renameSync(tmp, jwksFile);
  }
  return { privateJwkFile, jwksFile };
}
