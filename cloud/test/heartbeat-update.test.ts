// The updater status a heartbeat carries (Heartbeat.update), as the cloud records it: names for the states, empty
// strings as null, and a device's oversized strings cut to the registry's bounds instead of stored whole.
import { describe, expect, it } from 'vitest';
import { Heartbeat, UpdateState } from '@vigil/proto';
import { heartbeatUpdate } from '../src/fleet/heartbeats.js';

const hb = (update: Parameters<typeof Heartbeat.fromPartial>[0]['update']): Heartbeat =>
  Heartbeat.decode(
    Heartbeat.encode(
      Heartbeat.fromPartial({ tenantId: 't', deviceId: 'd', agentVersion: '1.0.0', update }),
    ).finish(),
  );

describe('heartbeatUpdate', () => {
  it('is null without an updater status', () => {
    expect(heartbeatUpdate(hb(undefined))).toBeNull();
    expect(heartbeatUpdate(hb({ state: UpdateState.UPDATE_STATE_UNSPECIFIED }))).toBeNull();
  });

  it('names the state and keeps the versions and the reason', () => {
    const at = new Date('2026-12-07T12:00:00Z');
    expect(
      heartbeatUpdate(
        hb({
          state: UpdateState.UPDATE_STATE_ROLLED_BACK,
          current: '1.1.0',
          previous: '',
          target: '1.2.0',
          reason: 'health gate',
          updatedAt: at,
        }),
      ),
    ).toEqual({
      state: 'rolled_back',
      current: '1.1.0',
      previous: null,
      target: '1.2.0',
      reason: 'health gate',
      at,
    });
  });

  it("bounds a device's strings and records an unknown state as unknown", () => {
    const u = heartbeatUpdate(
      hb({ state: 99 as UpdateState, current: 'v'.repeat(10_000), target: '', reason: 'r'.repeat(10_000) }),
    )!;
    expect(u.state).toBe('unknown');
    expect(u.current).toHaveLength(64);
    expect(u.reason).toHaveLength(500);
    expect(u.target).toBeNull();
    expect(u.at).toBeNull();
  });
});
