// Agent-version rollouts at fleet scale: the real cloud (gRPC enrollment, NATS in JWT mode with mutual TLS,
// PostgreSQL, the rollout executor, the TUF release repository), a release published with `vigil release
// publish`, simulated agents with real enrolled credentials whose simulated updater upgrades after a short delay
// (a configurable share rolls back), and `vigil rollout create --agent-version`. N devices: FLEET_SIM_AGENT_N
// (default 30; the 1,000-device figures in BENCHMARKS.md come from FLEET_SIM_AGENT_N=1000).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import '@vigil/testkit';
import { runCli } from '@vigil/cli';
import {
  apiClient,
  enrollDevices,
  getRolloutDevices,
  runAgentRollout,
  SimFleet,
  startSimStack,
  type ApiClient,
  type SimStack,
} from '../src/index.js';

const N = Number(process.env.FLEET_SIM_AGENT_N ?? 30);
const HEARTBEAT_MS = Number(process.env.FLEET_SIM_HEARTBEAT_MS ?? 2000);

describe(`agent-version rollouts with fleet-sim (${N} devices)`, () => {
  const work = mkdtempSync(join(tmpdir(), 'vigil-fleet-sim-agent-'));
  const keysDir = join(work, 'release-keys');
  let stack: SimStack;
  let fleet: SimFleet;
  let admin: ApiClient;
  const cli = async (args: string[], tenant = 'sim'): Promise<{ code: number; out: string }> => {
    const out: string[] = [];
    const code = await runCli(
      ['--api', stack.apiUrl, ...args, '--token', await stack.token(tenant, ['admin'])],
      { io: { out: (t) => out.push(t), err: (t) => out.push(t) } },
    );
    return { code, out: out.join('\n') };
  };
  const publish = async (version: string): Promise<void> => {
    const src = join(work, `src-${version}`, 'vigil-agent');
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, 'VERSION'), `${version}\n`);
    const file = join(work, `vigil-agent-${version}-linux-x64.tar.gz`);
    execFileSync('tar', ['-czf', file, '-C', join(work, `src-${version}`), 'vigil-agent']);
    const r = await cli(
      [
        'release',
        'publish',
        file,
        '--agent-version',
        version,
        '--channel',
        'stable',
        '--min-version',
        '1.0.0',
        '--keys-dir',
        keysDir,
      ],
      'vigil',
    );
    expect(r.code, r.out).toBe(0);
  };

  beforeAll(async () => {
    const init: string[] = [];
    expect(
      await runCli(['release', 'root', 'init', '--keys-dir', keysDir], {
        io: { out: (t) => init.push(t), err: (t) => init.push(t) },
      }),
      init.join('\n'),
    ).toBe(0);
    stack = await startSimStack({
      pgAdminUrl: inject('pgAdminUrl'),
      logger: pino({ level: 'warn' }),
      releaseKeysDir: keysDir,
      natsExtra: 'max_connections: 5000',
    });
    const push = await cli(['release', 'root', 'push', '--keys-dir', keysDir], 'vigil');
    expect(push.code, push.out).toBe(0);
    await publish('1.1.0');
    await publish('1.2.0');
    admin = apiClient(stack.apiUrl, () => stack.token('sim', ['admin']));
    const installer = apiClient(stack.apiUrl, () => stack.token('sim', ['installer']));
    const t0 = Date.now();
    const devices = await enrollDevices({
      grpcAddress: stack.grpcAddress,
      caPem: stack.caPem,
      deviceIds: Array.from({ length: N }, (_, i) => `sim-${String(i).padStart(5, '0')}`),
      token: async () => {
        const res = await installer.request('POST', '/v1/enrollment-tokens', {
          site_id: 'hq',
          ttl_seconds: 3600,
        });
        return (res.json as { token: string }).token;
      },
    });
    fleet = new SimFleet(devices, stack.caPem, {
      heartbeatMs: HEARTBEAT_MS,
      pollMs: 10_000,
      upgradeMinMs: 1000,
      upgradeMaxMs: 5000,
    });
    // Few handshakes at a time: a thousand TLS + JWT handshakes at once time out on a loaded 2-core machine.
    await fleet.connect([stack.natsUrl], Number(process.env.FLEET_SIM_CONNECT_CONCURRENCY ?? 4));
    // The config that carries the agent section to devices that ran no remote config yet.
    expect(
      (await admin.request('PUT', '/v1/configs/tenant/sim', { attributes: { fleet: 'sim' } })).status,
    ).toBe(200);
    // Every device has heartbeated its version (the minimum-version check needs it).
    for (let i = 0; ; i++) {
      const rows = await stack.cloud.db
        .selectFrom('devices')
        .select('agent_version')
        .where('tenant_id', '=', 'sim')
        .execute();
      if (rows.filter((r) => r.agent_version === '1.0.0').length === N) break;
      if (i > 240) throw new Error('devices did not heartbeat their version');
      await new Promise((r) => setTimeout(r, 500));
    }
    console.log(`[fleet-sim agent] ${N} devices enrolled and connected in ${Date.now() - t0} ms`);
  }, 1_200_000);
  afterAll(async () => {
    await fleet?.close();
    await stack?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('a staged agent rollout takes every device to the new version; times to 95 % and 100 %', async () => {
    const canary = Math.max(1, Math.ceil(N / 100));
    const r = await runAgentRollout(cli, admin, fleet, {
      version: '1.1.0',
      createArgs: [
        ...['--canary', String(canary), '--waves', '10,50,100', '--window', '120', '--soak', '0'],
        ...['--applied-ratio', '0.95', '--min-reported', String(canary), '--failure-ratio', '0.1'],
      ],
      timeoutMs: 900_000,
    });
    console.log(`[fleet-sim agent] ${JSON.stringify(r)}`);
    expect(r.state).toBe('completed');
    expect(r.on_version).toBe(N);
    expect(r.t95_ms).not.toBeNull();
    expect(r.t100_ms).not.toBeNull();
    // Each device asked its updater once.
    expect(
      fleet.agents.every((a) => a.upgradeRequests.filter((q) => q.version === '1.1.0').length === 1),
    ).toBe(true);
  }, 1_000_000);

  it('a version that rolls back on the canaries aborts; nobody outside the canary is asked for it', async () => {
    for (const a of fleet.agents) a.upgradeRollbackShare = 1;
    const canary = Math.max(3, Math.ceil(N / 100));
    const r = await runAgentRollout(cli, admin, fleet, {
      version: '1.2.0',
      createArgs: [
        ...['--canary', String(canary), '--waves', '10,50,100', '--window', '120', '--soak', '0'],
        ...['--applied-ratio', '0.95', '--min-reported', '1', '--failure-ratio', '0.1'],
      ],
      timeoutMs: 300_000,
    });
    console.log(`[fleet-sim agent] ${JSON.stringify(r)}`);
    expect(r.state).toBe('rolled_back');
    expect(r.on_version).toBe(0);
    const asked = fleet.agents.filter((a) => a.upgradeRequests.some((q) => q.version === '1.2.0'));
    expect(asked.length).toBeGreaterThanOrEqual(1);
    expect(asked.length).toBeLessThanOrEqual(canary);
    expect(fleet.agents.every((a) => a.agentVersion === '1.1.0')).toBe(true);
    const devices = await getRolloutDevices(admin, r.rollout);
    expect(devices.filter((d) => d.wave !== null).every((d) => d.wave === 0)).toBe(true);
    expect(devices.some((d) => /^rolled_back: health gate failed/.test(d.reason ?? ''))).toBe(true);
  }, 400_000);
});
