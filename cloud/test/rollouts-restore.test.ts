import { describe, expect, it } from 'vitest';
import type { DeviceConfigState } from '../src/config-ota/issuer.js';
import { restoreOf, restoreTarget } from '../src/rollouts/restore.js';
import type { RolloutDeviceRow } from '../src/rollouts/store.js';

const row = (over: Partial<RolloutDeviceRow> = {}): RolloutDeviceRow => ({
  rollout_id: 'r',
  tenant_id: 't',
  device_id: 'd',
  position: 0,
  wave: 0,
  issued_at: new Date(0),
  previous_body: null,
  previous_version: null,
  issued_version: '5',
  baseline_fps: null,
  baseline_inference_ms: null,
  rollback_version: null,
  restored_from_version: null,
  restore_source: null,
  previous_agent_version: null,
  status: 'failed',
  reason: 'failed',
  ...over,
});
const state = (over: Partial<DeviceConfigState> = {}): DeviceConfigState => ({
  deviceId: 'd',
  desiredVersion: 6n,
  reportedVersion: 5n,
  appliedVersion: 4n,
  state: 'pending',
  reason: '',
  health: 'ok',
  reportedAt: new Date(0),
  goodVersion: 4n,
  ...over,
});

describe('what a rollback restores', () => {
  const good = { version: 3n, body: { attributes: { rev: 'good' } } };
  it('the last known good config first, else what the device ran before the rollout, else nothing', () => {
    const ranBefore = row({ previous_version: '4', previous_body: { attributes: { rev: 'ran' } } });
    expect(restoreTarget(good, ranBefore)).toEqual({ ...good, source: 'last_known_good' });
    expect(restoreTarget(undefined, ranBefore)).toEqual({
      version: 4n,
      body: { attributes: { rev: 'ran' } },
      source: 'ran_before',
    });
    expect(restoreTarget(undefined, row())).toBeNull();
    expect(restoreTarget(undefined, undefined)).toBeNull();
  });
});

describe('how far a device got in the rollback', () => {
  it('none until rolled back; not_restored as decided', () => {
    expect(restoreOf(row(), state())).toBe('none');
    expect(restoreOf(row({ status: 'not_restored' }), state())).toBe('not_restored');
  });
  it('issued until the device runs the restore version (or a later one); restore_failed if it refused it', () => {
    const rb = row({ rollback_version: '6', status: 'rolling_back' });
    expect(restoreOf(rb, state())).toBe('issued');
    expect(restoreOf(rb, undefined)).toBe('issued');
    expect(restoreOf(rb, state({ appliedVersion: 6n }))).toBe('restored');
    expect(restoreOf(rb, state({ appliedVersion: 7n, desiredVersion: 7n }))).toBe('restored');
    expect(restoreOf(rb, state({ reportedVersion: 6n, state: 'failed' }))).toBe('restore_failed');
    expect(restoreOf(rb, state({ reportedVersion: 6n, state: 'rolled_back' }))).toBe('restore_failed');
  });
});
