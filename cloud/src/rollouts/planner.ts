/*
 * The rollout planner: a pure state machine over one rollout (issue #7). Given the rollout, the per-device
 * observations and the clock, it says what to do next; the executor (rollouts/executor.ts) does it and
 * persists the result, then calls the planner again on the next tick.
 *
 *   pending -> running (wave 0 = canary, then waves 1..n) -> completed
 *   running <-> paused
 *   running | paused -> aborted -> rolling_back -> rolled_back
 *
 * Waves are cumulative: wave k covers the first `waveSize(k)` devices of the rollout's device order (the canary
 * is wave 0, `canary` devices; wave i >= 1 covers `waves[i-1]` percent, at least the previous wave). A device
 * "took" the config when it reported it applied; it "failed" when it reported failed/rolled_back, when it is
 * unhealthy after applying (health failing, fps below the gate's share of its pre-rollout baseline, inference
 * latency above the gate's multiple of its pre-rollout baseline, event rate outside the bounds), or when it has
 * not reported within the gate window. With any signal gate (fps, inference, event rate) a device is healthy
 * only on evidence: a heartbeat it sent while running the rollout's version; until one arrives it is pending,
 * and after the gate window it failed (no_health_signal). Silence is never a pass.
 *
 * A rollback returns every device the rollout issued to (applied, failed or still pending) to its last known
 * good config (rollouts/executor.ts picks the body); the rollout is rolled_back once every such device runs it,
 * refused it, or the gate window is over.
 */

export type RolloutState =
  'pending' | 'running' | 'paused' | 'completed' | 'aborted' | 'rolling_back' | 'rolled_back';

export const ROLLOUT_STATES: readonly RolloutState[] = [
  'pending',
  'running',
  'paused',
  'completed',
  'aborted',
  'rolling_back',
  'rolled_back',
];

export interface RolloutSpec {
  /** Devices in the canary wave (at least 1, capped at the fleet size). */
  canary: number;
  /** Cumulative percentages of the target devices, strictly increasing, the last 100. */
  waves: readonly number[];
  /** Seconds a device has to report after its wave was issued; no report by then is a failure. */
  gateWindowSeconds: number;
  /** Seconds a wave must run (devices applied and healthy) before the next is issued. */
  soakSeconds: number;
  gates: {
    /** Share (0..1) of a wave's devices that must have applied and be healthy to advance. */
    appliedRatio: number;
    /** A device applied but reporting health `failing` (or `degraded` when false) counts as failed. */
    allowDegraded: boolean;
    /** Share (0..1) of the device's pre-rollout fps below which it counts as failed; absent: no fps gate. */
    minFpsRatio?: number | undefined;
    /**
     * Multiple (>= 1) of the device's pre-rollout inference latency above which it counts as failed; absent: no
     * inference-latency gate (devices without a baseline or that run no inference pass).
     */
    maxInferenceRatio?: number | undefined;
    /** Events per minute bounds; absent: no event-rate gate (and devices without a rate pass). */
    eventRate?: { min?: number | undefined; max?: number | undefined } | undefined;
  };
  abort: {
    /** Abort when failed / reported exceeds this (0..1)... */
    failureRatio: number;
    /** ...once at least this many devices have reported (applied or failed). */
    minReported: number;
  };
}

export type ReportedState = 'pending' | 'applied' | 'failed' | 'rolled_back' | 'unknown';
/**
 * Where a device is in its rollout's rollback: `none` (not rolled back); `issued` (its last known good body was
 * re-issued, the device has not applied it yet); `restored` (it runs it); `restore_failed` (it refused it);
 * `not_restored` (it has no known good config: left as it is and reported).
 */
export type RestoreState = 'none' | 'issued' | 'restored' | 'restore_failed' | 'not_restored';
export type Health = 'ok' | 'degraded' | 'failing' | 'unknown';

/** One target device as the executor observed it. */
export interface DeviceObservation {
  deviceId: string;
  /** The wave it was issued in; null: not issued yet. */
  wave: number | null;
  issuedAt: Date | null;
  /** What the device reported about the rollout's version (pending until it reports about that version). */
  state: ReportedState;
  /** Why the device failed or rolled back, as it reported (agent rollouts: the updater's reason). */
  detail?: string | undefined;
  health: Health;
  /** Mean fps now, and before the rollout (from heartbeats); undefined when unknown. */
  fps?: number | undefined;
  baselineFps?: number | undefined;
  /**
   * Mean inference latency (ms) now, and before the rollout (from heartbeats); undefined when unknown or when
   * no camera ran inference.
   */
  inferenceMs?: number | undefined;
  baselineInferenceMs?: number | undefined;
  /** Events per minute (summed over cameras, from a heartbeat sent after the apply); undefined when unknown. */
  eventRate?: number | undefined;
  /**
   * A heartbeat sent while the device ran this version (or a later one) arrived: the signals above come from
   * it. False: no evidence yet (signals undefined).
   */
  signalled: boolean;
  restore: RestoreState;
}

export interface RolloutSnapshot {
  state: RolloutState;
  /** -1 before the canary; 0 = canary; i = waves[i-1]. */
  currentWave: number;
  /** When the current wave was issued. */
  waveStartedAt: Date | null;
  spec: RolloutSpec;
  abortReason: string | null;
}

export type PlannerAction =
  | { type: 'issue'; wave: number; deviceIds: string[] }
  | { type: 'transition'; to: RolloutState; wave?: number | undefined; reason?: string | undefined }
  | { type: 'rollback'; deviceIds: string[] };

export type DeviceOutcome = 'not_issued' | 'pending' | 'applied' | 'failed';

export interface WaveProgress {
  wave: number;
  devices: number;
  applied: number;
  failed: number;
  pending: number;
}

export interface Plan {
  actions: PlannerAction[];
  /** Why nothing happens, when nothing does (for logs and status). */
  waiting: string | null;
}

/** Target devices covered by wave `k` (cumulative). */
export function waveSize(spec: RolloutSpec, total: number, k: number): number {
  if (total === 0) return 0;
  const canary = Math.min(Math.max(1, spec.canary), total);
  if (k <= 0) return canary;
  const pct = spec.waves[Math.min(k, spec.waves.length) - 1] ?? 100;
  return Math.min(total, Math.max(canary, Math.ceil((pct * total) / 100)));
}

/** The last wave index (the canary is 0). */
export function lastWave(spec: RolloutSpec): number {
  return spec.waves.length;
}

/** The spec gates on heartbeat signals (fps, inference latency, event rate). */
export function needsSignal(spec: RolloutSpec): boolean {
  const g = spec.gates;
  return g.minFpsRatio !== undefined || g.maxInferenceRatio !== undefined || g.eventRate !== undefined;
}

/** Why a device failed, or null when it did not (yet). */
export function failureOf(spec: RolloutSpec, d: DeviceObservation, now: Date): string | null {
  if (d.wave === null) return null;
  if (d.state === 'failed' || d.state === 'rolled_back')
    return d.detail ? `${d.state}: ${d.detail.slice(0, 200)}` : d.state;
  if (d.state === 'applied') {
    if (d.health === 'failing') return 'health_failing';
    if (d.health === 'degraded' && !spec.gates.allowDegraded) return 'health_degraded';
    // Every signal gate needs a heartbeat sent after the apply; until one arrives the device is not healthy.
    if (needsSignal(spec) && !d.signalled) return timedOut(spec, d, now) ? 'no_health_signal' : null;
    const minFps = spec.gates.minFpsRatio;
    if (minFps !== undefined && d.baselineFps !== undefined && d.baselineFps > 0) {
      // A heartbeat without cameras has no fps: still no evidence for this gate.
      if (d.fps === undefined) return timedOut(spec, d, now) ? 'no_health_signal' : null;
      if (d.fps < d.baselineFps * minFps) return 'fps_below_baseline';
    }
    const maxInf = spec.gates.maxInferenceRatio;
    if (maxInf !== undefined && d.baselineInferenceMs !== undefined && d.baselineInferenceMs > 0) {
      // Like the fps gate: it needs a heartbeat after the apply that reports inference latency.
      if (d.inferenceMs === undefined) return timedOut(spec, d, now) ? 'no_health_signal' : null;
      if (d.inferenceMs > d.baselineInferenceMs * maxInf) return 'inference_latency_high';
    }
    const rate = spec.gates.eventRate;
    if (rate) {
      if (d.eventRate === undefined) return timedOut(spec, d, now) ? 'no_health_signal' : null;
      if (rate.min !== undefined && d.eventRate < rate.min) return 'event_rate_low';
      if (rate.max !== undefined && d.eventRate > rate.max) return 'event_rate_high';
    }
    return null;
  }
  return timedOut(spec, d, now) ? 'timeout' : null;
}

function timedOut(spec: RolloutSpec, d: DeviceObservation, now: Date): boolean {
  return d.issuedAt !== null && now.getTime() - d.issuedAt.getTime() >= spec.gateWindowSeconds * 1000;
}

/** Applied, but a signal gate still waits for its first heartbeat after the apply. */
function awaitingSignal(spec: RolloutSpec, d: DeviceObservation): boolean {
  if (needsSignal(spec) && !d.signalled) return true;
  const fps =
    spec.gates.minFpsRatio !== undefined &&
    d.baselineFps !== undefined &&
    d.baselineFps > 0 &&
    d.fps === undefined;
  const inference =
    spec.gates.maxInferenceRatio !== undefined &&
    d.baselineInferenceMs !== undefined &&
    d.baselineInferenceMs > 0 &&
    d.inferenceMs === undefined;
  const rate = spec.gates.eventRate !== undefined && d.eventRate === undefined;
  return fps || inference || rate;
}

export function outcomeOf(spec: RolloutSpec, d: DeviceObservation, now: Date): DeviceOutcome {
  if (d.wave === null) return 'not_issued';
  if (failureOf(spec, d, now) !== null) return 'failed';
  return d.state === 'applied' && !awaitingSignal(spec, d) ? 'applied' : 'pending';
}

/** Per-wave counts (a device counts in the wave it was issued in). */
export function progress(
  spec: RolloutSpec,
  devices: readonly DeviceObservation[],
  now: Date,
): WaveProgress[] {
  const waves: WaveProgress[] = [];
  for (let k = 0; k <= lastWave(spec); k++)
    waves.push({ wave: k, devices: 0, applied: 0, failed: 0, pending: 0 });
  const order = devices.length;
  for (let k = 0; k <= lastWave(spec); k++) {
    const from = k === 0 ? 0 : waveSize(spec, order, k - 1);
    waves[k]!.devices = Math.max(0, waveSize(spec, order, k) - from);
  }
  for (const d of devices) {
    if (d.wave === null) continue;
    const w = waves[d.wave];
    if (!w) continue;
    const o = outcomeOf(spec, d, now);
    if (o === 'applied') w.applied++;
    else if (o === 'failed') w.failed++;
    else w.pending++;
  }
  return waves;
}

/**
 * The devices a rollback returns to their last known good config: every device the rollout issued to (it
 * applied, failed, or has not reported yet: its desired version is the rollout's either way), not rolled back
 * yet.
 */
export function rollbackSet(devices: readonly DeviceObservation[]): string[] {
  return devices.filter((d) => d.wave !== null && d.restore === 'none').map((d) => d.deviceId);
}

/** The abort criterion over every issued device; the reason, or null. */
export function abortReason(
  spec: RolloutSpec,
  devices: readonly DeviceObservation[],
  now: Date,
): string | null {
  let failed = 0;
  let applied = 0;
  for (const d of devices) {
    const o = outcomeOf(spec, d, now);
    if (o === 'failed') failed++;
    else if (o === 'applied') applied++;
  }
  const reported = failed + applied;
  if (reported === 0 || reported < spec.abort.minReported) return null;
  const ratio = failed / reported;
  return ratio > spec.abort.failureRatio
    ? `failure ratio ${ratio.toFixed(2)} > ${spec.abort.failureRatio} (${failed} of ${reported} reported devices failed)`
    : null;
}

/**
 * The next step of a rollout. `devices` holds every target device in rollout order (wave assignment follows
 * that order). Pure: the same inputs give the same plan.
 */
export function plan(r: RolloutSnapshot, devices: readonly DeviceObservation[], now: Date): Plan {
  const spec = r.spec;
  const total = devices.length;
  switch (r.state) {
    case 'completed':
    case 'rolled_back':
      return { actions: [], waiting: null };
    case 'aborted':
      return {
        actions: [
          { type: 'rollback', deviceIds: rollbackSet(devices) },
          { type: 'transition', to: 'rolling_back' },
        ],
        waiting: null,
      };
    case 'rolling_back': {
      // A device issued but not rolled back (a crash between the issue and the rollback) is rolled back now.
      const missed = rollbackSet(devices);
      if (missed.length > 0) return { actions: [{ type: 'rollback', deviceIds: missed }], waiting: null };
      const applying = devices.filter((d) => d.restore === 'issued').length;
      const windowOver =
        r.waveStartedAt === null ||
        now.getTime() - r.waveStartedAt.getTime() >= spec.gateWindowSeconds * 1000;
      if (applying > 0 && !windowOver)
        return { actions: [], waiting: `${applying} devices have not applied their rollback yet` };
      return { actions: [{ type: 'transition', to: 'rolled_back' }], waiting: null };
    }
    case 'pending': {
      if (total === 0)
        return {
          actions: [{ type: 'transition', to: 'completed', reason: 'no target devices' }],
          waiting: null,
        };
      return {
        actions: [
          { type: 'transition', to: 'running', wave: 0 },
          {
            type: 'issue',
            wave: 0,
            deviceIds: devices.slice(0, waveSize(spec, total, 0)).map((d) => d.deviceId),
          },
        ],
        waiting: null,
      };
    }
    case 'paused':
    case 'running': {
      const reason = abortReason(spec, devices, now);
      if (reason !== null) return { actions: [{ type: 'transition', to: 'aborted', reason }], waiting: null };
      if (r.state === 'paused') return { actions: [], waiting: 'paused' };
      const k = Math.max(0, r.currentWave);
      const size = waveSize(spec, total, k);
      // Devices of the current wave (and earlier) not issued yet (e.g. a crash between the state change and
      // the issue): issue them now.
      const missing = devices.slice(0, size).filter((d) => d.wave === null);
      if (missing.length > 0)
        return {
          actions: [{ type: 'issue', wave: k, deviceIds: missing.map((d) => d.deviceId) }],
          waiting: null,
        };
      const issued = devices.slice(0, size);
      let applied = 0;
      let pending = 0;
      for (const d of issued) {
        const o = outcomeOf(spec, d, now);
        if (o === 'applied') applied++;
        else if (o === 'pending') pending++;
      }
      const ratio = applied / issued.length;
      const started = r.waveStartedAt?.getTime() ?? now.getTime();
      const elapsed = (now.getTime() - started) / 1000;
      const gatePassed = ratio >= spec.gates.appliedRatio && elapsed >= spec.soakSeconds;
      if (!gatePassed) {
        if (pending === 0 && ratio < spec.gates.appliedRatio)
          return {
            actions: [
              {
                type: 'transition',
                to: 'aborted',
                reason: `wave ${k} gate failed: applied and healthy ${applied} of ${issued.length} (< ${spec.gates.appliedRatio})`,
              },
            ],
            waiting: null,
          };
        return {
          actions: [],
          waiting: `wave ${k}: ${applied} of ${issued.length} applied and healthy, ${pending} pending`,
        };
      }
      if (k >= lastWave(spec) || size >= total)
        return { actions: [{ type: 'transition', to: 'completed' }], waiting: null };
      const next = k + 1;
      const nextSize = waveSize(spec, total, next);
      return {
        actions: [
          { type: 'transition', to: 'running', wave: next },
          { type: 'issue', wave: next, deviceIds: devices.slice(size, nextSize).map((d) => d.deviceId) },
        ],
        waiting: null,
      };
    }
  }
}

/** Transitions an operator may ask for; the new state, or an error message. */
export function operatorTransition(
  state: RolloutState,
  op: 'pause' | 'resume' | 'abort',
): { to: RolloutState } | { error: string } {
  switch (op) {
    case 'pause':
      return state === 'running' || state === 'pending'
        ? { to: 'paused' }
        : { error: `cannot pause a ${state} rollout` };
    case 'resume':
      return state === 'paused' ? { to: 'running' } : { error: `cannot resume a ${state} rollout` };
    case 'abort':
      return state === 'running' || state === 'paused' || state === 'pending'
        ? { to: 'aborted' }
        : { error: `cannot abort a ${state} rollout` };
  }
}
