/*
 * Per-destination circuit breakers (one per webhook): after `failures` failed attempts in a row the circuit
 * opens and calls to that webhook stop for `openMs` (its jobs are put back with the remaining delay instead),
 * so a receiver that is down costs neither timeouts on every job nor a hammering once it comes back. Then it
 * is half-open: one call (the probe) goes through; success closes it, failure opens it again. Jobs that
 * arrive while the probe runs wait a little (PROBE_WAIT_MS).
 *
 * Hand-written rather than cockatiel's: the worker needs the remaining open time to nak jobs with it, which
 * cockatiel's breaker does not expose, and the state here is a few fields. State is per process: with several
 * cloud processes each learns about a failing receiver on its own (at most `failures` calls each).
 */

export type BreakerDecision = { allowed: true; probe: boolean } | { allowed: false; retryInMs: number };

interface Circuit {
  failures: number;
  /** Set while open or half-open. */
  openUntil?: number;
  /** When the half-open probe was let through; a probe that never reports (its job crashed) expires. */
  probingSince?: number | undefined;
}

export const PROBE_WAIT_MS = 1000;

export class CircuitBreakers {
  private readonly circuits = new Map<string, Circuit>();

  constructor(
    private readonly opts: {
      failures: number;
      openMs: number;
      now?: () => number;
      /** Circuits remembered at most; closed ones go first (a bound on memory, not on correctness). */
      maxEntries?: number;
    },
  ) {}

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  check(key: string): BreakerDecision {
    const c = this.circuits.get(key);
    if (c?.openUntil === undefined) return { allowed: true, probe: false };
    const left = c.openUntil - this.now();
    if (left > 0) return { allowed: false, retryInMs: left };
    const now = this.now();
    if (c.probingSince !== undefined && now - c.probingSince < this.opts.openMs)
      return { allowed: false, retryInMs: PROBE_WAIT_MS };
    c.probingSince = now;
    return { allowed: true, probe: true };
  }

  success(key: string): void {
    this.circuits.delete(key);
  }

  /** Records a failed call; true when this failure opened the circuit. */
  failure(key: string): boolean {
    const c: Circuit = this.circuits.get(key) ?? { failures: 0 };
    c.failures += 1;
    const wasProbe = c.probingSince !== undefined;
    c.probingSince = undefined;
    this.circuits.delete(key); // re-insert: Map order is then least recently failed first
    this.circuits.set(key, c);
    this.trim();
    if (wasProbe || (c.openUntil === undefined && c.failures >= this.opts.failures)) {
      c.openUntil = this.now() + this.opts.openMs;
      return true;
    }
    return false;
  }

  /** Circuits open or half-open now. */
  openCount(): number {
    let n = 0;
    for (const c of this.circuits.values()) if (c.openUntil !== undefined) n++;
    return n;
  }

  private trim(): void {
    const max = this.opts.maxEntries ?? 100_000;
    if (this.circuits.size <= max) return;
    for (const [k, c] of this.circuits) {
      if (this.circuits.size <= max) return;
      if (c.openUntil === undefined) this.circuits.delete(k);
    }
    for (const k of this.circuits.keys()) {
      if (this.circuits.size <= max) return;
      this.circuits.delete(k);
    }
  }
}
