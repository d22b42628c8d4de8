import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { sql } from 'kysely';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replayAll } from '@vigil/cli';
import { parseCloudConfig, startCloud, type CloudApp } from '@vigil/cloud';
import { parseAgentConfig, startAgent, type Agent } from '@vigil/edge-agent';
import { DetectionEvent, subjectFor, TrackPhase } from '@vigil/proto';
import { asset, natsConfig, registry, useDatabase, useNats, usePki } from '@vigil/testkit';

const clip = asset('videos/face-walking.mp4');
const model = asset('models/yolox_nano.onnx');

// The whole delivery path with real components: camera file -> ffmpeg -> YOLOX -> tracker -> SQLite outbox ->
// JetStream (device certificate) -> cloud ingest -> PostgreSQL -> commit receipt -> outbox emptied.
describe('edge events reach PostgreSQL exactly once; poison goes to DEAD_LETTER and replays once', () => {
  const gw1 = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' };
  const stranger = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-9' };
  const pki = usePki({ devices: [gw1, stranger], services: ['cloud'] });
  const nats = useNats({
    config: (ctx) =>
      natsConfig({
        tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
      })(ctx),
  });
  const dbUrl = useDatabase();
  const dataDir = mkdtempSync(join(tmpdir(), 'vigil-delivery-'));
  const logger = pino({ level: 'warn' });
  const natsUrl = () => `tls://localhost:${nats().port}`;
  let cloud: CloudApp;
  let admin: NatsConnection;

  beforeAll(async () => {
    const svc = pki().services.cloud!;
    const tls = { caFile: pki().caCert, certFile: svc.cert, keyFile: svc.key };
    cloud = await startCloud(
      parseCloudConfig({
        http: { port: 0 },
        api: { enabled: false },
        database: { url: dbUrl() },
        nats: { servers: [natsUrl()], tls },
      }),
      { logger },
    );
    await cloud.registry.registerDevice(gw1);
    admin = await connect({ servers: natsUrl(), tls });
  });
  afterAll(async () => {
    await admin?.close();
    await cloud?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const rows = async (): Promise<Array<{ event_id: string; phase: string; label: string }>> =>
    (
      await sql<{
        event_id: string;
        phase: string;
        label: string;
      }>`select event_id, phase, label from events order by occurred_at`.execute(cloud.db)
    ).rows;

  it.skipIf(!clip || !model)(
    "an agent's events are committed once each and leave its outbox",
    async () => {
      const produced: string[] = [];
      const dev = pki().devices['acme/gw-1']!;
      let agent: Agent | undefined = await startAgent(
        parseAgentConfig({
          device: gw1,
          dataDir,
          http: { port: 0 },
          nats: { servers: [natsUrl()], tls: { caFile: pki().caCert, certFile: dev.cert, keyFile: dev.key } },
          models: [{ name: 'yolox', type: 'yolox', path: model! }],
          cameras: [
            {
              id: 'walk',
              url: clip!,
              realtime: true,
              loop: false,
              width: 480,
              height: 270,
              fps: 10,
              detect: { model: 'yolox', labels: ['person'] },
            },
          ],
        }),
        {
          logger,
          onSpawn: (c) => registry.track(c, 'ffmpeg'),
          onEvent: (_cam, e) => produced.push(e.eventId),
        },
      );
      try {
        // loop: false: one pass of the clip, then the camera ends.
        await expect
          .poll(() => agent!.cameraStatus()[0]?.state, { timeout: 20_000, interval: 100 })
          .toBe('ended');
        await expect.poll(() => produced.length, { timeout: 15_000 }).toBeGreaterThanOrEqual(2);
        // Receipts empty the outbox: every event is committed.
        await expect.poll(() => agent!.outbox.stats().depth, { timeout: 20_000 }).toBe(0);
        const stored = await rows();
        expect(stored.map((r) => r.event_id).sort()).toEqual([...new Set(produced)].sort());
        expect(stored.every((r) => r.label === 'person')).toBe(true);
        console.log(`[delivery] ${produced.length} events produced, ${stored.length} rows in PostgreSQL`);
      } finally {
        await agent.stop();
        agent = undefined;
      }
    },
    60_000,
  );

  it("dead-letters an unregistered device's event, keeps going, and a replay after registering stores it once", async () => {
    const cert = pki().devices['acme/gw-9']!;
    const nc = await connect({
      servers: natsUrl(),
      tls: { caFile: pki().caCert, certFile: cert.cert, keyFile: cert.key },
    });
    const js = jetstream(nc);
    const mk = (id: string) =>
      DetectionEvent.encode(
        DetectionEvent.fromPartial({
          eventId: id,
          tenantId: 'acme',
          siteId: 'hq',
          deviceId: 'gw-9',
          cameraId: 'cam1',
          occurredAt: new Date(),
          trackId: 't-1',
          phase: TrackPhase.TRACK_PHASE_START,
          label: 'person',
          score: 0.8,
          box: { x: 0.1, y: 0.1, w: 0.2, h: 0.5 },
        }),
      ).finish();
    const id = '019ac6a0-0000-7000-8000-000000000001'.replace(
      '019ac6a0-0000',
      Date.now()
        .toString(16)
        .padStart(12, '0')
        .replace(/^(.{8})(.{4})$/, '$1-$2'),
    );
    const poison = mk(id);
    await js.publish(subjectFor('acme', 'gw-9', 'evt', 'cam1'), poison, { msgID: id });
    const jsm = await jetstreamManager(admin);
    await expect
      .poll(async () => (await jsm.streams.info('DEAD_LETTER')).state.messages, { timeout: 10_000 })
      .toBe(1);
    const dl = await jsm.streams.getMessage('DEAD_LETTER', {
      seq: (await jsm.streams.info('DEAD_LETTER')).state.first_seq,
    });
    expect(dl?.header.get('Vigil-Dlq-Reason')).toBe('unknown_device');
    expect(Buffer.from(dl!.data).equals(Buffer.from(poison))).toBe(true); // the original bytes
    // Not stored. (A total row count is not the check: the previous test's agent may still land a late event.)
    expect((await rows()).some((r) => r.event_id === id)).toBe(false);

    // The consumer kept going: a registered device's event published after the poison one is stored.
    const gwCert = pki().devices['acme/gw-1']!;
    const gwNc = await connect({
      servers: natsUrl(),
      tls: { caFile: pki().caCert, certFile: gwCert.cert, keyFile: gwCert.key },
    });
    const okId = id.replace(/.$/, '2');
    const okBytes = DetectionEvent.encode({ ...DetectionEvent.decode(mk(okId)), deviceId: 'gw-1' }).finish();
    await jetstream(gwNc).publish(subjectFor('acme', 'gw-1', 'evt', 'cam1'), okBytes, { msgID: okId });
    await expect
      .poll(async () => (await rows()).some((r) => r.event_id === okId), { timeout: 10_000 })
      .toBe(true);

    // The fix: register the device. Then replay (twice: the second finds nothing) and resend as a device would.
    await cloud.registry.registerDevice(stranger);
    const js2 = jetstream(admin);
    expect(await replayAll(js2, jsm)).toMatchObject({ replayed: 1, failed: 0 });
    expect(await replayAll(js2, jsm)).toMatchObject({ replayed: 0 });
    await expect
      .poll(async () => (await rows()).filter((r) => r.event_id === id).length, { timeout: 10_000 })
      .toBe(1);
    await js.publish(subjectFor('acme', 'gw-9', 'evt', 'cam1'), Buffer.from(dl!.data), {
      msgID: `resend-${id}`,
    });
    await new Promise((r) => setTimeout(r, 1_500));
    expect((await rows()).filter((r) => r.event_id === id)).toHaveLength(1);
    expect((await jsm.streams.info('DEAD_LETTER')).state.messages).toBe(0);
    await nc.close();
    await gwNc.close();
  }, 60_000);
});
