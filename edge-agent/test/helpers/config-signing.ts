import { CompactSign, exportJWK, generateKeyPair, type JWK } from 'jose';
import { DeviceConfig, SignedConfig } from '@vigil/proto';
import type { ConfigTrustSet } from '../../src/index.js';

/** The cloud's side in tests: an ES256 signing key whose public JWK is the agent's trust set. */
export interface TestSigner {
  kid: string;
  trust: ConfigTrustSet;
  sign(cfg: Partial<DeviceConfig>, header?: Record<string, unknown>): Promise<SignedConfig>;
}

export async function createSigner(kid = 'cfg-key-1'): Promise<TestSigner> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const pub: JWK = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
  return {
    kid,
    trust: { keys: [pub] },
    async sign(cfg, header = {}) {
      const body = DeviceConfig.fromPartial(cfg);
      const jws = await new CompactSign(DeviceConfig.encode(body).finish())
        .setProtectedHeader({ alg: 'ES256', kid, typ: 'vigil-config+jws', ...header })
        .sign(privateKey);
      return SignedConfig.fromPartial({ jws, keyId: kid, version: body.version });
    },
  };
}

/** The same JWS with one payload byte changed (the signature no longer matches). */
export function tamper(signed: SignedConfig): SignedConfig {
  const [h, p, s] = signed.jws.split('.') as [string, string, string];
  const bytes = Buffer.from(p, 'base64url');
  bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0x01;
  return { ...signed, jws: `${h}.${bytes.toString('base64url')}.${s}` };
}
