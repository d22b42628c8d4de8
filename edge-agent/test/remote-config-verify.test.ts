import { createHmac } from 'node:crypto';
import { CompactSign, exportJWK, generateKeyPair } from 'jose';
import { describe, expect, it } from 'vitest';
import { DeviceConfig } from '@vigil/proto';
import { ConfigRejectedError, verifySignedConfig, type VerifyConfigOptions } from '../src/index.js';
import { createSigner, tamper } from './helpers/config-signing.js';

const identity = { tenantId: 'acme', deviceId: 'gw-1' };
const now = new Date('2026-06-01T12:00:00Z');
const good = { version: 5n, tenantId: 'acme', deviceId: 'gw-1', issuedAt: now };

describe('verifySignedConfig', async () => {
  const signer = await createSigner();
  const opts = (o: Partial<VerifyConfigOptions> = {}): VerifyConfigOptions => ({
    trust: signer.trust,
    identity,
    highWater: 4n,
    now,
    ...o,
  });
  async function reason(p: Promise<unknown>): Promise<string> {
    const err = await p.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigRejectedError);
    return (err as ConfigRejectedError).reason;
  }

  it('accepts a good config and returns the decoded DeviceConfig', async () => {
    const cfg = await verifySignedConfig(
      await signer.sign({ ...good, cameras: [{ id: 'c1' } as never] }),
      opts(),
    );
    expect(cfg.version).toBe(5n);
    expect(cfg.cameras[0]?.id).toBe('c1');
  });

  it('refuses a non-JWS', async () => {
    expect(await reason(verifySignedConfig({ jws: 'garbage' }, opts()))).toBe('malformed');
  });

  it('refuses alg none and HS256 before any key is used', async () => {
    const payload = Buffer.from(DeviceConfig.encode(DeviceConfig.fromPartial(good)).finish()).toString(
      'base64url',
    );
    const hdr = (h: object): string => Buffer.from(JSON.stringify(h)).toString('base64url');
    const none = `${hdr({ alg: 'none', kid: signer.kid, typ: 'vigil-config+jws' })}.${payload}.`;
    expect(await reason(verifySignedConfig({ jws: none }, opts()))).toBe('alg');
    // HS256 "signed" with the public key's JSON as the secret: the classic key-confusion attack.
    const h = hdr({ alg: 'HS256', kid: signer.kid, typ: 'vigil-config+jws' });
    const mac = createHmac('sha256', JSON.stringify(signer.trust.keys[0]))
      .update(`${h}.${payload}`)
      .digest('base64url');
    expect(await reason(verifySignedConfig({ jws: `${h}.${payload}.${mac}` }, opts()))).toBe('alg');
  });

  it('refuses an unknown key id', async () => {
    expect(await reason(verifySignedConfig(await signer.sign(good, { kid: 'other' }), opts()))).toBe('kid');
  });

  it('refuses a tampered payload and a signature by another key with a trusted kid', async () => {
    expect(await reason(verifySignedConfig(tamper(await signer.sign(good)), opts()))).toBe('signature');
    const { privateKey } = await generateKeyPair('ES256');
    const forged = await new CompactSign(DeviceConfig.encode(DeviceConfig.fromPartial(good)).finish())
      .setProtectedHeader({ alg: 'ES256', kid: signer.kid, typ: 'vigil-config+jws' })
      .sign(privateKey);
    expect(await reason(verifySignedConfig({ jws: forged }, opts()))).toBe('signature');
  });

  it('refuses a wrong typ', async () => {
    expect(await reason(verifySignedConfig(await signer.sign(good, { typ: 'JWT' }), opts()))).toBe('typ');
  });

  it('refuses a payload that is not a DeviceConfig', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const jws = await new CompactSign(new Uint8Array([0xff, 0xff, 0xff]))
      .setProtectedHeader({ alg: 'ES256', kid: 'k2', typ: 'vigil-config+jws' })
      .sign(privateKey);
    const trust = { keys: [{ ...(await exportJWK(publicKey)), kid: 'k2' }] };
    expect(await reason(verifySignedConfig({ jws }, opts({ trust })))).toBe('decode');
  });

  it('refuses a config for another tenant or device', async () => {
    expect(await reason(verifySignedConfig(await signer.sign({ ...good, deviceId: 'gw-2' }), opts()))).toBe(
      'addressee',
    );
    expect(await reason(verifySignedConfig(await signer.sign({ ...good, tenantId: 'evil' }), opts()))).toBe(
      'addressee',
    );
  });

  it('refuses a version not above the high-water mark (replay, rollback)', async () => {
    expect(await reason(verifySignedConfig(await signer.sign(good), opts({ highWater: 5n })))).toBe('replay');
    expect(await reason(verifySignedConfig(await signer.sign({ ...good, version: 3n }), opts()))).toBe(
      'replay',
    );
  });

  it('refuses an expired config and one issued too far in the future', async () => {
    const expired = await signer.sign({ ...good, expiresAt: new Date(now.getTime() - 1) });
    expect(await reason(verifySignedConfig(expired, opts()))).toBe('expired');
    const ok = await signer.sign({ ...good, expiresAt: new Date(now.getTime() + 60_000) });
    await expect(verifySignedConfig(ok, opts())).resolves.toBeDefined();
    const future = await signer.sign({ ...good, issuedAt: new Date(now.getTime() + 6 * 60_000) });
    expect(await reason(verifySignedConfig(future, opts()))).toBe('not_yet_valid');
    const skew = await signer.sign({ ...good, issuedAt: new Date(now.getTime() + 4 * 60_000) });
    await expect(verifySignedConfig(skew, opts())).resolves.toBeDefined();
  });
});
