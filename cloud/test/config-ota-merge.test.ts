// Config OTA without services: inheritance (tenant < site < device), body validation, the DeviceConfig
// mapping, signing keys.
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compactVerify, createLocalJWKSet } from 'jose';
import { describe, expect, it } from 'vitest';
import {
  ConfigSigner,
  configBodySchema,
  ensureDevConfigSigningKey,
  mergeConfigBodies,
  toDeviceConfig,
  type ConfigBody,
} from '../src/index.js';

const sha = 'a'.repeat(64);
const tenant: ConfigBody = {
  models: [{ name: 'yolox', type: 'yolox', sha256: sha }],
  buffer: { maxBytes: 1000, ttlSeconds: 3600 },
  privacy: { redactFaces: true },
  attributes: { region: 'eu', tier: 'gold' },
};
const site: ConfigBody = {
  cameras: [{ id: 'lobby', url: 'rtsp://cam/lobby', modelName: 'yolox' }],
  buffer: { ttlSeconds: 60 },
  attributes: { tier: 'silver' },
};
const device: ConfigBody = {
  cameras: [{ id: 'door', url: 'rtsp://cam/door' }],
  attributes: { owner: 'ops' },
};

describe('config inheritance', () => {
  it('merges objects key by key, the most specific level winning', () => {
    const out = mergeConfigBodies(tenant, site, device);
    expect(out.buffer).toEqual({ maxBytes: 1000, ttlSeconds: 60 });
    expect(out.attributes).toEqual({ region: 'eu', tier: 'silver', owner: 'ops' });
    expect(out.privacy).toEqual({ redactFaces: true });
  });

  it('replaces arrays whole with the most specific level that sets them', () => {
    expect(mergeConfigBodies(tenant, site, device).cameras).toEqual([{ id: 'door', url: 'rtsp://cam/door' }]);
    expect(mergeConfigBodies(tenant, site, {}).cameras).toEqual(site.cameras);
    expect(mergeConfigBodies(tenant, site).models).toEqual(tenant.models);
  });

  it('skips absent levels and does not mutate its inputs', () => {
    const copy = structuredClone(tenant);
    expect(mergeConfigBodies(undefined, tenant, undefined)).toEqual(tenant);
    mergeConfigBodies(tenant, site, device);
    expect(tenant).toEqual(copy);
    expect(mergeConfigBodies()).toEqual({});
  });
});

describe('config body schema', () => {
  it('refuses unknown keys and names the bad field', () => {
    const r = configBodySchema.safeParse({ cameras: [{ id: 'a', url: 'x', fps: 3 }] });
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error?.issues)).toContain('fps');
    const bad = configBodySchema.safeParse({ cameras: [{ id: 'a.b', url: 'x' }] });
    expect(bad.error?.issues[0]?.path).toEqual(['cameras', 0, 'id']);
    expect(configBodySchema.safeParse({ cameras: [site.cameras![0], site.cameras![0]] }).success).toBe(false);
  });

  it('maps to a DeviceConfig with defaults for what is unset', () => {
    const at = new Date('2026-11-27T00:00:00Z');
    const cfg = toDeviceConfig(
      { version: 7n, tenantId: 't', deviceId: 'd', issuedAt: at, expiresAt: new Date(at.getTime() + 1000) },
      mergeConfigBodies(tenant, site),
    );
    expect(cfg).toMatchObject({ version: 7n, tenantId: 't', deviceId: 'd', issuedAt: at });
    expect(cfg.cameras[0]).toMatchObject({ id: 'lobby', enabled: true, modelName: 'yolox', zones: [] });
    expect(cfg.buffer).toMatchObject({ maxBytes: 1000n, ttlSeconds: 60, maxEvents: 0n });
    expect(cfg.retention).toBeUndefined();
  });
  it('carries privacy masks, the redaction mode and the edge media retention; refuses weaker redaction', () => {
    const mask = {
      points: [
        { x: 0, y: 0 },
        { x: 0.5, y: 0 },
        { x: 0.5, y: 0.5 },
      ],
    };
    const body = configBodySchema.parse({
      cameras: [{ id: 'lobby', url: 'rtsp://cam/lobby', privacyMasks: [mask] }],
      privacy: { redactFaces: true, redactionMode: 'blocks', redactionBlocks: 2 },
      retention: { edgeMediaMaxHours: 24, edgeMediaMaxBytes: 50_000_000 },
    });
    const at = new Date('2026-11-27T00:00:00Z');
    const cfg = toDeviceConfig(
      { version: 1n, tenantId: 't', deviceId: 'd', issuedAt: at, expiresAt: at },
      body,
    );
    expect(cfg.cameras[0]!.privacyMasks).toMatchObject([mask]);
    expect(cfg.privacy).toMatchObject({ redactionMode: 'blocks', redactionBlocks: 2, redactionNoise: 0 });
    expect(cfg.retention).toMatchObject({ edgeMediaMaxHours: 24, edgeMediaMaxBytes: 50_000_000n });
    for (const privacy of [{ redactionMode: 'blur' }, { redactionBlocks: 8 }])
      expect(configBodySchema.safeParse({ privacy }).success).toBe(false);
  });
});

describe('config signing keys', () => {
  it('refuses a private key readable by others, and hands out previous public keys for rotation', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vigil-config-keys-'));
    try {
      const old = await ensureDevConfigSigningKey(join(dir, 'old'));
      const cur = await ensureDevConfigSigningKey(join(dir, 'cur'));
      // Idempotent: the same key again.
      expect((await ensureDevConfigSigningKey(join(dir, 'cur'))).jwksFile).toBe(cur.jwksFile);
      const signer = await ConfigSigner.load({
        privateJwkFile: cur.privateJwkFile,
        previousPublicJwksFile: old.jwksFile,
      });
      const jwks = JSON.parse(signer.publicJwks) as { keys: Array<{ kid: string; d?: string }> };
      const oldKid = (JSON.parse(readFileSync(old.jwksFile, 'utf8')) as { keys: Array<{ kid: string }> })
        .keys[0]!.kid;
      expect(jwks.keys.map((k) => k.kid)).toEqual([signer.kid, oldKid]);
      expect(jwks.keys.every((k) => k.d === undefined)).toBe(true);
      const jws = await signer.sign(new Uint8Array([1, 2, 3]));
      const { payload, protectedHeader } = await compactVerify(
        jws,
        createLocalJWKSet(jwks as unknown as Parameters<typeof createLocalJWKSet>[0]),
      );
      expect([...payload]).toEqual([1, 2, 3]);
      expect(protectedHeader).toEqual({ alg: 'ES256', kid: signer.kid, typ: 'vigil-config+jws' });

      const loose = join(dir, 'loose.jwk.json');
      writeFileSync(loose, readFileSync(cur.privateJwkFile));
      chmodSync(loose, 0o644);
      await expect(ConfigSigner.load({ privateJwkFile: loose })).rejects.toThrow(/chmod 600/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
