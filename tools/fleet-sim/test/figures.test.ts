// The pure helpers behind fleet-sim's figures (issue 17): /proc parsing, per-1,000-device derivation, the
// open-file check, Prometheus text sums, steady-window rates, percentiles and the progress line.
import { describe, expect, it } from 'vitest';
import {
  checkOpenFiles,
  countSimConnections,
  configStatusCounts,
  cpuPercent,
  heartbeatCounts,
  openFileLimits,
  parseKbField,
  parseProcStat,
  percentile,
  perThousandDevices,
  readProcess,
  readProcessTree,
  rolloutLine,
  steadyFigures,
  sumMetric,
  sumPerThousand,
  type ResourceSample,
} from '../src/index.js';

// A real line shape (kernel 6.x), with a comm holding a space and a parenthesis.
const STAT =
  '4242 (postgres: x) y) S 4000 4242 4242 0 -1 4194560 900 0 0 0 250 75 30 12 20 0 1 0 1000 200000000 5000 ' +
  '18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0';

describe('fleet-sim figures', () => {
  it('parses /proc/<pid>/stat after the last parenthesis of comm', () => {
    expect(parseProcStat(STAT)).toEqual({ ppid: 4000, utime: 250, stime: 75, cutime: 30, cstime: 12 });
    expect(() => parseProcStat('1 (x) S')).toThrow(/not a number/);
  });

  it('reads kB fields of /proc/<pid>/status', () => {
    const status = 'Name:\tnode\nVmPeak:\t  900000 kB\nVmRSS:\t  123456 kB\nThreads:\t11\n';
    expect(parseKbField(status, 'VmRSS')).toBe(123456 * 1024);
    expect(parseKbField(status, 'VmSwap')).toBeUndefined();
  });

  it('reads this process from /proc (RSS and CPU above 0), and nothing for a pid that does not exist', () => {
    const me = readProcess(process.pid);
    expect(me?.rssBytes).toBeGreaterThan(10 * 1024 * 1024);
    expect(me?.cpuSeconds).toBeGreaterThan(0);
    expect(readProcessTree(process.pid)?.processes).toBeGreaterThanOrEqual(1);
    expect(readProcess(2 ** 22 + 7)).toBeUndefined();
    expect(readProcess(undefined)).toBeUndefined();
  });

  it('derives CPU percent and per-1,000-device figures from samples', () => {
    const s = (
      phase: string,
      t: number,
      sim: [number, number],
      pg: [number, number] | null,
    ): ResourceSample => ({
      phase,
      t_ms: t,
      processes: {
        sim: { rss_mib: sim[0], cpu_s: sim[1], processes: 1 },
        postgres: pg && { rss_mib: pg[0], cpu_s: pg[1], processes: 5 },
      },
    });
    const idle = s('idle', 0, [100, 1], [50, 0.5]);
    // A Node process's RSS right after its start holds start-up garbage: the lowest base reading counts.
    const enrolled = s('after_enroll', 30_000, [90, 5], [60, 1]);
    const from = s('steady_start', 60_000, [300, 20], [70, 3]);
    const to = s('steady_end', 90_000, [310, 35], null);
    // 15 CPU seconds over 30 s: 50 % of one core.
    expect(cpuPercent(from, to)).toEqual({ sim: 50, postgres: null });
    const k = perThousandDevices(2000, [idle, enrolled], to, from, to);
    expect(k.sim).toEqual({
      rss_mib: 310,
      rss_mib_per_1000_devices: 155,
      rss_mib_added_per_1000_devices: 110,
      cpu_pct_steady: 50,
      cpu_pct_per_1000_devices: 25,
    });
    expect(k.postgres).toBeNull();
    const a = {
      rss_mib: 40,
      rss_mib_per_1000_devices: 20,
      rss_mib_added_per_1000_devices: 16,
      cpu_pct_steady: 10,
      cpu_pct_per_1000_devices: 1,
    };
    expect(sumPerThousand([a, { ...a, cpu_pct_steady: null, cpu_pct_per_1000_devices: null }])).toEqual({
      rss_mib: 80,
      rss_mib_per_1000_devices: 40,
      rss_mib_added_per_1000_devices: 32,
      cpu_pct_steady: null,
      cpu_pct_per_1000_devices: null,
    });
    expect(sumPerThousand([a, null])).toBeNull();
  });

  it('reads the open-file limits and says what to raise', () => {
    const limits = openFileLimits(
      'Limit                     Soft Limit           Hard Limit           Units\n' +
        'Max open files            20000                1048576              files\n',
    );
    expect(limits).toEqual({ soft: 20000, hard: 1048576 });
    expect(openFileLimits()?.soft).toBeGreaterThan(0); // this process's
    // 10,000 devices fit in 20,000; 30,000 do not, and the message says what to run.
    expect(checkOpenFiles(10_000, 3, limits)).toBeUndefined();
    expect(checkOpenFiles(30_000, 3, limits)).toMatch(/needs about 30512 open files.*ulimit -n 31536/);
    expect(checkOpenFiles(30_000, 1, { soft: 1024, hard: 4096 })).toMatch(/hard limit is 4096/);
    expect(checkOpenFiles(5, 1, undefined)).toBeUndefined();
  });

  it('sums Prometheus samples by name and labels', () => {
    const text = [
      '# HELP vigil_cloud_heartbeats_total Device heartbeats received',
      '# TYPE vigil_cloud_heartbeats_total counter',
      'vigil_cloud_heartbeats_total{result="ok"} 1200',
      'vigil_cloud_heartbeats_total{result="unknown_device"} 3',
      'vigil_cloud_heartbeats_totally_else 99',
      'vigil_cloud_heartbeats_pending 17',
    ].join('\n');
    expect(sumMetric(text, 'vigil_cloud_heartbeats_total')).toBe(1203);
    expect(sumMetric(text, 'vigil_cloud_heartbeats_total', { result: 'ok' })).toBe(1200);
    expect(sumMetric(text, 'vigil_cloud_heartbeats_pending')).toBe(17);
    expect(sumMetric(text, 'nope')).toBe(0);
    expect(heartbeatCounts(text)).toEqual({ ok: 1200, unknown_device: 3 });
  });

  it('reads the config status counters by result (answered, busy, expired)', () => {
    const text = [
      'vigil_cloud_config_status_total{result="current"} 900',
      'vigil_cloud_config_status_total{result="config"} 80',
      'vigil_cloud_config_status_total{result="busy"} 0',
      'vigil_cloud_config_status_total{result="expired"} 12',
      'vigil_cloud_config_status_totally_else{result="current"} 5',
    ].join('\n');
    expect(configStatusCounts(text)).toEqual({ current: 900, config: 80, busy: 0, expired: 12 });
  });

  it('turns two steady-window readings into rates', () => {
    const pg = (c: number, u: number) => ({
      xactCommit: c,
      xactRollback: 0,
      tupInserted: 10,
      tupUpdated: u,
      tupDeleted: 0,
      backends: 12,
    });
    const f = steadyFigures(
      { t_ms: 1000, sent: 100, received: { ok: 90 }, pg: pg(1000, 500) },
      { t_ms: 11_000, sent: 2100, received: { ok: 2080, error: 2 }, pg: pg(3000, 2500) },
    );
    expect(f.seconds).toBe(10);
    expect(f.heartbeats_sent_per_s).toBe(200);
    expect(f.heartbeats_received_per_s).toBe(199);
    expect(f.heartbeats_received_by_result).toEqual({ ok: 1990, error: 2 });
    expect(f.postgres).toMatchObject({
      xact_commit_per_s: 200,
      rows_updated_per_s: 200,
      rows_inserted_per_s: 0,
    });
    const none = steadyFigures(
      { t_ms: 0, sent: 0, received: undefined, pg: undefined },
      { t_ms: 1000, sent: 5, received: undefined, pg: undefined },
    );
    expect([none.heartbeats_received_per_s, none.postgres]).toEqual([null, null]);
  });

  it('percentiles by nearest rank, connections by name, the rollout progress line', () => {
    const v = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect([percentile(v, 50), percentile(v, 99), percentile(v, 100), percentile([], 50)]).toEqual([
      50,
      99,
      100,
      null,
    ]);
    expect(
      countSimConnections({
        connections: [{ name: 'fleet-sim-a' }, { name: 'vigil-cloud' }, {}, { name: 'fleet-sim-b' }],
      }),
    ).toBe(2);
    const line = rolloutLine('good', {
      id: 'r1',
      state: 'running',
      current_wave: 1,
      abort_reason: null,
      totals: {},
      waves: [
        { wave: 0, label: 'canary', devices: 10, applied: 10, failed: 0, pending: 0 },
        { wave: 1, label: '50%', devices: 490, applied: 200, failed: 1, pending: 289 },
      ],
    });
    expect(line).toBe(
      'good rollout running, wave 2/2: canary 10/10 applied, 50% 200/490 applied 1 failed 289 pending',
    );
  });
});
