/*
 * RSS and CPU time of the processes a fleet-sim run measures (the sim itself, the cloud process, each nats-server,
 * PostgreSQL's postmaster with its backends), read from /proc, and the figures derived from two readings.
 * Linux only; elsewhere a reading is undefined and the figures say null.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ: 100 on every Linux architecture we run). */
export const CLOCK_TICKS = 100;
const MIB = 1024 * 1024;

/** The fields of /proc/<pid>/stat used here (times in clock ticks). */
export interface ProcStat {
  ppid: number;
  utime: number;
  stime: number;
  /** CPU of children it waited for (PostgreSQL backends that ended count into the postmaster's). */
  cutime: number;
  cstime: number;
}

/** Parses /proc/<pid>/stat. comm may hold spaces and parentheses, so the fields are read after the last ')'. */
export function parseProcStat(text: string): ProcStat {
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // After comm: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14) (proc(5) fields 3, 4, 14..17).
  const n = (i: number): number => {
    const v = Number(f[i]);
    if (!Number.isFinite(v))
      throw new Error(`/proc stat: field ${i + 3} is not a number in "${text.trim()}"`);
    return v;
  };
  return { ppid: n(1), utime: n(11), stime: n(12), cutime: n(13), cstime: n(14) };
}

/** A `Name:   1234 kB` line of /proc/<pid>/status (or smaps_rollup) in bytes; undefined when absent. */
export function parseKbField(text: string, name: string): number | undefined {
  const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
  return m ? Number(m[1]) * 1024 : undefined;
}

/** One reading of a process (or a process and its children). */
export interface ProcReading {
  rssBytes: number;
  /** User + system CPU seconds since it started (with `withChildren`: its reaped children's too). */
  cpuSeconds: number;
  processes: number;
}

function readOne(pid: number, withReaped: boolean): (ProcReading & { ppid: number }) | undefined {
  try {
    const st = parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    const rss = parseKbField(readFileSync(`/proc/${pid}/status`, 'utf8'), 'VmRSS') ?? 0;
    const ticks = st.utime + st.stime + (withReaped ? st.cutime + st.cstime : 0);
    return { rssBytes: rss, cpuSeconds: ticks / CLOCK_TICKS, processes: 1, ppid: st.ppid };
  } catch {
    return undefined; // gone, or no /proc
  }
}

/** RSS and CPU seconds of one process (its own CPU only). */
export function readProcess(pid: number | undefined): ProcReading | undefined {
  if (pid === undefined) return undefined;
  const r = readOne(pid, false);
  return r && { rssBytes: r.rssBytes, cpuSeconds: r.cpuSeconds, processes: 1 };
}

/** Pids whose parent is `ppid`. */
export function childPids(ppid: number): number[] {
  const out: number[] = [];
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (parseProcStat(readFileSync(`/proc/${name}/stat`, 'utf8')).ppid === ppid) out.push(Number(name));
    } catch {
      // ended meanwhile
    }
  }
  return out;
}

/**
 * A server and its direct children (the postmaster and its backends): RSS summed (shared buffers are counted
 * in every backend that touched them, so this overstates), CPU summed with the CPU of children that already
 * ended (reaped by the parent: cutime/cstime), so short-lived backends are not lost.
 */
export function readProcessTree(pid: number | undefined): ProcReading | undefined {
  if (pid === undefined) return undefined;
  const root = readOne(pid, true);
  if (!root) return undefined;
  const sum: ProcReading = { rssBytes: root.rssBytes, cpuSeconds: root.cpuSeconds, processes: 1 };
  for (const c of childPids(pid)) {
    const r = readOne(c, true);
    if (!r) continue;
    sum.rssBytes += r.rssBytes;
    sum.cpuSeconds += r.cpuSeconds;
    sum.processes++;
  }
  return sum;
}

/** What to measure: a name, how to find its pid now, and whether its children count. */
export interface MeasuredProcess {
  name: string;
  pid: () => number | undefined;
  tree?: boolean;
}

export interface ProcessFigures {
  rss_mib: number;
  cpu_s: number;
  processes: number;
}

export interface ResourceSample {
  phase: string;
  /** ms since the sampler was made. */
  t_ms: number;
  processes: Record<string, ProcessFigures | null>;
}

const round = (v: number, digits = 1): number => Math.round(v * 10 ** digits) / 10 ** digits;

/** Readings of every measured process at named phases of a run. */
export class ResourceSampler {
  readonly samples: ResourceSample[] = [];
  private readonly t0: number;

  constructor(
    private readonly targets: readonly MeasuredProcess[],
    private readonly now: () => number = Date.now,
  ) {
    this.t0 = now();
  }

  sample(phase: string): ResourceSample {
    const processes: Record<string, ProcessFigures | null> = {};
    for (const t of this.targets) {
      const pid = t.pid();
      const r = t.tree ? readProcessTree(pid) : readProcess(pid);
      processes[t.name] = r
        ? { rss_mib: round(r.rssBytes / MIB), cpu_s: round(r.cpuSeconds, 2), processes: r.processes }
        : null;
    }
    const s = { phase, t_ms: this.now() - this.t0, processes };
    this.samples.push(s);
    return s;
  }

  find(phase: string): ResourceSample | undefined {
    return this.samples.find((s) => s.phase === phase);
  }
}

/** CPU use between two samples, per process: percent of one core (100 = one core busy all the time). */
export function cpuPercent(from: ResourceSample, to: ResourceSample): Record<string, number | null> {
  const seconds = (to.t_ms - from.t_ms) / 1000;
  const out: Record<string, number | null> = {};
  for (const [name, b] of Object.entries(to.processes)) {
    const a = from.processes[name];
    out[name] = a && b && seconds > 0 ? round(((b.cpu_s - a.cpu_s) / seconds) * 100) : null;
  }
  return out;
}

export interface PerThousand {
  /** RSS at `at` (MiB), that per 1,000 devices, and what the devices added over the base, per 1,000 devices. */
  rss_mib: number;
  rss_mib_per_1000_devices: number;
  rss_mib_added_per_1000_devices: number;
  /** CPU during the steady window (percent of one core), and per 1,000 devices. */
  cpu_pct_steady: number | null;
  cpu_pct_per_1000_devices: number | null;
}

/**
 * Per-1,000-device figures of each process: RSS at `at` (every device connected), and what was added over the
 * lowest of the `base` readings (idle, after enrollment: a Node process's RSS right after its start still holds
 * garbage of the start-up, so its idle reading can be higher than later ones); CPU over the steady window
 * [steadyFrom, steadyTo].
 */
export function perThousandDevices(
  devices: number,
  base: readonly ResourceSample[],
  at: ResourceSample,
  steadyFrom: ResourceSample,
  steadyTo: ResourceSample,
): Record<string, PerThousand | null> {
  const cpu = cpuPercent(steadyFrom, steadyTo);
  const k = devices > 0 ? 1000 / devices : 0;
  const out: Record<string, PerThousand | null> = {};
  for (const [name, now] of Object.entries(at.processes)) {
    const before = base.map((b) => b.processes[name]?.rss_mib).filter((v) => v !== undefined);
    if (!now || before.length === 0) {
      out[name] = null;
      continue;
    }
    const c = cpu[name] ?? null;
    out[name] = {
      rss_mib: now.rss_mib,
      rss_mib_per_1000_devices: round(now.rss_mib * k, 2),
      rss_mib_added_per_1000_devices: round((now.rss_mib - Math.min(...before)) * k, 2),
      cpu_pct_steady: c,
      cpu_pct_per_1000_devices: c === null ? null : round(c * k, 2),
    };
  }
  return out;
}

/** Several processes' per-1,000 figures added up (all nats-server nodes); null when any is missing. */
export function sumPerThousand(list: ReadonlyArray<PerThousand | null>): PerThousand | null {
  if (list.length === 0 || list.some((p) => p === null)) return null;
  const all = list as PerThousand[];
  const sum = (f: (p: PerThousand) => number | null): number | null =>
    all.some((p) => f(p) === null)
      ? null
      : round(
          all.reduce((a, p) => a + f(p)!, 0),
          2,
        );
  return {
    rss_mib: sum((p) => p.rss_mib)!,
    rss_mib_per_1000_devices: sum((p) => p.rss_mib_per_1000_devices)!,
    rss_mib_added_per_1000_devices: sum((p) => p.rss_mib_added_per_1000_devices)!,
    cpu_pct_steady: sum((p) => p.cpu_pct_steady),
    cpu_pct_per_1000_devices: sum((p) => p.cpu_pct_per_1000_devices),
  };
}

/** The soft and hard open-file limits of this process (/proc/self/limits), undefined when unknown. */
export function openFileLimits(text?: string): { soft: number; hard: number } | undefined {
  let t = text;
  if (t === undefined) {
    try {
      t = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return undefined;
    }
  }
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(t);
  if (!m) return undefined;
  const v = (s: string): number => (s === 'unlimited' ? Number.POSITIVE_INFINITY : Number(s));
  return { soft: v(m[1]!), hard: v(m[2]!) };
}

/**
 * Open files a run needs: the sim holds one TLS socket per device (plus ~512 for the rest: gRPC, HTTP, the
 * runtime), each nats-server one per connection it serves (the devices split over the nodes, plus the cloud's
 * and the routes, and its JetStream files). nats-server processes inherit this process's limit.
 */
export function openFilesNeeded(devices: number, natsNodes: number): { sim: number; natsNode: number } {
  return { sim: devices + 512, natsNode: Math.ceil(devices / Math.max(1, natsNodes)) + 512 };
}

/** Undefined when the limit suffices, else the message to fail with (what to raise, to what). */
export function checkOpenFiles(
  devices: number,
  natsNodes: number,
  limits: { soft: number; hard: number } | undefined,
): string | undefined {
  if (!limits) return undefined;
  const need = openFilesNeeded(devices, natsNodes);
  const most = Math.max(need.sim, need.natsNode);
  if (most <= limits.soft) return undefined;
  const raise =
    most <= limits.hard
      ? `raise it in this shell first: ulimit -n ${Math.min(limits.hard, most + 1024)}`
      : `the hard limit is ${limits.hard}: raise it (limits.conf / systemd LimitNOFILE / docker --ulimit nofile=${most}) then ulimit -n ${most}`;
  return (
    `--devices ${devices} needs about ${most} open files (one TLS connection per device in the sim` +
    `${natsNodes > 1 ? '' : ' and in the one nats-server'}), but the soft limit (ulimit -n) is ${limits.soft}; ${raise}`
  );
}
