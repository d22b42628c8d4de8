import { describe, expect, it } from 'vitest';
import { DeviceHealth, Heartbeat } from '@vigil/proto';
import { heartbeatSignals } from '../src/fleet/heartbeats.js';

const hb = (cameras: Parameters<typeof Heartbeat.fromPartial>[0]['cameras']): Heartbeat =>
  Heartbeat.fromPartial({
    tenantId: 'acme',
    deviceId: 'gw-1',
    health: DeviceHealth.DEVICE_HEALTH_DEGRADED,
    cameras,
  });

describe('heartbeatSignals', () => {
  it('health, mean fps, mean inference latency over cameras that ran inference, summed event rate', () => {
    expect(
      heartbeatSignals(
        hb([
          { cameraId: 'a', fps: 4, inferenceMsP50: 10, eventsPerMinute: 2 },
          { cameraId: 'b', fps: 6, inferenceMsP50: 20, eventsPerMinute: 1.5 },
          { cameraId: 'c', fps: 2, inferenceMsP50: 0, eventsPerMinute: 0 },
        ]),
      ),
    ).toEqual({ health: 'degraded', meanFps: 4, meanInferenceMs: 15, eventsPerMinute: 3.5 });
  });

  it('no cameras, or none with inference: null latency; an old agent (fields unset) reports 0 events', () => {
    expect(heartbeatSignals(hb([]))).toEqual({
      health: 'degraded',
      meanFps: null,
      meanInferenceMs: null,
      eventsPerMinute: 0,
    });
    expect(heartbeatSignals(hb([{ cameraId: 'a', fps: 5 }]))).toMatchObject({
      meanFps: 5,
      meanInferenceMs: null,
      eventsPerMinute: 0,
    });
  });

  it('ignores non-finite values', () => {
    expect(
      heartbeatSignals(
        hb([
          {
            cameraId: 'a',
            fps: Number.NaN,
            inferenceMsP50: Number.POSITIVE_INFINITY,
            eventsPerMinute: Number.NaN,
          },
          { cameraId: 'b', fps: 3, inferenceMsP50: 12, eventsPerMinute: 1 },
        ]),
      ),
    ).toMatchObject({ meanFps: 3, meanInferenceMs: 12, eventsPerMinute: 1 });
  });
});
