// Native Ed25519 for nkeys must be interchangeable with the nkeys library's (tweetnacl): same signatures, and
// JWTs decoded natively exactly when @nats-io/jwt's decode accepts them.
import { decode, encodeUser } from '@nats-io/jwt';
import { createAccount, createServer, createUser } from '@nats-io/nkeys';
import { describe, expect, it } from 'vitest';
import {
  decodeNatsJwt,
  nativeKeyPair,
  nkeyFromRawSeed,
  rawPublicKey,
  verifyNkey,
} from '../src/fleet/nkey-crypto.js';

describe('nkey-crypto (OpenSSL Ed25519 for nkeys)', () => {
  const data = new TextEncoder().encode('the server nonce');

  it('signs exactly as the nkeys library and verifies its signatures', () => {
    for (const kp of [createUser(), createAccount(), createServer()]) {
      const native = nativeKeyPair(new TextDecoder().decode(kp.getSeed()));
      expect(native.getPublicKey()).toBe(kp.getPublicKey());
      const sig = native.sign(data);
      // Ed25519 is deterministic: byte for byte the same signature.
      expect(Buffer.from(sig)).toEqual(Buffer.from(kp.sign(data)));
      expect(kp.verify(data, sig)).toBe(true);
      expect(verifyNkey(kp.getPublicKey(), data, kp.sign(data))).toBe(true);
      // The jwt library checks a signer with getPrivateKey: the same encoding as nkeys'.
      expect(new TextDecoder().decode(native.getPrivateKey())).toBe(
        new TextDecoder().decode(kp.getPrivateKey()),
      );
    }
  });

  it('derives an nkey from raw seed bytes exactly as nkeys does (device account keys)', () => {
    for (const [kp, role] of [
      [createAccount(), 0],
      [createUser(), 20 << 3],
    ] as const) {
      const raw = (kp as typeof kp & { getRawSeed(): Uint8Array }).getRawSeed();
      const derived = nkeyFromRawSeed(raw, role);
      expect(derived.publicKey).toBe(kp.getPublicKey());
      expect(derived.seed).toBe(new TextDecoder().decode(kp.getSeed()));
      const sig = nativeKeyPair(derived.seed).sign(data);
      expect(kp.verify(data, sig)).toBe(true);
    }
    expect(() => nkeyFromRawSeed(new Uint8Array(31), 0)).toThrow();
  });

  it('refuses a signature by another key, a modified message, and malformed keys and signatures', () => {
    const a = createUser();
    const b = createUser();
    const sig = a.sign(data);
    expect(verifyNkey(b.getPublicKey(), data, sig)).toBe(false);
    expect(verifyNkey(a.getPublicKey(), new TextEncoder().encode('the server nonce!'), sig)).toBe(false);
    expect(verifyNkey(a.getPublicKey(), data, sig.subarray(0, 63))).toBe(false);
    expect(verifyNkey('UNOTAKEY', data, sig)).toBe(false);
    const pk = a.getPublicKey();
    const flipped = pk.slice(0, 10) + (pk[10] === 'A' ? 'B' : 'A') + pk.slice(11); // CRC no longer matches
    expect(() => rawPublicKey(flipped)).toThrow();
    expect(rawPublicKey(pk)).toHaveLength(32);
  });

  it('decodes a JWT signed with a native signer like @nats-io/jwt does, and refuses a tampered one', async () => {
    const account = createAccount();
    const signer = nativeKeyPair(new TextDecoder().decode(createAccount().getSeed()));
    const user = createUser();
    const jwt = await encodeUser('t/d', user, account, { tags: ['x:y'] }, { signer, scopedUser: true });
    const native = decodeNatsJwt<{ tags: string[]; issuer_account: string }>(jwt);
    expect(native).toEqual(decode(jwt));
    expect(native.nats.issuer_account).toBe(account.getPublicKey());
    const [h, p, s] = jwt.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as { name: string };
    claims.name = 't/other';
    const forged = `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`;
    expect(() => decodeNatsJwt(forged)).toThrow(/signature/);
    expect(() => decode(forged)).toThrow();
    expect(() => decodeNatsJwt('a.b')).toThrow();
  });
});
