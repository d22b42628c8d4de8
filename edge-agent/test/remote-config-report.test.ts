// The agent's ConfigStatus over a sequence of configs, pinned to @vigil/proto's CONFIG_REPORT_CONTRACT (the
// table fleet-sim replays too): the real RemoteConfigManager, journal and verification with a stand-in host
// (no cameras: applying only swaps the running config; "unhealthy" is a failing health verdict).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { CONFIG_REPORT_CONTRACT, DeviceHealth, type SignedConfig } from '@vigil/proto';
import { ConfigJournal, configDir, parseAgentConfig, type AgentConfig } from '../src/index.js';
import { RemoteConfigManager, startRemoteConfig } from '../src/remote-config/manager.js';
import { createSigner } from './helpers/config-signing.js';

const DEVICE = { tenantId: 'acme', deviceId: 'gw-report' };

describe('remote config: the status the agent reports follows the config report contract', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'vigil-remote-report-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('replays CONFIG_REPORT_CONTRACT', async () => {
    const signer = await createSigner();
    const log = pino({ level: 'silent' });
    const bootstrap = parseAgentConfig({ device: { ...DEVICE, siteId: 'hq' }, dataDir });
    const journal = new ConfigJournal(configDir(dataDir));
    let running: AgentConfig = bootstrap;
    let unhealthy = false;
    const manager = new RemoteConfigManager({
      nc: undefined,
      device: DEVICE,
      bootstrap,
      journal,
      trust: () => signer.trust,
      host: {
        running: () => running,
        apply: (target) => {
          running = target;
          return Promise.resolve();
        },
        health: () =>
          unhealthy ? { ok: false, reason: 'camera "x" never streamed', fatal: true } : { ok: true },
        deviceHealth: () => DeviceHealth.DEVICE_HEALTH_OK,
      },
      registry: new Registry(),
      log,
      now: () => new Date(),
      pollMs: 60_000,
      healthTimeoutMs: 1_000,
      start: startRemoteConfig(bootstrap, journal, log),
    });
    const sign = (version: bigint, cameras: unknown[] = []): Promise<SignedConfig> =>
      signer.sign({ ...DEVICE, version, issuedAt: new Date(), cameras: cameras as never });

    for (const c of CONFIG_REPORT_CONTRACT) {
      const s = c.step;
      if ('deliver' in s) {
        unhealthy = s.outcome === 'unhealthy';
        await manager.enqueue(
          await sign(
            s.deliver,
            s.outcome === 'invalid' ? [{ id: 'bad id!', url: 'rtsp://x/y', enabled: true }] : [],
          ),
        );
      } else if ('replay' in s) {
        // the same version, a new delivery (another JWS)
        await manager.enqueue(await sign(s.replay, [{ id: 'again', url: 'rtsp://x/y', enabled: true }]));
      }
      // A poll sends status(); so does every other report.
      const st = manager.status();
      const label = JSON.stringify(s, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
      expect({ version: st.version, appliedVersion: st.appliedVersion, state: st.state }, label).toEqual({
        version: c.expect.version,
        appliedVersion: c.expect.appliedVersion,
        state: c.expect.state,
      });
      if (c.expect.reason) expect(st.reason, label).toMatch(c.expect.reason);
    }
    await manager.stop();
  });
});
