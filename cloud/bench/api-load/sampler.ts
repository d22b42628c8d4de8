// Samples the cloud process while load runs: CPU (cores, from /proc/<pid>/stat), RSS (/proc/<pid>/status) and
// the V8 heap (the cloud's own /metrics: prom-client's default nodejs_heap_size_used_bytes), every `everyMs`.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';

export interface Sample {
  /** Seconds since the sampler started. */
  t: number;
  cpuCores: number | null;
  rssMiB: number | null;
  heapUsedMiB: number | null;
  load1: number;
}

let clk: number | undefined;
function clockTicks(): number {
  if (clk === undefined) {
    try {
      clk = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clk = 100;
    }
  }
  return clk;
}

function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / clockTicks();
  } catch {
    return null;
  }
}

function rssMiB(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 102.4) / 10 : null;
  } catch {
    return null;
  }
}

export function metricLine(text: string, name: string): number | null {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? null : Number(line.slice(name.length + 1));
}

export class ProcessSampler {
  readonly samples: Sample[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly t0 = performance.now();
  private last: { t: number; cpu: number | null };

  constructor(
    private readonly pid: number,
    private readonly metricsUrl: string,
    private readonly everyMs: number,
  ) {
    this.last = { t: performance.now(), cpu: cpuSeconds(pid) };
  }

  start(): void {
    this.timer = setInterval(() => void this.sample(), this.everyMs);
  }

  async sample(): Promise<void> {
    const now = performance.now();
    const cpu = cpuSeconds(this.pid);
    const cores =
      cpu !== null && this.last.cpu !== null ? (cpu - this.last.cpu) / ((now - this.last.t) / 1000) : null;
    this.last = { t: now, cpu };
    let heap: number | null = null;
    try {
      const res = await fetch(this.metricsUrl, { signal: AbortSignal.timeout(2000) });
      const v = metricLine(await res.text(), 'vigil_cloud_nodejs_heap_size_used_bytes');
      heap = v === null ? null : Math.round(v / 1024 / 102.4) / 10;
    } catch {
      // the process may be gone
    }
    this.samples.push({
      t: Math.round((now - this.t0) / 100) / 10,
      cpuCores: cores === null ? null : Math.round(cores * 100) / 100,
      rssMiB: rssMiB(this.pid),
      heapUsedMiB: heap,
      load1: Math.round((loadavg()[0] ?? 0) * 100) / 100,
    });
  }

  /** Seconds since the sampler started (the time base of Sample.t). */
  elapsedS(): number {
    return (performance.now() - this.t0) / 1000;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Mean and max of each figure over samples with t in [from, to). */
  stats(
    from = 0,
    to = Infinity,
  ): Record<'cpuCores' | 'rssMiB' | 'heapUsedMiB', { mean: number; max: number } | null> {
    const pick = (k: 'cpuCores' | 'rssMiB' | 'heapUsedMiB'): { mean: number; max: number } | null => {
      const v = this.samples
        .filter((s) => s.t >= from && s.t < to)
        .map((s) => s[k])
        .filter((x): x is number => x !== null);
      if (v.length === 0) return null;
      return {
        mean: Math.round((v.reduce((a, b) => a + b, 0) / v.length) * 100) / 100,
        max: Math.max(...v),
      };
    };
    return { cpuCores: pick('cpuCores'), rssMiB: pick('rssMiB'), heapUsedMiB: pick('heapUsedMiB') };
  }
}
