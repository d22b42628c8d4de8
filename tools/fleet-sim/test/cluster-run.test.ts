// fleet-sim's measured cluster mode (issue 17, "fleet at scale") at small N: a 3-node NATS JetStream cluster in
// operator/JWT mode (streams R3), the cloud as its own process, a private PostgreSQL, 30 simulated devices. The
// whole run as `pnpm -F @vigil/fleet-sim run sim --nats-cluster 3` does it (runFleetSim), then its report:
// every device enrolled and connected, the connections split over the nodes (each node's /connz), the good
// rollout completed and the bad one aborted and rolled back, heartbeats reaching the cloud and PostgreSQL, and
// resource figures for every process.
import { describe, expect, it } from 'vitest';
import '@vigil/testkit';
import { runFleetSim } from '../src/index.js';

const N = 30;

describe('fleet-sim on a 3-node NATS cluster with the cloud as its own process', () => {
  it('enrolls, connects over every node, rolls out, and reports load and resources', async () => {
    const lines: string[] = [];
    const r = await runFleetSim({
      devices: N,
      tenant: 'sim',
      site: 'hq',
      natsNodes: 3,
      cloud: 'process',
      canary: 3,
      waves: [50, 100],
      heartbeatMs: 1000,
      steadySeconds: 5,
      enrollConcurrency: 8,
      connectConcurrency: 8,
      timeoutMs: 180_000,
      progressEveryMs: 2000,
      log: (l) => void lines.push(l),
    }).catch((err: unknown) => {
      throw new Error(`run failed; its progress lines:\n${lines.join('\n')}`, { cause: err });
    });
    expect([r.devices, r.nats_nodes, r.cloud]).toEqual([N, 3, 'process']);
    expect(r.connect.connected).toBe(N);
    expect(r.connect.dial_retries).toBeGreaterThanOrEqual(0);
    // Rotated URL lists: every node holds a third of the devices (10 each; a dial that failed over moves one).
    const perNode = Object.values(r.connect.sim_connections_per_node ?? {});
    expect(perNode).toHaveLength(3);
    expect(perNode.reduce<number>((a, b) => a + (b ?? 0), 0)).toBe(N);
    expect(perNode.filter((c) => (c ?? 0) > 0).length).toBeGreaterThan(1);

    expect(r.headline.enrollments_per_s).toBeGreaterThan(0);
    expect(r.enrollment.enroll_call_p50_ms).toBeGreaterThan(0);
    expect(r.enrollment.enroll_call_p99_ms).toBeGreaterThanOrEqual(r.enrollment.enroll_call_p50_ms!);
    expect(r.headline.ms_to_connect_all).toBeGreaterThan(0);

    expect(r.rollouts.good.state).toBe('completed');
    expect(r.rollouts.good.ms_to_95pct_applied).toBeGreaterThan(0);
    expect(r.rollouts.good.ms_to_100pct_applied).toBeGreaterThanOrEqual(r.rollouts.good.ms_to_95pct_applied);
    expect(['rolled_back', 'aborted']).toContain(r.rollouts.bad.state);
    expect(r.rollouts.bad.ms_to_abort).toBeGreaterThan(0);
    expect(r.rollouts.bad.devices_still_on_bad).toBe(0);

    // 30 devices at 1/s: the cloud records about 30 heartbeats a second, PostgreSQL commits them.
    expect(r.steady.heartbeats_sent_per_s).toBeGreaterThan(N * 0.7);
    expect(r.steady.heartbeats_received_per_s).toBeGreaterThan(N * 0.5);
    expect(r.steady.postgres?.xact_commit_per_s).toBeGreaterThan(0);

    const procs = ['sim', 'cloud', 'nats_n1', 'nats_n2', 'nats_n3', 'postgres'];
    expect(Object.keys(r.resources.per_1000_devices).sort()).toEqual([...procs, 'nats_all'].sort());
    for (const p of procs) {
      const k = r.resources.per_1000_devices[p];
      expect([p, k?.rss_mib]).toEqual([p, expect.any(Number)]);
      expect(k!.rss_mib).toBeGreaterThan(5);
      expect(k!.cpu_pct_steady).not.toBeNull();
    }
    // Busy processes used CPU in the steady window (the sim heartbeats, the cloud records, PostgreSQL commits).
    for (const p of ['sim', 'cloud', 'postgres']) expect(r.steady.cpu_pct[p]).toBeGreaterThan(0);
    // The three nodes added up.
    const nodes = ['nats_n1', 'nats_n2', 'nats_n3'].map((p) => r.resources.per_1000_devices[p]!.rss_mib);
    expect(r.resources.per_1000_devices.nats_all?.rss_mib).toBeCloseTo(nodes[0]! + nodes[1]! + nodes[2]!, 1);
    expect(r.resources.samples.map((s) => s.phase)).toEqual([
      'idle',
      'after_enroll',
      'after_connect',
      'steady_start',
      'steady_end',
      'after_rollouts',
    ]);
    // Progress lines went out while it ran.
    expect(lines.some((l) => /^(good|bad) rollout \w+, wave \d+\/\d+: canary/.test(l))).toBe(true);
  }, 420_000);
});
