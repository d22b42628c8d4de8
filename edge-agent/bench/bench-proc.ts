// Small helpers for pipeline.bench.ts: CPU and memory of processes from /proc (Linux), machine-wide CPU,
// percentiles and Prometheus-histogram quantiles. No dependency on the agent.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let ticks: number | undefined;

/** Kernel clock ticks per second (utime/stime unit in /proc/<pid>/stat). */
export function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

/** utime + stime of a live process in seconds, or undefined when it is gone (or not on Linux). */
export function procCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (comm) is in parentheses and may hold spaces: count fields after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    return (Number(rest[11]) + Number(rest[12])) / clockTicks();
  } catch {
    return undefined;
  }
}

/** Resident set size of a live process in bytes (VmRSS), or undefined when it is gone. */
export function procRssBytes(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Proportional set size of a live process in bytes (shared pages split between the processes that map them:
 * summing PSS over ffmpeg children does not count the shared libraries N times, summing RSS does).
 */
export function procPssBytes(pid: number): number | undefined {
  try {
    const m = /^Pss:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

export interface MachineCpu {
  /** Jiffies spent busy (everything but idle and iowait), all cores. */
  busy: number;
  total: number;
}

/** Aggregate CPU counters of the whole machine (every process, not just ours). */
export function machineCpu(): MachineCpu | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = v.reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}

export const round = (x: number, digits = 2): number => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};

export const mb = (bytes: number): number => round(bytes / 1_048_576, 1);

/** Nearest-rank percentile of an ascending array (q in 0..1). */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

export interface Summary {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Percentiles of samples in ms (rounded to 0.01). */
export function summarize(samples: readonly number[]): Summary | null {
  if (samples.length === 0) return null;
  const s = [...samples].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  return {
    n: s.length,
    p50: round(percentile(s, 0.5)),
    p90: round(percentile(s, 0.9)),
    p99: round(percentile(s, 0.99)),
    max: round(s[s.length - 1]!),
    mean: round(mean),
  };
}

/** Cumulative bucket counts by upper bound (Infinity for +Inf), as prom-client reports them. */
export type Buckets = Map<number, number>;

/**
 * Quantile of a Prometheus histogram (cumulative buckets), linearly interpolated inside the bucket it falls
 * in, like histogram_quantile(). Returns Infinity when it falls in the +Inf bucket and NaN without samples.
 */
export function histogramQuantile(buckets: Buckets, q: number): number {
  const bounds = [...buckets.keys()].sort((a, b) => a - b);
  const total = buckets.get(Infinity) ?? buckets.get(bounds[bounds.length - 1]!) ?? 0;
  if (total <= 0) return Number.NaN;
  const rank = q * total;
  let prevBound = 0;
  let prevCount = 0;
  for (const b of bounds) {
    const c = buckets.get(b) ?? 0;
    if (c >= rank) {
      if (b === Infinity) return Infinity;
      const inBucket = c - prevCount;
      return inBucket > 0 ? prevBound + ((b - prevBound) * (rank - prevCount)) / inBucket : b;
    }
    prevBound = b;
    prevCount = c;
  }
  return Infinity;
}

/** Bucket counts of `after` minus those of `before` (a window of a cumulative histogram). */
export function bucketDiff(after: Buckets, before: Buckets): Buckets {
  const d: Buckets = new Map();
  for (const [le, c] of after) d.set(le, c - (before.get(le) ?? 0));
  return d;
}
