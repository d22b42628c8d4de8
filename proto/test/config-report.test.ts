import { describe, expect, it } from 'vitest';
import {
  CONFIG_REPORT_CONTRACT,
  ConfigState,
  configStatusOf,
  DeviceHealth,
  reportAfter,
  startReport,
  type ConfigEvent,
  type ConfigReport,
  type ConfigReportStep,
} from '../src/index.js';

/** The events a device goes through for one step of the contract. */
function eventsOf(step: ConfigReportStep): ConfigEvent[] {
  if ('poll' in step) return [];
  if ('replay' in step)
    return [{ kind: 'refused', version: step.replay, reason: `replay: version ${step.replay} is not newer` }];
  const version = step.deliver;
  if (step.outcome === 'invalid')
    return [{ kind: 'refused', version, reason: 'invalid config: cameras.0.id' }];
  return [
    { kind: 'applying', version },
    step.outcome === 'applied'
      ? { kind: 'applied', version }
      : { kind: 'rolled_back', version, reason: 'health check failed' },
  ];
}

describe('config report (what every ConfigStatus says)', () => {
  it('follows the contract table', () => {
    let r: ConfigReport = startReport(0n);
    for (const c of CONFIG_REPORT_CONTRACT) {
      for (const e of eventsOf(c.step)) r = reportAfter(r, e);
      const { reason, ...rest } = c.expect;
      expect(
        { version: r.version, appliedVersion: r.appliedVersion, state: r.state },
        JSON.stringify(c.step, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)),
      ).toEqual(rest);
      if (reason) expect(r.reason).toMatch(reason);
    }
  });
  it('applying is PENDING on the new version while the old one still runs', () => {
    expect(reportAfter(startReport(4n), { kind: 'applying', version: 5n })).toEqual({
      version: 5n,
      state: ConfigState.CONFIG_STATE_PENDING,
      reason: '',
      appliedVersion: 4n,
    });
  });
  it('at start: the applied version, or an interrupted apply as rolled back', () => {
    expect(startReport(3n)).toMatchObject({ version: 3n, state: ConfigState.CONFIG_STATE_APPLIED });
    expect(startReport(3n, 4n)).toMatchObject({
      version: 4n,
      appliedVersion: 3n,
      state: ConfigState.CONFIG_STATE_ROLLED_BACK,
    });
  });
  it('builds the status message', () => {
    const at = new Date('2026-01-01T00:00:00Z');
    expect(
      configStatusOf(startReport(2n), { tenantId: 't', deviceId: 'd' }, DeviceHealth.DEVICE_HEALTH_OK, at),
    ).toMatchObject({ tenantId: 't', deviceId: 'd', version: 2n, appliedVersion: 2n, reportedAt: at });
  });
});
