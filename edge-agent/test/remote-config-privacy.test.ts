import { describe, expect, it } from 'vitest';
import { DeviceConfig } from '@vigil/proto';
import { applyDeviceConfig, ConfigInvalidError, parseAgentConfig, planConfig } from '../src/index.js';

// Privacy masks, the redaction mode and the edge media retention travel in the signed DeviceConfig, so the
// agent enforces them from the config it holds, offline included.

const SHA = 'a'.repeat(64);
const base = parseAgentConfig({
  device: { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' },
  dataDir: '/data',
});
const square = {
  points: [
    { x: 0.1, y: 0.1 },
    { x: 0.4, y: 0.1 },
    { x: 0.4, y: 0.5 },
    { x: 0.1, y: 0.5 },
  ],
};

function body(p: Partial<DeviceConfig>): DeviceConfig {
  return DeviceConfig.fromPartial({
    version: 1n,
    tenantId: 'acme',
    deviceId: 'gw-1',
    cameras: [{ id: 'c1', url: 'rtsp://h/c1', enabled: true, modelName: 'det' }],
    models: [
      { name: 'det', type: 'yolox', sha256: SHA },
      { name: 'faces', type: 'yunet', sha256: 'b'.repeat(64) },
    ],
    ...p,
  });
}

describe('privacy and retention in the signed device config', () => {
  it('carries privacy masks per camera, the redaction mode and the edge media retention', () => {
    const cfg = applyDeviceConfig(
      base,
      body({
        cameras: [
          { id: 'c1', url: 'rtsp://h/c1', enabled: true, modelName: 'det', privacyMasks: [square] },
        ] as never,
        privacy: {
          redactFaces: true,
          faceModelName: 'faces',
          disableSnapshots: false,
          redactionMode: 'blocks',
          redactionBlocks: 2,
          redactionNoise: 64,
          faceThreshold: 0.4,
        },
        retention: {
          eventDays: 30,
          mediaDays: 7,
          localMediaHours: 0,
          edgeMediaMaxHours: 24,
          edgeMediaMaxBytes: 50_000_000n,
        },
      }),
    );
    // float32 on the wire: compare to 5 decimals.
    const got = cfg.cameras[0]!.privacyMasks.map((poly) => poly.map((q) => [q.x.toFixed(5), q.y.toFixed(5)]));
    expect(got).toEqual([
      [
        ['0.10000', '0.10000'],
        ['0.40000', '0.10000'],
        ['0.40000', '0.50000'],
        ['0.10000', '0.50000'],
      ],
    ]);
    expect(cfg.privacy).toMatchObject({
      redactFaces: true,
      faceModel: 'faces',
      redaction: { mode: 'blocks', blocks: 2, noise: 64, expand: 1 },
    });
    expect(cfg.privacy.faceThreshold).toBeCloseTo(0.4, 5);
    expect(cfg.retention).toEqual({ mediaMaxHours: 24, mediaMaxBytes: 50_000_000 });
  });

  it('defaults: solid fill, the local retention, no masks', () => {
    const cfg = applyDeviceConfig(
      base,
      body({
        privacy: {
          redactFaces: true,
          faceModelName: 'faces',
          disableSnapshots: false,
          redactionMode: '',
          redactionBlocks: 0,
          redactionNoise: 0,
          faceThreshold: 0,
        },
      }),
    );
    expect(cfg.privacy.redaction).toEqual({ mode: 'fill', blocks: 3, noise: 32, expand: 1 });
    expect(cfg.privacy.faceThreshold).toBe(0.5);
    expect(cfg.retention).toEqual(base.retention);
    expect(cfg.cameras[0]!.privacyMasks).toEqual([]);
  });

  it('refuses a weaker redaction than the agent allows, naming the field', () => {
    const privacy = {
      redactFaces: true,
      faceModelName: 'faces',
      disableSnapshots: false,
      redactionMode: 'blocks',
      redactionBlocks: 8,
      redactionNoise: 0,
      faceThreshold: 0,
    };
    expect(() => applyDeviceConfig(base, body({ privacy }))).toThrow(ConfigInvalidError);
    expect(() => applyDeviceConfig(base, body({ privacy }))).toThrow(/privacy\.redaction\.blocks/);
    expect(() =>
      applyDeviceConfig(base, body({ privacy: { ...privacy, redactionBlocks: 0, redactionMode: 'blur' } })),
    ).toThrow(/privacy\.redaction\.mode/);
    const badMask = {
      points: [
        { x: 0.1, y: 0.1 },
        { x: 2, y: 0.1 },
        { x: 0.1, y: 0.5 },
      ],
    };
    expect(() =>
      applyDeviceConfig(
        base,
        body({
          cameras: [{ id: 'c1', url: 'rtsp://h/c1', enabled: true, privacyMasks: [badMask] }] as never,
        }),
      ),
    ).toThrow(/cameras\.0\.privacyMasks/);
  });

  it('plans a mask change as a restart of that camera only, a retention change as no restart', () => {
    const two = (masks: object[]) =>
      body({
        cameras: [
          { id: 'c1', url: 'rtsp://h/c1', enabled: true, modelName: 'det', privacyMasks: masks },
          { id: 'c2', url: 'rtsp://h/c2', enabled: true, modelName: 'det' },
        ] as never,
      });
    const from = applyDeviceConfig(base, two([]));
    const masked = applyDeviceConfig(base, two([square]));
    const p = planConfig(from, masked);
    expect(p.cameras.restart.map((c) => c.id)).toEqual(['c1']);
    expect(p.cameras.keep).toEqual(['c2']);

    const retained = applyDeviceConfig(base, {
      ...two([]),
      retention: {
        eventDays: 0,
        mediaDays: 0,
        localMediaHours: 0,
        edgeMediaMaxHours: 6,
        edgeMediaMaxBytes: 0n,
      },
    });
    const q = planConfig(from, retained);
    expect(q.retentionChanged).toBe(true);
    expect(q.empty).toBe(false);
    expect(q.cameras.restart).toEqual([]);
  });
});
