import { describe, expect, it } from 'vitest';
import { AgentConfigError, parseAgentConfig } from '../src/config/load.js';

const base = { device: { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' } };

describe('agent config', () => {
  it('fills defaults that work on a fresh gateway and freezes the result', () => {
    const cfg = parseAgentConfig({ ...base, cameras: [{ id: 'door', url: 'rtsp://cam/1' }] });
    expect(cfg.cameras[0]).toMatchObject({
      transport: 'tcp',
      fps: 5,
      width: 640,
      height: 360,
      enabled: true,
    });
    expect(cfg.http).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(Object.isFrozen(cfg.cameras[0])).toBe(true);
  });
  it('rejects unknown keys and bad values, naming each key', () => {
    const bad = {
      ...base,
      camras: [],
      cameras: [{ id: 'door', url: 'rtsp://cam/1', fps: 500, trasport: 'tcp' }],
    };
    expect(() => parseAgentConfig(bad)).toThrow(AgentConfigError);
    try {
      parseAgentConfig(bad);
    } catch (err) {
      const msg = (err as Error).message;
      expect(msg).toMatch(/\(root\): Unrecognized key: "camras"/);
      expect(msg).toMatch(/cameras\.0\.fps: .*60/);
      expect(msg).toMatch(/cameras\.0: Unrecognized key: "trasport"/);
    }
  });
  it('rejects duplicate camera ids and ids that would break NATS subjects', () => {
    expect(() =>
      parseAgentConfig({
        ...base,
        cameras: [
          { id: 'a', url: 'x' },
          { id: 'a', url: 'y' },
        ],
      }),
    ).toThrow(/cameras\.1\.id: duplicate camera id "a"/);
    expect(() => parseAgentConfig({ device: { ...base.device, deviceId: 'gw.1' } })).toThrow(
      /device\.deviceId/,
    );
  });
});
