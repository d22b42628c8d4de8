import { compareSemver } from '@vigil/proto';
import type { UpdateRequest } from './contract.js';
import { TERMINAL_STEPS, type Journal } from './journal.js';

/*
 * Pure decisions of the updater: whether a request is acted on, and the health gate's verdict through the
 * bake time. No I/O here: updater.ts feeds them what it read and does what they say.
 */

/** One request is the same request while all its fields are: a new requestedAt is a new try. */
export function requestKey(r: UpdateRequest): string {
  return JSON.stringify([r.version, r.channel, r.requestedAt, r.rolloutId]);
}

export type RequestDecision =
  | { kind: 'none'; why: string }
  /** Download, verify and stage `target`, then switch. */
  | { kind: 'upgrade'; target: string }
  /** `target` is older but still installed in releases/ (verified when it was installed): switch to it. */
  | { kind: 'switch_local'; target: string }
  /** Refused without trying (recorded as failed for this request). */
  | { kind: 'refuse'; reason: string };

export interface RequestContext {
  request: UpdateRequest | undefined;
  /** Version `current` runs. */
  current: string;
  journal: Journal | undefined;
  /** Versions complete in releases/. */
  installed: readonly string[];
  nowMs: number;
  /** Wait before retrying a request whose failure was retryable (repository unreachable). */
  retryDelayMs: number;
}

export function decideRequest(c: RequestContext): RequestDecision {
  const r = c.request;
  if (!r) return { kind: 'none', why: 'no request' };
  if (r.version === c.current) return { kind: 'none', why: `already on ${r.version}` };
  const j = c.journal;
  if (j && j.requestKey === requestKey(r) && TERMINAL_STEPS.includes(j.step)) {
    if (j.step === 'failed' && j.retryable) {
      const due = Date.parse(j.stepAt) + c.retryDelayMs * Math.min(j.attempt, 10);
      if (c.nowMs < due) return { kind: 'none', why: `retrying ${r.version} later` };
    } else return { kind: 'none', why: `${r.version} already ${j.step} for this request` };
  }
  if (compareSemver(r.version, c.current) > 0) return { kind: 'upgrade', target: r.version };
  // Older: the TUF client refuses to download anything not newer (rollback attacks), so only a release
  // this device verified and kept can be switched back to.
  if (c.installed.includes(r.version)) return { kind: 'switch_local', target: r.version };
  return {
    kind: 'refuse',
    reason: `${r.version} is older than the running ${c.current} and not installed here: a downgrade can only return to a release kept on the device`,
  };
}

/** What one /healthz probe said about the release being baked. */
export interface HealthSample {
  healthy: boolean;
  /** Why not healthy (first failing check, unreachable, other version). */
  reason: string | null;
}

interface HealthBody {
  ok?: unknown;
  version?: unknown;
  checks?: unknown;
}

/**
 * Judges one /healthz answer for `target`: HTTP 200, the version being baked (not the old process still
 * answering), and every required check ok.
 */
export function judgeHealth(
  httpStatus: number | null,
  body: unknown,
  target: string,
  requiredChecks: readonly string[],
  error?: string,
): HealthSample {
  if (httpStatus === null) return { healthy: false, reason: `agent /healthz unreachable: ${error ?? '?'}` };
  const b = (typeof body === 'object' && body !== null ? body : {}) as HealthBody;
  if (b.version !== target)
    return {
      healthy: false,
      reason: `agent /healthz reports version ${JSON.stringify(b.version ?? null)}, not ${target}`,
    };
  const checks = (typeof b.checks === 'object' && b.checks !== null ? b.checks : {}) as Record<
    string,
    { ok?: unknown; detail?: unknown } | undefined
  >;
  for (const name of requiredChecks) {
    const c = checks[name];
    if (!c) return { healthy: false, reason: `agent /healthz has no "${name}" check` };
    if (c.ok !== true)
      return {
        healthy: false,
        reason: `check ${name} not ok${typeof c.detail === 'string' ? `: ${c.detail}` : ''}`,
      };
  }
  if (httpStatus !== 200 || b.ok !== true)
    return { healthy: false, reason: `agent /healthz answered ${httpStatus} ok=${String(b.ok)}` };
  return { healthy: true, reason: null };
}

export type GateVerdict = { kind: 'wait' } | { kind: 'commit' } | { kind: 'rollback'; reason: string };

/**
 * The bake: the new agent must be healthy when the bake time ends (having been so since its first healthy
 * probe, give or take `failAfterProbes - 1` misses). It rolls back early once it fails `failAfterProbes`
 * probes in a row after having been healthy (it crashed or degraded), and at the end of the bake time when it
 * was never healthy or is not at that moment. Pure: time comes in with each sample.
 */
export class HealthGate {
  private everHealthy = false;
  private failStreak = 0;
  private lastReason = 'no probe answered';

  constructor(
    private readonly startedAtMs: number,
    private readonly bakeMs: number,
    private readonly failAfterProbes: number,
  ) {}

  feed(sample: HealthSample, nowMs: number): GateVerdict {
    if (sample.healthy) {
      this.everHealthy = true;
      this.failStreak = 0;
    } else {
      this.failStreak++;
      this.lastReason = sample.reason ?? 'unhealthy';
      if (this.everHealthy && this.failStreak >= this.failAfterProbes)
        return {
          kind: 'rollback',
          reason: `unhealthy for ${this.failStreak} probes after being healthy: ${this.lastReason}`,
        };
    }
    if (nowMs - this.startedAtMs < this.bakeMs) return { kind: 'wait' };
    if (sample.healthy) return { kind: 'commit' };
    const secs = Math.round(this.bakeMs / 1000);
    return {
      kind: 'rollback',
      reason: this.everHealthy
        ? `not healthy at the end of the ${secs}s bake: ${this.lastReason}`
        : `never healthy within the ${secs}s bake: ${this.lastReason}`,
    };
  }
}
