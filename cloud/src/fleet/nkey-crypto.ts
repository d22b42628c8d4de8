/*
 * Ed25519 for nkeys with Node's own crypto (OpenSSL). The nkeys/jwt libraries sign and verify with tweetnacl in
 * pure JavaScript: measured 60-80 ms per operation on a loaded 2-core host, five of them per device connection in
 * the auth callout, each blocking the event loop. OpenSSL does the same in microseconds. Keys keep their nkey
 * encoding (prefix, base32, CRC) everywhere else; only the curve arithmetic moves here.
 */
import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { fromPublic, fromSeed, type KeyPair } from '@nats-io/nkeys';

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** The 32 raw key bytes of a public nkey (its prefix and CRC checked by the nkeys library first). */
export function rawPublicKey(publicKey: string): Buffer {
  fromPublic(publicKey); // throws on a bad prefix, length or CRC
  return base32Decode(publicKey).subarray(1, 33);
}

const publicCache = new Map<string, KeyObject>();
const PUBLIC_CACHE_MAX = 256;

function publicKeyObject(publicKey: string): KeyObject {
  let k = publicCache.get(publicKey);
  if (!k) {
    const x = rawPublicKey(publicKey).toString('base64url');
    k = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' });
    // Bounded: signing keys and servers repeat, device keys mostly do not.
    if (publicCache.size >= PUBLIC_CACHE_MAX) publicCache.delete(publicCache.keys().next().value!);
    publicCache.set(publicKey, k);
  }
  return k;
}

/** Verifies an Ed25519 signature by a public nkey; false for any malformed input. */
export function verifyNkey(publicKey: string, data: Uint8Array, signature: Uint8Array): boolean {
  try {
    return signature.length === 64 && verify(null, data, publicKeyObject(publicKey), signature);
  } catch {
    return false;
  }
}

/**
 * A KeyPair for a seed that signs with OpenSSL; usable wherever @nats-io/jwt takes a signer (it calls
 * getPublicKey, getPrivateKey and sign).
 */
export function nativeKeyPair(seed: string): KeyPair {
  const kp = fromSeed(new TextEncoder().encode(seed));
  const raw = (kp as KeyPair & { getRawSeed(): Uint8Array }).getRawSeed();
  const x = rawPublicKey(kp.getPublicKey()).toString('base64url');
  const key = createPrivateKey({
    key: { kty: 'OKP', crv: 'Ed25519', x, d: Buffer.from(raw).toString('base64url') },
    format: 'jwk',
  });
  return Object.assign(Object.create(kp) as KeyPair, {
    sign: (input: Uint8Array): Uint8Array => new Uint8Array(sign(null, input, key)),
    verify: (input: Uint8Array, sig: Uint8Array): boolean => verifyNkey(kp.getPublicKey(), input, sig),
  });
}

/** A NATS JWT's claims after checking its signature by its `iss` (what @nats-io/jwt decode does, natively). */
export function decodeNatsJwt<T>(jwt: string): {
  iss: string;
  sub: string;
  aud?: string;
  name?: string;
  exp?: number;
  nbf?: number;
  iat?: number;
  nats: T;
} {
  const parts = jwt.split('.');
  if (parts.length !== 3) throw new Error('not a JWT');
  const [h, p, s] = parts as [string, string, string];
  const header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as { typ?: string; alg?: string };
  if (header.typ?.toUpperCase() !== 'JWT' || header.alg !== 'ed25519-nkey')
    throw new Error('not a NATS v2 JWT');
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as ReturnType<
    typeof decodeNatsJwt<T>
  >;
  if (typeof claims.iss !== 'string' || typeof claims.sub !== 'string')
    throw new Error('JWT without iss or sub');
  if (!verifyNkey(claims.iss, new TextEncoder().encode(`${h}.${p}`), Buffer.from(s, 'base64url')))
    throw new Error('JWT signature does not verify');
  if (typeof claims.nats !== 'object' || claims.nats === null) throw new Error('JWT without nats claims');
  return claims;
}

function base32Decode(s: string): Buffer {
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const ch of s) {
    const i = B32.indexOf(ch);
    if (i < 0) throw new Error('not base32');
    value = (value << 5) | i;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}
