import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, jwtVerify, SignJWT, type CryptoKey } from 'jose';
import { afterAll, describe, expect, it } from 'vitest';
import { JWKS_FILE_CHECK_MS, rotatingFileKeys } from '../src/auth/jwt.js';

describe('JWKS file rotation', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-jwks-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'jwks.json');

  async function key(kid: string): Promise<{ kid: string; priv: CryptoKey; pub: Record<string, unknown> }> {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    return { kid, priv: privateKey, pub: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } };
  }
  const token = (k: { kid: string; priv: CryptoKey }): Promise<string> =>
    new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: k.kid }).setExpirationTime('1m').sign(k.priv);
  const write = (keys: Array<Record<string, unknown>>, mtime: number): void => {
    writeFileSync(file, JSON.stringify({ keys }));
    utimesSync(file, mtime, mtime);
  };

  it('picks up a rewritten file (new key added, then old one dropped), and ignores a broken rewrite', async () => {
    const k1 = await key('k1');
    const k2 = await key('k2');
    write([k1.pub], 1_000);
    let clock = 0;
    const getKey = rotatingFileKeys(file, () => clock);
    await expect(jwtVerify(await token(k1), getKey)).resolves.toBeDefined();
    await expect(jwtVerify(await token(k2), getKey)).rejects.toThrow();

    write([k1.pub, k2.pub], 2_000);
    // Not looked at again before the check interval...
    await expect(jwtVerify(await token(k2), getKey)).rejects.toThrow();
    clock += JWKS_FILE_CHECK_MS;
    await expect(jwtVerify(await token(k2), getKey)).resolves.toBeDefined();

    write([k2.pub], 3_000);
    clock += JWKS_FILE_CHECK_MS;
    await expect(jwtVerify(await token(k1), getKey)).rejects.toThrow();
    await expect(jwtVerify(await token(k2), getKey)).resolves.toBeDefined();

    writeFileSync(file, '{"keys": [');
    utimesSync(file, 4_000, 4_000);
    clock += JWKS_FILE_CHECK_MS;
    await expect(jwtVerify(await token(k2), getKey)).resolves.toBeDefined();
  });
});
