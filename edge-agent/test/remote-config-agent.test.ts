import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigState, Heartbeat, subjectFor, type ConfigStatus, type DeviceConfig } from '@vigil/proto';
import { asset, registry, useCameraSim, usePki } from '@vigil/testkit';
import { modelFilePath, parseAgentConfig, startAgent, type Agent } from '../src/index.js';
import { ConfigCloud } from './helpers/config-cloud.js';
import { createSigner, tamper, type TestSigner } from './helpers/config-signing.js';
import { connectCloud, DEVICE, natsUrl, useMtlsNats } from './helpers/uplink-env.js';

const modelFile = asset('models/yolox_nano.onnx');

// Signed remote config with a real agent, a real nats-server (mTLS) and real RTSP cameras: bad configs are
// refused and reported while the agent keeps its config; a good one adds a camera and changes a threshold
// without touching the other camera; one whose camera never streams is rolled back.
describe.skipIf(!modelFile)('remote config on a running agent', () => {
  const pki = usePki({ devices: [DEVICE], services: ['cloud'] });
  const nats = useMtlsNats(pki);
  const sim = useCameraSim([
    { name: 'a', source: { kind: 'pattern', width: 320, height: 180, fps: 10 } },
    { name: 'b', source: { kind: 'pattern', width: 320, height: 180, fps: 10 } },
  ]);
  const dataDir = mkdtempSync(join(tmpdir(), 'vigil-remote-config-'));
  const sha = createHash('sha256')
    .update(readFileSync(modelFile ?? __filename))
    .digest('hex');
  let cloudNc: NatsConnection;
  let cloud: ConfigCloud;
  let signer: TestSigner;
  let agent: Agent | undefined;
  const spawns: Array<{ camera: string; pid: number | undefined }> = [];
  let fetched = 0;

  const camA = (): object => ({
    id: 'a',
    url: sim().url('a'),
    enabled: true,
    detectFps: 5,
    width: 160,
    height: 90,
  });
  const camB = (threshold: number): object => ({
    id: 'b',
    url: sim().url('b'),
    enabled: true,
    detectFps: 5,
    width: 160,
    height: 90,
    modelName: 'det',
    defaultThreshold: threshold,
  });
  const detModel = (): object => ({ name: 'det', type: 'yolox', sha256: sha, uri: 'test://yolox' });
  const sign = (version: bigint, p: Partial<DeviceConfig> = {}): ReturnType<TestSigner['sign']> =>
    signer.sign({
      version,
      tenantId: DEVICE.tenantId,
      deviceId: DEVICE.deviceId,
      issuedAt: new Date(),
      ...p,
    });
  const spawnsOf = (camera: string): number => spawns.filter((s) => s.camera === camera).length;
  const running = (): string[] =>
    agent!
      .cameraStatus()
      .map((c) => c.cameraId)
      .sort();

  async function reported(version: bigint, state: ConfigState, timeout = 30_000) {
    await expect.poll(() => cloud.find(version, state), { timeout, interval: 100 }).toBeDefined();
    return cloud.find(version, state)!;
  }

  beforeAll(async () => {
    signer = await createSigner();
    const trustFile = join(dataDir, 'trusted-keys.json');
    writeFileSync(trustFile, JSON.stringify(signer.trust));
    cloudNc = await connectCloud(pki(), nats());
    cloud = new ConfigCloud(cloudNc, DEVICE);
    const dev = pki().devices[`${DEVICE.tenantId}/${DEVICE.deviceId}`]!;
    agent = await startAgent(
      parseAgentConfig({
        device: DEVICE,
        dataDir,
        nats: {
          servers: [natsUrl(nats())],
          tls: { caFile: pki().caCert, certFile: dev.cert, keyFile: dev.key },
        },
        http: { port: 0 },
        cameras: [{ id: 'a', url: sim().url('a'), width: 160, height: 90, fps: 5 }],
        heartbeatSeconds: 1,
        remoteConfig: { trustedKeysFile: trustFile, pollSeconds: 1, healthTimeoutSeconds: 8 },
      }),
      {
        logger: pino({ level: 'error' }),
        onSpawn: (c: ChildProcess) => {
          registry.track(c, 'ffmpeg');
          const url = c.spawnargs.find((a) => a.startsWith('rtsp://')) ?? '';
          spawns.push({ camera: url.split('/').pop() ?? '', pid: c.pid });
        },
        // Models OTA from the test (the gRPC fetcher has its own test): streamed in 1 MiB chunks.
        modelFetcher: async function* (want, offset) {
          expect(want).toBe(sha);
          fetched++;
          const data = await readFile(modelFile!);
          for (let at = offset; at < data.length; at += 1 << 20)
            yield { offset: BigInt(at), data: data.subarray(at, Math.min(data.length, at + (1 << 20))) };
        },
      },
    );
    const until = Date.now() + 15_000;
    while (agent.cameraStatus()[0]?.state !== 'streaming' && Date.now() < until)
      await new Promise((r) => setTimeout(r, 100));
  });
  afterAll(async () => {
    await agent?.stop();
    cloud?.stop();
    await cloudNc?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('reports its state at connect (nothing applied yet)', async () => {
    await expect.poll(() => cloud.reports.length, { timeout: 10_000 }).toBeGreaterThan(0);
    expect(cloud.reports[0]).toMatchObject({ appliedVersion: 0n, deviceId: DEVICE.deviceId });
  });

  it('applies a good config: adds a camera with a model fetched OTA, leaves the running camera alone', async () => {
    const aSpawns = spawnsOf('a');
    const aRestarts = agent!.cameraStatus().find((c) => c.cameraId === 'a')!.restarts;
    cloud.push(await sign(1n, { cameras: [camA(), camB(0.5)] as never, models: [detModel()] as never }));
    const r = await reported(1n, ConfigState.CONFIG_STATE_APPLIED);
    expect(r).toMatchObject({ appliedVersion: 1n, reason: '' });
    expect(running()).toEqual(['a', 'b']);
    expect(fetched).toBe(1);
    expect(existsSync(modelFilePath(dataDir, sha))).toBe(true);
    expect(agent!.cameraStatus().find((c) => c.cameraId === 'b')!.framesProcessed).toBeGreaterThan(0);
    expect(spawnsOf('a')).toBe(aSpawns);
    expect(agent!.cameraStatus().find((c) => c.cameraId === 'a')!.restarts).toBe(aRestarts);
    const journal = JSON.parse(readFileSync(join(dataDir, 'config', 'applied.json'), 'utf8')) as {
      version: string;
    };
    expect(journal.version).toBe('1');
    expect(existsSync(join(dataDir, 'config', 'pending.json'))).toBe(false);
  });

  it('changes a threshold: only that camera restarts', async () => {
    const aSpawns = spawnsOf('a');
    const bSpawns = spawnsOf('b');
    cloud.push(await sign(2n, { cameras: [camA(), camB(0.7)] as never, models: [detModel()] as never }));
    await reported(2n, ConfigState.CONFIG_STATE_APPLIED);
    expect(agent!.runningConfig().cameras.find((c) => c.id === 'b')?.detect?.defaultThreshold).toBeCloseTo(
      0.7,
    );
    expect(spawnsOf('b')).toBe(bSpawns + 1);
    expect(spawnsOf('a')).toBe(aSpawns);
    expect(fetched).toBe(1); // the model was there already
    const metrics = await (await fetch(`http://127.0.0.1:${agent!.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/^vigil_agent_config_version 2$/m);
    // Heartbeats carry the applied version.
    const beats: Heartbeat[] = [];
    const sub = cloudNc.subscribe(subjectFor(DEVICE.tenantId, DEVICE.deviceId, 'hb'), {
      callback: (_e, m) => {
        beats.push(Heartbeat.decode(m.data));
      },
    });
    await expect.poll(() => beats.at(-1)?.configVersion, { timeout: 15_000 }).toBe(2n);
    sub.unsubscribe();
  });

  it('refuses tampered, replayed, expired and wrongly addressed configs and keeps running', async () => {
    const before = agent!.runningConfig();
    const spawnCount = spawns.length;
    const next = { cameras: [camA()] as never, models: [] as never };
    const cases: Array<[string, Awaited<ReturnType<typeof sign>>, RegExp]> = [
      ['tampered', tamper(await sign(3n, next)), /^signature: /],
      [
        'replayed',
        await sign(1n, { cameras: [camA(), camB(0.5)] as never, models: [detModel()] as never }),
        /^replay: /,
      ],
      ['expired', await sign(3n, { ...next, expiresAt: new Date(Date.now() - 1000) }), /^expired: /],
      [
        'addressed',
        await signer.sign({ version: 3n, tenantId: DEVICE.tenantId, deviceId: 'gw-2', ...next }),
        /^addressee: /,
      ],
      [
        'invalid',
        await sign(3n, { cameras: [{ id: 'bad id!', url: 'rtsp://x/y', enabled: true }] as never }),
        /^invalid config: cameras\.0\.id: /,
      ],
    ];
    for (const [name, signed, reason] of cases) {
      const n = cloud.reports.length;
      cloud.push(signed);
      // Periodic polls repeat the previous outcome: wait for the report of this one.
      const mine = (): ConfigStatus | undefined =>
        cloud.reports
          .slice(n)
          .find((r) => r.state === ConfigState.CONFIG_STATE_FAILED && reason.test(r.reason));
      await expect.poll(mine, { timeout: 10_000 }).toBeDefined();
      expect(mine()!.appliedVersion, name).toBe(2n);
    }
    expect(agent!.runningConfig()).toBe(before);
    expect(running()).toEqual(['a', 'b']);
    expect(spawns.length).toBe(spawnCount);
    const metrics = await (await fetch(`http://127.0.0.1:${agent!.httpPort}/metrics`)).text();
    for (const reason of ['signature', 'replay', 'expired', 'addressee', 'invalid'])
      expect(metrics).toMatch(
        new RegExp(`^vigil_agent_config_rejected_total\\{reason="${reason}"\\} 1$`, 'm'),
      );
    // Issue 12: a PubAck a device of the same tenant aims at this device's cfg subject is dropped, counted.
    cloudNc.publish(
      subjectFor(DEVICE.tenantId, DEVICE.deviceId, 'cfg'),
      JSON.stringify({ stream: 'EVENTS', seq: 9 }),
    );
    await cloudNc.flush();
    await expect
      .poll(async () => await (await fetch(`http://127.0.0.1:${agent!.httpPort}/metrics`)).text(), {
        timeout: 10_000,
      })
      .toMatch(/^vigil_agent_config_rejected_total\{reason="malformed"\} 1$/m);
    expect(agent!.runningConfig()).toBe(before);
  });

  it('rolls back a config whose camera never streams; the old cameras run', async () => {
    const aSpawns = spawnsOf('a');
    cloud.push(
      await sign(4n, {
        cameras: [
          camA(),
          camB(0.7),
          {
            id: 'ghost',
            url: sim().url('a').replace(/\/a$/, '/nope'),
            enabled: true,
            width: 160,
            height: 90,
          },
        ] as never,
        models: [detModel()] as never,
      }),
    );
    await reported(4n, ConfigState.CONFIG_STATE_PENDING, 10_000);
    const r = await reported(4n, ConfigState.CONFIG_STATE_ROLLED_BACK, 30_000);
    expect(r.appliedVersion).toBe(2n);
    expect(r.reason).toMatch(/camera "ghost"/);
    expect(running()).toEqual(['a', 'b']);
    expect(spawnsOf('a')).toBe(aSpawns);
    expect(agent!.runningConfig().cameras.find((c) => c.id === 'b')?.detect?.defaultThreshold).toBeCloseTo(
      0.7,
    );
    const journal = JSON.parse(readFileSync(join(dataDir, 'config', 'applied.json'), 'utf8')) as {
      version: string;
      highWater: string;
    };
    expect(journal).toMatchObject({ version: '2', highWater: '4' });
    expect(existsSync(join(dataDir, 'config', 'pending.json'))).toBe(false);
    await expect
      .poll(() => agent!.cameraStatus().every((c) => c.state === 'streaming'), { timeout: 15_000 })
      .toBe(true);
    // The rolled-back version is spent: sending it again is a replay.
    const n = cloud.reports.length;
    cloud.push(await sign(4n, { cameras: [camA()] as never }));
    await expect
      .poll(() => cloud.reports.slice(n).find((x) => x.state === ConfigState.CONFIG_STATE_FAILED)?.reason, {
        timeout: 10_000,
      })
      .toMatch(/^replay: /);
  });

  it('converges by polling: a config answered to the status request is applied', async () => {
    cloud.answer = await sign(5n, { cameras: [camA()] as never, models: [] as never });
    const r = await reported(5n, ConfigState.CONFIG_STATE_APPLIED);
    cloud.answer = undefined;
    expect(r.appliedVersion).toBe(5n);
    expect(running()).toEqual(['a']);
    // Models no longer referenced by this config or the previous one are deleted; v2's is kept for rollback.
    expect(existsSync(modelFilePath(dataDir, sha))).toBe(true);
  });

  it('privacy masks, redaction mode and edge retention apply from the signed config, and again offline', async () => {
    const mask = {
      points: [
        { x: 0, y: 0 },
        { x: 0.5, y: 0 },
        { x: 0.5, y: 0.5 },
      ],
    };
    cloud.push(
      await sign(6n, {
        cameras: [{ ...camA(), privacyMasks: [mask] }] as never,
        models: [detModel()] as never,
        privacy: {
          redactFaces: false,
          faceModelName: '',
          disableSnapshots: false,
          redactionMode: 'blocks',
          redactionBlocks: 2,
          redactionNoise: 48,
          faceThreshold: 0,
        },
        retention: {
          eventDays: 0,
          mediaDays: 0,
          localMediaHours: 0,
          edgeMediaMaxHours: 12,
          edgeMediaMaxBytes: 20_000_000n,
        },
      }),
    );
    await reported(6n, ConfigState.CONFIG_STATE_APPLIED);
    const check = (a: Agent): void => {
      const cfg = a.runningConfig();
      expect(cfg.cameras.find((c) => c.id === 'a')?.privacyMasks).toHaveLength(1);
      expect(cfg.privacy.redaction).toMatchObject({ mode: 'blocks', blocks: 2, noise: 48 });
      expect(cfg.retention).toEqual({ mediaMaxHours: 12, mediaMaxBytes: 20_000_000 });
    };
    check(agent!);
    // Restart with no network at all: the agent runs the config it holds, privacy and retention included.
    await agent!.stop();
    agent = await startAgent(
      parseAgentConfig({
        device: DEVICE,
        dataDir,
        http: { port: 0 },
        cameras: [],
        remoteConfig: { trustedKeysFile: join(dataDir, 'trusted-keys.json') },
      }),
      { logger: pino({ level: 'error' }), onSpawn: (c: ChildProcess) => registry.track(c, 'ffmpeg') },
    );
    check(agent);
  });
});
