import { describe, expect, it } from 'vitest';
import {
  abortReason,
  failureOf,
  operatorTransition,
  outcomeOf,
  plan,
  progress,
  rollbackSet,
  waveSize,
  type DeviceObservation,
  type RolloutSnapshot,
  type RolloutSpec,
} from '../src/rollouts/planner.js';

/** An asymmetric matcher, typed as the string it stands for. */
const matching = (re: RegExp): string => expect.stringMatching(re) as string;

const T0 = new Date('2026-01-01T00:00:00Z');
const at = (s: number): Date => new Date(T0.getTime() + s * 1000);

const spec = (over: Partial<RolloutSpec> = {}): RolloutSpec => ({
  canary: 2,
  waves: [20, 50, 100],
  gateWindowSeconds: 60,
  soakSeconds: 0,
  gates: { appliedRatio: 0.9, allowDegraded: true, minFpsRatio: 0.8, eventRate: { min: 1, max: 100 } },
  abort: { failureRatio: 0.2, minReported: 2 },
  ...over,
});

function fleet(n: number): DeviceObservation[] {
  return Array.from({ length: n }, (_, i) => ({
    deviceId: `d${String(i).padStart(3, '0')}`,
    wave: null,
    issuedAt: null,
    state: 'unknown',
    health: 'ok',
    fps: 10,
    baselineFps: 10,
    eventRate: 10,
    signalled: true,
    restore: 'none',
  }));
}

function issue(devs: DeviceObservation[], ids: string[], wave: number, when: Date): void {
  for (const d of devs)
    if (ids.includes(d.deviceId)) Object.assign(d, { wave, issuedAt: when, state: 'pending' as const });
}
function report(devs: DeviceObservation[], ids: string[], patch: Partial<DeviceObservation>): void {
  for (const d of devs) if (ids.includes(d.deviceId)) Object.assign(d, patch);
}
const snap = (over: Partial<RolloutSnapshot> = {}): RolloutSnapshot => ({
  state: 'running',
  currentWave: 0,
  waveStartedAt: T0,
  spec: spec(),
  abortReason: null,
  ...over,
});

describe('wave sizes', () => {
  it('canary then cumulative percentages, never smaller than the canary, capped at the fleet', () => {
    const s = spec();
    expect([0, 1, 2, 3].map((k) => waveSize(s, 100, k))).toEqual([2, 20, 50, 100]);
    expect([0, 1, 2, 3].map((k) => waveSize(s, 5, k))).toEqual([2, 2, 3, 5]);
    expect(waveSize(spec({ canary: 10 }), 3, 0)).toBe(3);
    expect(waveSize(s, 0, 0)).toBe(0);
  });
});

describe('device outcomes', () => {
  const s = spec();
  const base = fleet(1)[0]!;
  const issued = { ...base, wave: 0, issuedAt: T0, state: 'pending' as const };
  it('applied and healthy is not a failure', () => {
    expect(failureOf(s, { ...issued, state: 'applied' }, at(1))).toBeNull();
  });
  it('failed, rolled back, failing health, low fps, event rate out of bounds, timeout', () => {
    expect(failureOf(s, { ...issued, state: 'failed' }, at(1))).toBe('failed');
    expect(failureOf(s, { ...issued, state: 'rolled_back' }, at(1))).toBe('rolled_back');
    expect(failureOf(s, { ...issued, state: 'applied', health: 'failing' }, at(1))).toBe('health_failing');
    expect(failureOf(s, { ...issued, state: 'applied', fps: 7 }, at(1))).toBe('fps_below_baseline');
    expect(failureOf(s, { ...issued, state: 'applied', fps: 8 }, at(1))).toBeNull();
    expect(failureOf(s, { ...issued, state: 'applied', eventRate: 0 }, at(1))).toBe('event_rate_low');
    expect(failureOf(s, { ...issued, state: 'applied', eventRate: 500 }, at(1))).toBe('event_rate_high');
    expect(failureOf(s, issued, at(59))).toBeNull();
    expect(failureOf(s, issued, at(60))).toBe('timeout');
  });
  it('degraded counts only when the gate does not allow it', () => {
    const strict = spec({ gates: { appliedRatio: 1, allowDegraded: false } });
    expect(failureOf(s, { ...issued, state: 'applied', health: 'degraded' }, at(1))).toBeNull();
    expect(failureOf(strict, { ...issued, state: 'applied', health: 'degraded' }, at(1))).toBe(
      'health_degraded',
    );
  });
  it('with an fps gate, an applied device waits for a heartbeat after the apply (then times out)', () => {
    const d = { ...issued, state: 'applied' as const, fps: undefined };
    expect(failureOf(s, d, at(1))).toBeNull();
    expect(outcomeOf(s, d, at(1))).toBe('pending');
    expect(failureOf(s, d, at(60))).toBe('no_health_signal');
    expect(outcomeOf(s, { ...d, fps: 9 }, at(1))).toBe('applied');
    // no fps gate: applied at once
    expect(outcomeOf(spec({ gates: { appliedRatio: 1, allowDegraded: true } }), d, at(1))).toBe('applied');
  });
  it('signals that are unknown pass (no baseline, no rate)', () => {
    expect(
      failureOf(
        s,
        { ...issued, state: 'applied', fps: 0, baselineFps: undefined, eventRate: undefined },
        at(1),
      ),
    ).toBeNull();
  });
  it('a device not issued never fails', () => {
    expect(failureOf(s, base, at(1000))).toBeNull();
  });
  it('inference latency above the ratio times its pre-rollout baseline fails (inference_latency_high)', () => {
    const g = spec({ gates: { appliedRatio: 0.9, allowDegraded: true, maxInferenceRatio: 2 } });
    const applied = { ...issued, state: 'applied' as const, baselineInferenceMs: 14 };
    expect(failureOf(g, { ...applied, inferenceMs: 42 }, at(1))).toBe('inference_latency_high');
    expect(failureOf(g, { ...applied, inferenceMs: 28 }, at(1))).toBeNull();
    expect(failureOf(g, { ...applied, inferenceMs: 15 }, at(1))).toBeNull();
    // with a baseline, it waits for a heartbeat after the apply that reports latency (then times out)
    expect(failureOf(g, { ...applied, inferenceMs: undefined }, at(1))).toBeNull();
    expect(outcomeOf(g, { ...applied, inferenceMs: undefined }, at(1))).toBe('pending');
    expect(failureOf(g, { ...applied, inferenceMs: undefined }, at(60))).toBe('no_health_signal');
    expect(outcomeOf(g, { ...applied, inferenceMs: 20 }, at(1))).toBe('applied');
    // no baseline (or a baseline of 0: no inference before), or no gate: passes
    expect(failureOf(g, { ...applied, baselineInferenceMs: undefined, inferenceMs: 500 }, at(1))).toBeNull();
    expect(failureOf(g, { ...applied, baselineInferenceMs: 0, inferenceMs: 500 }, at(1))).toBeNull();
    expect(failureOf(spec(), { ...applied, inferenceMs: 500 }, at(1))).toBeNull();
    // a pending device is not judged on latency
    expect(failureOf(g, { ...applied, state: 'pending', inferenceMs: 500 }, at(1))).toBeNull();
  });
  it('the event-rate gate with fed rates: inside the bounds passes, below min or above max fails', () => {
    const g = spec({
      gates: { appliedRatio: 0.9, allowDegraded: true, eventRate: { min: 0.5, max: 30 } },
    });
    const applied = { ...issued, state: 'applied' as const };
    expect(failureOf(g, { ...applied, eventRate: 3 }, at(1))).toBeNull();
    expect(failureOf(g, { ...applied, eventRate: 0.5 }, at(1))).toBeNull();
    expect(failureOf(g, { ...applied, eventRate: 30 }, at(1))).toBeNull();
    expect(failureOf(g, { ...applied, eventRate: 0.2 }, at(1))).toBe('event_rate_low');
    expect(failureOf(g, { ...applied, eventRate: 31 }, at(1))).toBe('event_rate_high');
    const onlyMax = spec({ gates: { appliedRatio: 0.9, allowDegraded: true, eventRate: { max: 10 } } });
    expect(failureOf(onlyMax, { ...applied, eventRate: 0 }, at(1))).toBeNull();
    expect(failureOf(onlyMax, { ...applied, eventRate: 11 }, at(1))).toBe('event_rate_high');
  });
});

describe('plan: the happy path', () => {
  it('pending -> canary -> waves -> completed', () => {
    const devs = fleet(10);
    let p = plan(snap({ state: 'pending', currentWave: -1, waveStartedAt: null }), devs, T0);
    expect(p.actions).toEqual([
      { type: 'transition', to: 'running', wave: 0 },
      { type: 'issue', wave: 0, deviceIds: ['d000', 'd001'] },
    ]);
    issue(devs, ['d000', 'd001'], 0, T0);
    p = plan(snap(), devs, at(1));
    expect(p.actions).toEqual([]);
    expect(p.waiting).toMatch(/wave 0: 0 of 2/);
    report(devs, ['d000', 'd001'], { state: 'applied' });
    p = plan(snap(), devs, at(2));
    // 20 % of 10 = 2 = the canary: wave 1 adds nobody new
    expect(p.actions).toEqual([
      { type: 'transition', to: 'running', wave: 1 },
      { type: 'issue', wave: 1, deviceIds: [] },
    ]);
    p = plan(snap({ currentWave: 1, waveStartedAt: at(2) }), devs, at(3));
    expect(p.actions).toEqual([
      { type: 'transition', to: 'running', wave: 2 },
      { type: 'issue', wave: 2, deviceIds: ['d002', 'd003', 'd004'] },
    ]);
    issue(devs, ['d002', 'd003', 'd004'], 2, at(3));
    report(devs, ['d002', 'd003', 'd004'], { state: 'applied' });
    p = plan(snap({ currentWave: 2, waveStartedAt: at(3) }), devs, at(4));
    expect(p.actions[1]).toEqual({
      type: 'issue',
      wave: 3,
      deviceIds: ['d005', 'd006', 'd007', 'd008', 'd009'],
    });
    issue(devs, ['d005', 'd006', 'd007', 'd008', 'd009'], 3, at(4));
    report(devs, ['d005', 'd006', 'd007', 'd008', 'd009'], { state: 'applied' });
    p = plan(snap({ currentWave: 3, waveStartedAt: at(4) }), devs, at(5));
    expect(p.actions).toEqual([{ type: 'transition', to: 'completed' }]);
    expect(progress(spec(), devs, at(5)).map((w) => [w.devices, w.applied])).toEqual([
      [2, 2],
      [0, 0],
      [3, 3],
      [5, 5],
    ]);
  });
  it('an empty target completes at once', () => {
    expect(plan(snap({ state: 'pending' }), [], T0).actions).toEqual([
      { type: 'transition', to: 'completed', reason: 'no target devices' },
    ]);
  });
  it('the soak time holds a passing wave', () => {
    const devs = fleet(10);
    issue(devs, ['d000', 'd001'], 0, T0);
    report(devs, ['d000', 'd001'], { state: 'applied' });
    const s = snap({ spec: spec({ soakSeconds: 30 }) });
    expect(plan(s, devs, at(29)).actions).toEqual([]);
    expect(plan(s, devs, at(30)).actions[0]).toEqual({ type: 'transition', to: 'running', wave: 1 });
  });
  it('issues devices of the current wave that were never issued (crash recovery)', () => {
    const devs = fleet(10);
    issue(devs, ['d000'], 0, T0);
    expect(plan(snap(), devs, at(1)).actions).toEqual([{ type: 'issue', wave: 0, deviceIds: ['d001'] }]);
  });
  it('the applied ratio gate: 9 of 10 passes at 0.9', () => {
    const devs = fleet(10);
    const ids = devs.map((d) => d.deviceId);
    issue(devs, ids, 3, T0);
    report(devs, ids.slice(0, 9), { state: 'applied' });
    const s = snap({ currentWave: 3, spec: spec({ abort: { failureRatio: 0.5, minReported: 2 } }) });
    // the straggler is not waited for
    expect(plan(s, devs, at(1)).actions).toEqual([{ type: 'transition', to: 'completed' }]);
    report(devs, ['d008'], { state: 'pending' });
    expect(plan(s, devs, at(1)).actions).toEqual([]); // 8 of 10, two pending inside the window
  });
});

describe('plan: abort', () => {
  it('failure ratio above R after N reported aborts', () => {
    const devs = fleet(20);
    const ids = devs.slice(0, 4).map((d) => d.deviceId);
    issue(devs, ids, 1, T0);
    report(devs, ['d000'], { state: 'failed' });
    const s = snap({ currentWave: 1, spec: spec({ abort: { failureRatio: 0.2, minReported: 3 } }) });
    // 1 of 1 failed, but fewer than 3 reported
    expect(plan(s, devs, at(1)).actions).toEqual([]);
    report(devs, ['d001', 'd002'], { state: 'applied' });
    // 1 of 3 = 0.33 > 0.2
    const p = plan(s, devs, at(2));
    expect(p.actions).toEqual([
      { type: 'transition', to: 'aborted', reason: matching(/failure ratio 0.33 > 0.2 \(1 of 3/) },
    ]);
  });
  it('a ratio equal to R does not abort', () => {
    const devs = fleet(10);
    const ids = devs.slice(0, 5).map((d) => d.deviceId);
    issue(devs, ids, 1, T0);
    report(devs, ids.slice(0, 4), { state: 'applied' });
    report(devs, ids.slice(4), { state: 'failed' });
    expect(abortReason(spec({ abort: { failureRatio: 0.2, minReported: 5 } }), devs, at(1))).toBeNull();
  });
  it('timeouts count as failures after the window', () => {
    const devs = fleet(10);
    issue(devs, ['d000', 'd001'], 0, T0);
    report(devs, ['d000'], { state: 'applied' });
    expect(plan(snap(), devs, at(59)).actions).toEqual([]);
    expect(plan(snap(), devs, at(60)).actions[0]).toMatchObject({ type: 'transition', to: 'aborted' });
  });
  it('unhealthy after applying (fps) counts as failed', () => {
    const devs = fleet(10);
    issue(devs, ['d000', 'd001'], 0, T0);
    report(devs, ['d000', 'd001'], { state: 'applied', fps: 2 });
    expect(plan(snap(), devs, at(1)).actions[0]).toMatchObject({
      type: 'transition',
      to: 'aborted',
      reason: matching(/2 of 2/),
    });
  });
  it('inference latency above the gate (canary) aborts the rollout', () => {
    const devs = fleet(10).map((d) => ({ ...d, baselineInferenceMs: 14 }));
    const s = spec({ gates: { appliedRatio: 0.9, allowDegraded: true, maxInferenceRatio: 2 } });
    issue(devs, ['d000', 'd001'], 0, T0);
    report(devs, ['d000', 'd001'], { state: 'applied', inferenceMs: 42 });
    expect(plan(snap({ spec: s }), devs, at(1)).actions[0]).toMatchObject({
      type: 'transition',
      to: 'aborted',
      reason: matching(/2 of 2/),
    });
  });
  it('an event rate outside the gate (canary) aborts the rollout', () => {
    const devs = fleet(10);
    issue(devs, ['d000', 'd001'], 0, T0);
    report(devs, ['d000', 'd001'], { state: 'applied', eventRate: 250 });
    expect(plan(snap(), devs, at(1)).actions[0]).toMatchObject({
      type: 'transition',
      to: 'aborted',
      reason: matching(/2 of 2/),
    });
  });
  it('a wave whose gate fails with nothing pending aborts even under the failure ratio', () => {
    const devs = fleet(10);
    const ids = devs.map((d) => d.deviceId);
    issue(devs, ids, 3, T0);
    report(devs, ids.slice(0, 8), { state: 'applied' });
    report(devs, ids.slice(8), { state: 'failed' });
    const s = snap({ currentWave: 3, spec: spec({ abort: { failureRatio: 0.5, minReported: 2 } }) });
    expect(plan(s, devs, at(1)).actions).toEqual([
      { type: 'transition', to: 'aborted', reason: matching(/wave 3 gate failed: .* 8 of 10/) },
    ]);
  });
  it('aborted -> rolling_back rolls back every device the rollout issued to, failed and pending ones too', () => {
    const devs = fleet(10);
    issue(devs, ['d000', 'd001', 'd002', 'd003'], 1, T0);
    report(devs, ['d000'], { state: 'applied' });
    report(devs, ['d001'], { state: 'applied', health: 'failing' });
    report(devs, ['d002'], { state: 'rolled_back' });
    report(devs, ['d003'], { state: 'failed' });
    issue(devs, ['d004'], 1, T0); // pending: its desired version is the rollout's too
    // d005.. never issued: untouched
    expect(rollbackSet(devs)).toEqual(['d000', 'd001', 'd002', 'd003', 'd004']);
    expect(plan(snap({ state: 'aborted', abortReason: 'x' }), devs, at(1)).actions).toEqual([
      { type: 'rollback', deviceIds: ['d000', 'd001', 'd002', 'd003', 'd004'] },
      { type: 'transition', to: 'rolling_back' },
    ]);
  });
  it('rolling_back waits until every rolled-back device runs (or refused) its restored config', () => {
    const devs = fleet(4);
    issue(devs, ['d000', 'd001', 'd002'], 0, T0);
    report(devs, ['d000'], { restore: 'restored' });
    report(devs, ['d001'], { restore: 'issued' });
    report(devs, ['d002'], { restore: 'not_restored' });
    const s = snap({ state: 'rolling_back', waveStartedAt: at(10) });
    expect(plan(s, devs, at(11))).toEqual({
      actions: [],
      waiting: '1 devices have not applied their rollback yet',
    });
    report(devs, ['d001'], { restore: 'restore_failed' });
    expect(plan(s, devs, at(12)).actions).toEqual([{ type: 'transition', to: 'rolled_back' }]);
  });
  it('rolling_back rolls back a device issued but missed (a crash between issue and rollback)', () => {
    const devs = fleet(4);
    issue(devs, ['d000', 'd001'], 0, T0);
    report(devs, ['d000'], { state: 'applied', restore: 'issued' });
    report(devs, ['d001'], { state: 'applied' });
    const s = snap({ state: 'rolling_back', waveStartedAt: at(10) });
    expect(plan(s, devs, at(12)).actions).toEqual([{ type: 'rollback', deviceIds: ['d001'] }]);
  });
  it('rolling_back ends at the window even when a device never applies its rollback', () => {
    const devs = fleet(4);
    issue(devs, ['d000', 'd001'], 0, T0);
    report(devs, ['d000', 'd001'], { restore: 'issued' });
    const s = snap({ state: 'rolling_back', waveStartedAt: at(10) });
    expect(plan(s, devs, at(69)).actions).toEqual([]);
    expect(plan(s, devs, at(70)).actions).toEqual([{ type: 'transition', to: 'rolled_back' }]);
  });
});

describe('plan: gates wait for evidence (a heartbeat sent after the apply)', () => {
  const rateOnly = spec({ gates: { appliedRatio: 0.9, allowDegraded: true, eventRate: { min: 1 } } });
  const silent = { state: 'applied' as const, signalled: false, fps: undefined, eventRate: undefined };
  it('a device with no heartbeat since its apply is not healthy for any signal gate', () => {
    const d = { ...fleet(1)[0]!, wave: 0, issuedAt: T0, ...silent };
    const gates = [
      rateOnly,
      spec({ gates: { appliedRatio: 0.9, allowDegraded: true, eventRate: { max: 100 } } }),
      spec({ gates: { appliedRatio: 0.9, allowDegraded: true, minFpsRatio: 0.5 } }),
      spec({ gates: { appliedRatio: 0.9, allowDegraded: true, maxInferenceRatio: 2 } }),
    ];
    // fps and inference gates included even without a baseline: silence is never a pass
    for (const g of gates) {
      expect(outcomeOf(g, { ...d, baselineFps: undefined }, at(1))).toBe('pending');
      expect(failureOf(g, { ...d, baselineFps: undefined }, at(59))).toBeNull();
      expect(failureOf(g, { ...d, baselineFps: undefined }, at(60))).toBe('no_health_signal');
    }
    // no signal gate: the applied report (with its health) is the evidence
    expect(outcomeOf(spec({ gates: { appliedRatio: 1, allowDegraded: true } }), d, at(1))).toBe('applied');
    // once a heartbeat arrives its rate is judged
    expect(outcomeOf(rateOnly, { ...d, signalled: true, eventRate: 3 }, at(1))).toBe('applied');
    expect(failureOf(rateOnly, { ...d, signalled: true, eventRate: 0 }, at(1))).toBe('event_rate_low');
  });
  it('soak 0: a canary that applied but sent no heartbeat yet holds; one that reports 0 events aborts', () => {
    const devs = fleet(10).map((d) => ({ ...d, ...silent }));
    issue(devs, ['d000', 'd001'], 0, T0);
    report(devs, ['d000', 'd001'], { state: 'applied' });
    const s = snap({ spec: rateOnly });
    const p = plan(s, devs, at(1));
    expect(p.actions).toEqual([]);
    expect(p.waiting).toBe('wave 0: 0 of 2 applied and healthy, 2 pending');
    report(devs, ['d000', 'd001'], { signalled: true, eventRate: 0 });
    expect(plan(s, devs, at(2)).actions).toEqual([
      { type: 'transition', to: 'aborted', reason: matching(/2 of 2 reported devices failed/) },
    ]);
  });
});

describe('plan: pause, resume, manual abort, terminal states', () => {
  it('paused issues nothing but still aborts on failures', () => {
    const devs = fleet(10);
    issue(devs, ['d000', 'd001'], 0, T0);
    report(devs, ['d000', 'd001'], { state: 'applied' });
    expect(plan(snap({ state: 'paused' }), devs, at(1))).toEqual({ actions: [], waiting: 'paused' });
    report(devs, ['d000', 'd001'], { state: 'failed' });
    expect(plan(snap({ state: 'paused' }), devs, at(1)).actions[0]).toMatchObject({ to: 'aborted' });
  });
  it('resumed from a pause before the canary, it issues the canary', () => {
    const devs = fleet(10);
    expect(plan(snap({ state: 'running', currentWave: -1, waveStartedAt: null }), devs, T0).actions).toEqual([
      { type: 'issue', wave: 0, deviceIds: ['d000', 'd001'] },
    ]);
  });
  it('operator transitions', () => {
    expect(operatorTransition('running', 'pause')).toEqual({ to: 'paused' });
    expect(operatorTransition('pending', 'pause')).toEqual({ to: 'paused' });
    expect(operatorTransition('paused', 'resume')).toEqual({ to: 'running' });
    expect(operatorTransition('running', 'resume')).toHaveProperty('error');
    expect(operatorTransition('paused', 'abort')).toEqual({ to: 'aborted' });
    expect(operatorTransition('running', 'abort')).toEqual({ to: 'aborted' });
    for (const s of ['completed', 'aborted', 'rolling_back', 'rolled_back'] as const) {
      expect(operatorTransition(s, 'abort')).toHaveProperty('error');
      expect(operatorTransition(s, 'pause')).toHaveProperty('error');
    }
  });
  it('terminal states do nothing', () => {
    const devs = fleet(3);
    expect(plan(snap({ state: 'completed' }), devs, T0).actions).toEqual([]);
    expect(plan(snap({ state: 'rolled_back' }), devs, T0).actions).toEqual([]);
  });
});
