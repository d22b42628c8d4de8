import { execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigState } from '@vigil/proto';
import { killGroup, registry, useCameraSim, usePki } from '@vigil/testkit';
import { ConfigCloud } from './helpers/config-cloud.js';
import { createSigner, type TestSigner } from './helpers/config-signing.js';
import { connectCloud, DEVICE, natsUrl, useMtlsNats } from './helpers/uplink-env.js';

const here = dirname(fileURLToPath(import.meta.url));
const agentDir = join(here, '..');
const main = join(agentDir, 'src', 'main.ts');

/** ffmpeg command lines of a process's children (the agent's cameras). */
function ffmpegArgs(pid: number): string[] {
  let out = '';
  try {
    out = execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' });
  } catch {
    return [];
  }
  return out
    .split('\n')
    .filter(Boolean)
    .map((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').join(' ');
      } catch {
        return '';
      }
    })
    .filter((c) => c.includes('ffmpeg'));
}

// kill -9 of a real agent process in the middle of an apply: the restarted agent runs the old config whole
// (not the new one, not a mix), drops the pending apply and reports that version as rolled back.
describe('remote config: kill -9 mid-apply', () => {
  const pki = usePki({ devices: [DEVICE], services: ['cloud'] });
  const nats = useMtlsNats(pki);
  const sim = useCameraSim([{ name: 'a', source: { kind: 'pattern', width: 320, height: 180, fps: 10 } }]);
  const dataDir = mkdtempSync(join(tmpdir(), 'vigil-remote-crash-'));
  const configFile = join(dataDir, 'agent.json');
  let cloudNc: NatsConnection;
  let cloud: ConfigCloud;
  let signer: TestSigner;
  let child: ChildProcess | undefined;
  let output = '';

  function startChild(): ChildProcess {
    const c = registry.spawn(
      process.execPath,
      ['--conditions=@vigil/source', '--import', 'tsx', main, '--config', configFile],
      {
        cwd: agentDir,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    c.stdout?.setEncoding('utf8');
    c.stderr?.setEncoding('utf8');
    c.stdout?.on('data', (d: string) => (output += d));
    c.stderr?.on('data', (d: string) => (output += d));
    child = c;
    return c;
  }
  async function kill9(c: ChildProcess): Promise<void> {
    const exited = new Promise((resolve) => c.once('exit', resolve));
    killGroup(c.pid!, 'SIGKILL');
    await exited;
  }

  beforeAll(async () => {
    signer = await createSigner();
    const trustFile = join(dataDir, 'trusted-keys.json');
    writeFileSync(trustFile, JSON.stringify(signer.trust));
    const dev = pki().devices[`${DEVICE.tenantId}/${DEVICE.deviceId}`]!;
    writeFileSync(
      configFile,
      JSON.stringify({
        device: DEVICE,
        dataDir,
        nats: {
          servers: [natsUrl(nats())],
          tls: { caFile: pki().caCert, certFile: dev.cert, keyFile: dev.key },
        },
        http: { port: 0 },
        cameras: [{ id: 'a', url: sim().url('a'), width: 160, height: 90, fps: 5 }],
        remoteConfig: { trustedKeysFile: trustFile, pollSeconds: 1, healthTimeoutSeconds: 60 },
      }),
    );
    cloudNc = await connectCloud(pki(), nats());
    cloud = new ConfigCloud(cloudNc, DEVICE);
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') console.error(`----- agent output -----\n${output.slice(-8000)}`);
  });
  afterAll(async () => {
    if (child?.pid && child.exitCode === null && child.signalCode === null) await kill9(child);
    cloud?.stop();
    await cloudNc?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('restarts on the old config after being killed while applying a new one', async () => {
    const first = startChild();
    await expect
      .poll(() => cloud.find(0n, ConfigState.CONFIG_STATE_UNSPECIFIED), { timeout: 20_000 })
      .toBeDefined();
    await expect.poll(() => ffmpegArgs(first.pid!).join('\n'), { timeout: 15_000 }).toMatch(/fps=5,/);

    // v1 changes camera a (fps 5 -> 2, so it restarts) and adds a camera that is slow to stream (never).
    cloud.push(
      await signer.sign({
        version: 1n,
        tenantId: DEVICE.tenantId,
        deviceId: DEVICE.deviceId,
        issuedAt: new Date(),
        cameras: [
          { id: 'a', url: sim().url('a'), enabled: true, detectFps: 2, width: 160, height: 90 },
          { id: 'slow', url: sim().url('a').replace(/\/a$/, '/slow'), enabled: true, width: 160, height: 90 },
        ] as never,
      }),
    );
    await expect
      .poll(() => cloud.find(1n, ConfigState.CONFIG_STATE_PENDING), { timeout: 10_000 })
      .toBeDefined();
    // Mid-apply: the new config's camera a runs (fps=2), the health check waits for "slow".
    await expect.poll(() => ffmpegArgs(first.pid!).join('\n'), { timeout: 15_000 }).toMatch(/fps=2,/);
    expect(existsSync(join(dataDir, 'config', 'pending.json'))).toBe(true);
    await kill9(first);
    expect(existsSync(join(dataDir, 'config', 'pending.json'))).toBe(true);
    // applied.json holds only the high-water mark so far (version 0 = the local config).
    expect(JSON.parse(readFileSync(join(dataDir, 'config', 'applied.json'), 'utf8'))).toMatchObject({
      version: '0',
    });

    const n = cloud.reports.length;
    const second = startChild();
    await expect
      .poll(() => cloud.reports.slice(n).find((r) => r.version === 1n), { timeout: 20_000 })
      .toMatchObject({ state: ConfigState.CONFIG_STATE_ROLLED_BACK, appliedVersion: 0n });
    expect(existsSync(join(dataDir, 'config', 'pending.json'))).toBe(false);
    const applied = JSON.parse(readFileSync(join(dataDir, 'config', 'applied.json'), 'utf8')) as object;
    expect(applied).toMatchObject({ version: '0', highWater: '1' });
    // Exactly the old config: one camera, a, at its old rate; nothing of v1.
    await expect.poll(() => ffmpegArgs(second.pid!).join('\n'), { timeout: 15_000 }).toMatch(/fps=5,/);
    await new Promise((r) => setTimeout(r, 1_000));
    const args = ffmpegArgs(second.pid!);
    expect(args).toHaveLength(1);
    expect(args[0]).toMatch(/\/a /);
    expect(args[0]).not.toMatch(/fps=2/);

    // The interrupted version is spent: delivered again, it is a replay.
    const m = cloud.reports.length;
    cloud.push(
      await signer.sign({
        version: 1n,
        tenantId: DEVICE.tenantId,
        deviceId: DEVICE.deviceId,
        issuedAt: new Date(),
      }),
    );
    await expect
      .poll(() => cloud.reports.slice(m).find((r) => r.state === ConfigState.CONFIG_STATE_FAILED)?.reason, {
        timeout: 10_000,
      })
      .toMatch(/^replay: /);
  });
});
