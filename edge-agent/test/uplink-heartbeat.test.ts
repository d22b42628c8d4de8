import { describe, expect, it } from 'vitest';
import { CameraState, DeviceHealth } from '@vigil/proto';
import type { CameraState as LocalState } from '../src/ingest/supervisor.js';
import { buildHeartbeat, deviceHealthOf } from '../src/uplink/heartbeat.js';

const camera = (cameraId: string, state: LocalState) => ({
  cameraId,
  state,
  framesDecoded: 50,
  restarts: 0,
  gaps: 0,
  lastGapMs: 0,
  lastFrameAt: undefined,
  firstFrameAt: undefined,
  lastError: undefined,
  framesDropped: 0,
  fps: 0,
});

describe('heartbeat: camera states and device health', () => {
  it('reports a file played to its end as ended, and the device as healthy', () => {
    const hb = buildHeartbeat(
      {
        tenantId: 'acme',
        siteId: 'hq',
        deviceId: 'gw-1',
        agentVersion: '0.1.0',
        startedAt: new Date(0),
        cameras: () => [camera('clip', 'ended'), camera('door', 'streaming')],
      },
      new Date(60_000),
    );
    expect(hb.health).toBe(DeviceHealth.DEVICE_HEALTH_OK);
    expect(hb.cameras.map((c) => c.state)).toEqual([
      CameraState.CAMERA_STATE_ENDED,
      CameraState.CAMERA_STATE_STREAMING,
    ]);
  });

  it('is degraded with some cameras in trouble and failing with all of them', () => {
    expect(deviceHealthOf([])).toBe(DeviceHealth.DEVICE_HEALTH_OK);
    expect(deviceHealthOf(['ended', 'backing_off'])).toBe(DeviceHealth.DEVICE_HEALTH_DEGRADED);
    expect(deviceHealthOf(['stalled', 'connecting'])).toBe(DeviceHealth.DEVICE_HEALTH_FAILING);
  });
});
