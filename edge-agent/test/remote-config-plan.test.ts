import { describe, expect, it } from 'vitest';
import { DeviceConfig } from '@vigil/proto';
import { applyDeviceConfig, ConfigInvalidError, parseAgentConfig, planConfig } from '../src/index.js';

const SHA_A = 'a'.repeat(64);
const SHA_B = 'b'.repeat(64);
const base = parseAgentConfig({
  device: { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' },
  dataDir: '/data',
});

function body(p: Partial<DeviceConfig>): DeviceConfig {
  return DeviceConfig.fromPartial({ version: 1n, tenantId: 'acme', deviceId: 'gw-1', ...p });
}
const cam = (id: string, extra: object = {}): object => ({
  id,
  url: `rtsp://h/${id}`,
  enabled: true,
  ...extra,
});
const model = (name: string, sha256: string): object => ({ name, type: 'yolox', sha256 });

describe('applyDeviceConfig (DeviceConfig -> runtime config)', () => {
  it('translates cameras, models, privacy and buffer; keeps the bootstrap', () => {
    const cfg = applyDeviceConfig(
      base,
      body({
        cameras: [
          cam('c1', {
            detectFps: 2,
            width: 320,
            height: 180,
            modelName: 'det',
            labels: ['person'],
            defaultThreshold: 0.4,
            classThresholds: { person: 0.6 },
            masks: [
              {
                points: [
                  { x: 0, y: 0 },
                  { x: 1, y: 0 },
                  { x: 1, y: 1 },
                ],
              },
            ],
            zones: [
              {
                id: 'door',
                polygon: {
                  points: [
                    { x: 0, y: 0 },
                    { x: 0.5, y: 0 },
                    { x: 0.5, y: 0.5 },
                  ],
                },
              },
            ],
          }),
          cam('c2', { url: 'file:///clips/a.mp4', enabled: false }),
        ] as never,
        models: [model('det', SHA_A)] as never,
        privacy: {
          redactFaces: false,
          faceModelName: '',
          disableSnapshots: true,
          redactionMode: '',
          redactionBlocks: 0,
          redactionNoise: 0,
          faceThreshold: 0,
        },
        buffer: { maxBytes: 10_000_000n, maxEvents: 500n, ttlSeconds: 7200, inlineSnapshotMaxBytes: 0 },
      }),
    );
    expect(cfg.dataDir).toBe('/data');
    expect(cfg.device).toEqual(base.device);
    const c1 = cfg.cameras[0]!;
    expect(c1).toMatchObject({ id: 'c1', fps: 2, width: 320, height: 180, enabled: true });
    expect(c1.detect).toMatchObject({
      model: 'det',
      labels: ['person'],
      thresholds: { person: expect.closeTo(0.6, 5) as number },
      masks: [
        [
          { x: 0, y: 0 },
          { x: 1, y: 0 },
          { x: 1, y: 1 },
        ],
      ],
      zones: [{ id: 'door' }],
    });
    expect(c1.detect?.defaultThreshold).toBeCloseTo(0.4, 5);
    expect(cfg.cameras[1]).toMatchObject({ url: '/clips/a.mp4', enabled: false });
    expect(cfg.models).toEqual([
      { name: 'det', type: 'yolox', path: `/data/models/${SHA_A}`, sha256: SHA_A, threads: 1 },
    ]);
    expect(cfg.snapshots.enabled).toBe(false);
    expect(cfg.buffer).toMatchObject({ maxBytes: 10_000_000, maxEvents: 500, ttlHours: 2 });
  });

  it('names the invalid field', () => {
    expect(() => applyDeviceConfig(base, body({ cameras: [cam('bad id!')] as never }))).toThrow(
      /cameras\.0\.id/,
    );
    expect(() => applyDeviceConfig(base, body({ cameras: [cam('c1'), cam('c1')] as never }))).toThrow(
      /duplicate camera id/,
    );
    expect(() =>
      applyDeviceConfig(base, body({ cameras: [cam('c1', { modelName: 'nope' })] as never })),
    ).toThrow(ConfigInvalidError);
    expect(() =>
      applyDeviceConfig(
        base,
        body({ models: [model('m', SHA_A), { name: 'x', type: 'what', sha256: SHA_B }] as never }),
      ),
    ).toThrow(/models\.1\.type/);
  });
});

describe('planConfig', () => {
  const from = applyDeviceConfig(
    base,
    body({
      cameras: [
        cam('keep', { modelName: 'det' }),
        cam('change', { modelName: 'det', defaultThreshold: 0.5 }),
        cam('gone'),
        cam('off', { enabled: false }),
      ] as never,
      models: [model('det', SHA_A), model('old', SHA_B)] as never,
    }),
  );

  it('is empty from a config to itself', () => {
    const p = planConfig(from, from);
    expect(p.empty).toBe(true);
    expect(p.cameras.keep.sort()).toEqual(['change', 'gone', 'keep']);
    expect(p.models.keep.sort()).toEqual(['det', 'old']);
  });

  it('adds, removes, restarts only changed cameras; loads and unloads models by name and hash', () => {
    const to = applyDeviceConfig(
      base,
      body({
        cameras: [
          cam('keep', { modelName: 'det' }),
          cam('change', { modelName: 'det', defaultThreshold: 0.7 }),
          cam('off'),
          cam('new'),
        ] as never,
        models: [model('det', SHA_A), model('face', SHA_B)] as never,
      }),
    );
    const p = planConfig(from, to);
    expect(p.cameras.add.map((c) => c.id).sort()).toEqual(['new', 'off']);
    expect(p.cameras.remove).toEqual(['gone']);
    expect(p.cameras.restart.map((c) => c.id)).toEqual(['change']);
    expect(p.cameras.keep).toEqual(['keep']);
    expect(p.models.load.map((m) => m.name)).toEqual(['face']);
    expect(p.models.unload).toEqual(['old']);
    expect(p.models.keep).toEqual(['det']);
    expect(p.empty).toBe(false);
  });

  it('restarts the cameras of a model whose file (sha256) changed', () => {
    const to = applyDeviceConfig(
      base,
      body({
        cameras: [
          cam('keep', { modelName: 'det' }),
          cam('change', { modelName: 'det', defaultThreshold: 0.5 }),
          cam('gone'),
        ] as never,
        models: [model('det', 'c'.repeat(64)), model('old', SHA_B)] as never,
      }),
    );
    const p = planConfig(from, to);
    expect(p.models.load.map((m) => m.name)).toEqual(['det']);
    expect(p.cameras.restart.map((c) => c.id).sort()).toEqual(['change', 'keep']);
    expect(p.cameras.keep).toEqual(['gone']);
  });

  it('reports buffer and privacy changes; reversing a plan restores the original', () => {
    const to = applyDeviceConfig(
      base,
      body({
        cameras: [cam('keep', { modelName: 'det' })] as never,
        models: [model('det', SHA_A), model('old', SHA_B)] as never,
        buffer: { maxBytes: 2_000_000n, maxEvents: 0n, ttlSeconds: 0, inlineSnapshotMaxBytes: 0 },
        privacy: {
          redactFaces: true,
          faceModelName: 'old',
          disableSnapshots: false,
          redactionMode: '',
          redactionBlocks: 0,
          redactionNoise: 0,
          faceThreshold: 0,
        },
      }),
    );
    const p = planConfig(from, to);
    expect(p.bufferChanged).toBe(true);
    expect(p.privacyChanged).toBe(true);
    // Privacy changes reach every detecting pipeline (they hold the face model).
    expect(p.cameras.restart.map((c) => c.id)).toEqual(['keep']);
    const back = planConfig(to, from);
    expect(back.cameras.add.map((c) => c.id).sort()).toEqual(['change', 'gone']);
    expect(back.bufferChanged && back.privacyChanged).toBe(true);
  });
});
