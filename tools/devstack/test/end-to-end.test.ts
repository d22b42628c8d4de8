import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDevSigningKey, startCloud, parseCloudConfig, type CloudApp } from '@vigil/cloud';
import { parseAgentConfig, startAgent, type Agent } from '@vigil/edge-agent';
import { natsConfig, registry, useCameraSim, useDatabase, useNats, usePki } from '@vigil/testkit';

// What exists end to end today: an RTSP camera decoded by the agent's ffmpeg supervisor, the agent's
// heartbeat over NATS with its device certificate, the cloud recording it in PostgreSQL.
describe('camera -> agent -> NATS (mTLS) -> cloud -> PostgreSQL', () => {
  const device = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' };
  const pki = usePki({ devices: [device], services: ['cloud'] });
  const nats = useNats({
    config: (ctx) =>
      natsConfig({
        tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
      })(ctx),
  });
  const dbUrl = useDatabase();
  const camera = useCameraSim([
    { name: 'cam1', source: { kind: 'pattern', width: 640, height: 360, fps: 10 } },
  ]);
  const logger = pino({ level: 'warn' });
  let cloud: CloudApp;
  let agent: Agent;
  let startedAt = 0;

  const dataDir = mkdtempSync(join(tmpdir(), 'vigil-e2e-agent-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  beforeAll(async () => {
    startedAt = Date.now();
    const natsUrl = `tls://localhost:${nats().port}`;
    const svc = pki().services.cloud!;
    cloud = await startCloud(
      parseCloudConfig({
        http: { port: 0 },
        database: { url: dbUrl() },
        nats: { servers: [natsUrl], tls: { caFile: pki().caCert, certFile: svc.cert, keyFile: svc.key } },
        auth: { jwksFile: ensureDevSigningKey(pki().dir).jwksFile },
      }),
      { logger },
    );
    await cloud.registry.registerDevice(device);
    const dev = pki().devices['acme/gw-1']!;
    agent = await startAgent(
      parseAgentConfig({
        device,
        dataDir,
        nats: { servers: [natsUrl], tls: { caFile: pki().caCert, certFile: dev.cert, keyFile: dev.key } },
        http: { port: 0 },
        heartbeatSeconds: 1,
        cameras: [{ id: 'cam1', url: camera().url('cam1'), width: 320, height: 320, fps: 5 }],
      }),
      { logger, onSpawn: (c) => registry.track(c, 'ffmpeg') },
    );
  });
  afterAll(async () => {
    await agent?.stop();
    await cloud?.stop();
  });

  it('streams frames from the camera and records heartbeats in PostgreSQL', async () => {
    await expect
      .poll(() => agent.cameraStatus()[0]?.framesDecoded ?? 0, { timeout: 15_000 })
      .toBeGreaterThan(5);
    expect(agent.cameraStatus()[0]?.state).toBe('streaming');
    await expect
      .poll(async () => Number((await cloud.registry.listDevices('acme'))[0]?.heartbeats ?? 0), {
        timeout: 10_000,
      })
      .toBeGreaterThanOrEqual(2);
    const [row] = await cloud.registry.listDevices('acme');
    expect(row?.agent_version).toBe('0.1.0');
    // A heartbeat of this run (not a stale or default time), however long the machine took to get here.
    expect(row?.last_seen_at?.getTime()).toBeGreaterThanOrEqual(startedAt - 1_000);
    expect(row?.last_seen_at?.getTime()).toBeLessThanOrEqual(Date.now());
  });

  it('serves health and metrics on both sides', async () => {
    const agentHealth = await fetch(`http://127.0.0.1:${agent.httpPort}/healthz`);
    expect(agentHealth.status).toBe(200);
    const metrics = await (await fetch(`http://127.0.0.1:${agent.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/vigil_agent_frames_decoded_total\{camera="cam1"\} [1-9]/);
    const ready = await fetch(`http://127.0.0.1:${cloud.httpPort}/readyz`);
    expect(ready.status).toBe(200);
    const cloudMetrics = await (await fetch(`http://127.0.0.1:${cloud.httpPort}/metrics`)).text();
    expect(cloudMetrics).toMatch(/vigil_cloud_heartbeats_total\{result="ok"\} [1-9]/);
  });
});
