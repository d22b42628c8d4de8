/*
 * What a rollout's rollback restores and how far each device got (rollouts/executor.ts uses these): the last
 * known good config (config-ota's device_config_state.good_version), else the body the device ran when its
 * wave was issued, else nothing (the device is left as it is and reported not_restored).
 */
import type { ConfigBody } from '../config-ota/body.js';
import type { DeviceConfigState, VersionedBody } from '../config-ota/issuer.js';
import type { RestoreState } from './planner.js';
import type { RolloutDeviceRow } from './store.js';

/** The reason a device without a known good config carries. */
export const NO_KNOWN_GOOD = 'no_known_good_config';

export const RESTORE_STATUS: Readonly<Record<Exclude<RestoreState, 'none'>, string>> = {
  issued: 'rolling_back',
  restored: 'rolled_back',
  restore_failed: 'restore_failed',
  not_restored: 'not_restored',
};

/** What a rollback restores: the last known good config, else what the device ran when its wave was issued. */
export function restoreTarget(
  good: VersionedBody | undefined,
  row: RolloutDeviceRow | undefined,
): { body: ConfigBody; version: bigint; source: 'last_known_good' | 'ran_before' } | null {
  if (good) return { ...good, source: 'last_known_good' };
  if (row?.previous_version != null && row.previous_body !== null)
    return {
      body: row.previous_body,
      version: BigInt(row.previous_version),
      source: 'ran_before',
    };
  return null;
}

/** Where a device is in the rollback, from its rollout row and its reported config state. */
export function restoreOf(d: RolloutDeviceRow, s: DeviceConfigState | undefined): RestoreState {
  if (d.rollback_version === null) return d.status === 'not_restored' ? 'not_restored' : 'none';
  const rb = BigInt(d.rollback_version);
  if (s?.appliedVersion != null && s.appliedVersion >= rb) return 'restored';
  if (s && s.desiredVersion === rb && (s.state === 'failed' || s.state === 'rolled_back'))
    return 'restore_failed';
  return 'issued';
}
