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
  const key = privateKeyFromRaw(raw);
  // The public key from OpenSSL too, computed once: nkeys' getPublicKey runs tweetnacl on every call, and the
  // jwt library calls it for each JWT it signs (per-device accounts sign one per device connection).
  const pub = rawPublicOf(key);
  const publicKey = encodeNkey(seedRolePrefix(seed), pub);
  // The jwt library also calls getPrivateKey to check a signer holds a seed: same encoding as nkeys (prefix P).
  const privateKey = encodeNkey(15 << 3, Buffer.concat([Buffer.from(raw), pub]));
  return Object.assign(Object.create(kp) as KeyPair, {
    getPublicKey: (): string => publicKey,
    getPrivateKey: (): Uint8Array => new TextEncoder().encode(privateKey),
    sign: (input: Uint8Array): Uint8Array => new Uint8Array(sign(null, input, key)),
    verify: (input: Uint8Array, sig: Uint8Array): boolean => verifyNkey(publicKey, input, sig),
  });
}

const SEED_PREFIX = 18 << 3;
const PLACEHOLDER_X = Buffer.alloc(32).toString('base64url');

/**
 * An Ed25519 private KeyObject from the 32 seed bytes. Through JWK: OpenSSL's PKCS#8 decoder takes ~2 ms a key
 * on a loaded 2-core host, the JWK path ~0.3 ms (a device account needs two keys). Node requires `x` but builds
 * the key from `d` alone (EVP_PKEY_new_raw_private_key) and derives the public key itself: the placeholder is
 * never used. Checked by test/nkey-crypto.test.ts against nkeys; should a Node release validate `x`, the import
 * throws (no silent wrong key).
 */
function privateKeyFromRaw(raw: Uint8Array): KeyObject {
  return createPrivateKey({
    key: { kty: 'OKP', crv: 'Ed25519', d: Buffer.from(raw).toString('base64url'), x: PLACEHOLDER_X },
    format: 'jwk',
  });
}

function rawPublicOf(key: KeyObject): Buffer {
  const jwk = createPublicKey(key).export({ format: 'jwk' });
  return Buffer.from(jwk.x!, 'base64url');
}

/** The role prefix byte (account `A` = 0, user `U` = 160, ...) a seed's first two bytes carry. */
function seedRolePrefix(seed: string): number {
  const b = base32Decode(seed);
  return ((b[0]! & 7) << 5) | ((b[1]! & 0xf8) >> 3);
}

/**
 * An nkey (public key and seed) from 32 raw seed bytes, with OpenSSL: what nkeys' fromSeed + getPublicKey
 * compute with tweetnacl, in microseconds. `rolePrefix`: 0 for an account key, 20 << 3 for a user key.
 */
export function nkeyFromRawSeed(raw: Uint8Array, rolePrefix: number): { publicKey: string; seed: string } {
  if (raw.length !== 32) throw new Error('an nkey seed is 32 bytes');
  const key = privateKeyFromRaw(raw);
  const seedBody = Buffer.concat([
    Buffer.from([SEED_PREFIX | (rolePrefix >> 5), (rolePrefix & 31) << 3]),
    Buffer.from(raw),
  ]);
  return { publicKey: encodeNkey(rolePrefix, rawPublicOf(key)), seed: withCrc(seedBody) };
}

function encodeNkey(prefix: number, raw: Buffer): string {
  return withCrc(Buffer.concat([Buffer.from([prefix]), raw]));
}

function withCrc(body: Buffer): string {
  const crc = crc16(body);
  return base32Encode(Buffer.concat([body, Buffer.from([crc & 0xff, crc >> 8])]));
}

function crc16(data: Uint8Array): number {
  let crc = 0;
  for (const b of data) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

function base32Encode(data: Buffer): string {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of data) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  return out;
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
