// What a device says about its remote config in every ConfigStatus: the outcome of the last config it handled
// (version, state, reason) and the version it runs. The report is whole-state: every status the device sends
// (after an apply, on each poll, after a reconnect) repeats the last outcome, so a FAILED or ROLLED_BACK version
// stays reported, with the older version it still runs, until a newer config is handled. The cloud's rollouts
// read it that way (cloud/src/config-ota, cloud/src/rollouts).
//
// The edge agent (edge-agent/src/remote-config/manager.ts) and fleet-sim both keep their report with these
// functions, so the simulator cannot report more kindly than the agent. Pure: no I/O, no clock.
import { ConfigState, ConfigStatus } from './gen/vigil/v1/config.js';
import type { DeviceHealth } from './gen/vigil/v1/telemetry.js';

export interface ConfigReport {
  /** The version the last outcome is about (0: nothing handled yet). */
  version: bigint;
  state: ConfigState;
  reason: string;
  /** The version the device runs (0: its local config). */
  appliedVersion: bigint;
}

/** What happened to a config the device handled. */
export type ConfigEvent =
  /** Refused before anything changed (signature, replay, expiry, an invalid body, a model that cannot be had). */
  | { kind: 'refused'; version: bigint; reason: string }
  /** Accepted; the apply starts (the report says PENDING until it ends). */
  | { kind: 'applying'; version: bigint }
  /** Applied and healthy: the device runs it. */
  | { kind: 'applied'; version: bigint }
  /** Applied but unhealthy (or interrupted): the previous config runs again. */
  | { kind: 'rolled_back'; version: bigint; reason: string };

/**
 * The report at start: the version the device runs, or, when an apply was interrupted (kill -9), that version
 * as rolled back (the previous config runs).
 */
export function startReport(appliedVersion: bigint, interrupted?: bigint): ConfigReport {
  if (interrupted !== undefined)
    return {
      version: interrupted,
      state: ConfigState.CONFIG_STATE_ROLLED_BACK,
      reason: 'the agent stopped while applying this config; the previous config runs',
      appliedVersion,
    };
  return {
    version: appliedVersion,
    state: appliedVersion > 0n ? ConfigState.CONFIG_STATE_APPLIED : ConfigState.CONFIG_STATE_UNSPECIFIED,
    reason: '',
    appliedVersion,
  };
}

/** The report after `e`. Only `applied` changes the version the device runs. */
export function reportAfter(r: ConfigReport, e: ConfigEvent): ConfigReport {
  switch (e.kind) {
    case 'refused':
      return { ...r, version: e.version, state: ConfigState.CONFIG_STATE_FAILED, reason: e.reason };
    case 'applying':
      return { ...r, version: e.version, state: ConfigState.CONFIG_STATE_PENDING, reason: '' };
    case 'applied':
      return {
        version: e.version,
        state: ConfigState.CONFIG_STATE_APPLIED,
        reason: '',
        appliedVersion: e.version,
      };
    case 'rolled_back':
      return { ...r, version: e.version, state: ConfigState.CONFIG_STATE_ROLLED_BACK, reason: e.reason };
  }
}

/** The ConfigStatus message of a report: what every status request carries. */
export function configStatusOf(
  r: ConfigReport,
  device: { tenantId: string; deviceId: string },
  health: DeviceHealth,
  reportedAt: Date,
): ConfigStatus {
  return ConfigStatus.fromPartial({
    tenantId: device.tenantId,
    deviceId: device.deviceId,
    version: r.version,
    appliedVersion: r.appliedVersion,
    state: r.state,
    reason: r.reason,
    health,
    reportedAt,
  });
}
