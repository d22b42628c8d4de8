/** Median of the values (mean of the two middle ones for an even count); 0 when there are none. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const hi = sorted[mid] ?? 0;
  return sorted.length % 2 === 1 ? hi : ((sorted[mid - 1] ?? hi) + hi) / 2;
}

/** What one camera reports in a heartbeat about the interval since the previous one. */
export interface IntervalSignals {
  /** Median detect+inference latency (ms) of the interval's last `capacity` frames; 0: none detected. */
  inferenceMsP50: number;
  /** Events produced in the interval, per minute of it. */
  eventsPerMinute: number;
}

/**
 * Per-camera analytics over a reporting interval: a bounded ring of the last `capacity` inference latencies
 * and an event count. drain() returns the interval's signals and starts the next interval.
 */
export class IntervalStats {
  private readonly ring: number[] = [];
  private next = 0;
  private events = 0;
  private since: number;

  constructor(
    nowMs: number,
    private readonly capacity = 256,
  ) {
    this.since = nowMs;
  }

  recordInference(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return;
    if (this.ring.length < this.capacity) this.ring.push(ms);
    else this.ring[this.next] = ms;
    this.next = (this.next + 1) % this.capacity;
  }

  recordEvent(): void {
    this.events++;
  }

  drain(nowMs: number): IntervalSignals {
    const elapsedMin = (nowMs - this.since) / 60_000;
    const out: IntervalSignals = {
      inferenceMsP50: median(this.ring),
      eventsPerMinute: elapsedMin > 0 ? this.events / elapsedMin : 0,
    };
    this.ring.length = 0;
    this.next = 0;
    this.events = 0;
    this.since = nowMs;
    return out;
  }
}
