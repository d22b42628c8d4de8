import { randomBytes } from 'node:crypto';
import { jetstream } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDevSigningKey, parseCloudConfig, startCloud, type CloudApp } from '@vigil/cloud';
import { DetectionEvent, subjectFor, TrackPhase } from '@vigil/proto';
import { natsConfig, useDatabase, useNats, usePki } from '@vigil/testkit';
import { runCli } from '../src/index.js';

function uuidV7(ms: number): string {
  const b = randomBytes(16);
  b.writeUIntBE(ms, 0, 6);
  b[6] = 0x70 | (b[6]! & 0x0f);
  b[8] = 0x80 | (b[8]! & 0x3f);
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// `vigil events watch` against the real cloud: events published by a device, committed by ingest, arrive on the
// websocket stream and are printed.
describe('vigil events watch (against the cloud)', () => {
  const pki = usePki({ services: ['cloud'] });
  const nats = useNats({
    config: (ctx) =>
      natsConfig({
        tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
      })(ctx),
  });
  const dbUrl = useDatabase();
  let cloud: CloudApp;

  beforeAll(async () => {
    const key = ensureDevSigningKey(pki().dir);
    const svc = pki().services.cloud!;
    cloud = await startCloud(
      parseCloudConfig({
        http: { port: 0 },
        database: { url: dbUrl() },
        nats: {
          servers: [`tls://localhost:${nats().port}`],
          tls: { caFile: pki().caCert, certFile: svc.cert, keyFile: svc.key },
        },
        auth: { jwksFile: key.jwksFile },
        log: { level: 'silent' },
      }),
    );
    await cloud.registry.registerDevice({ tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' });
  });
  afterAll(async () => {
    await cloud?.stop();
  });

  async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runCli(['--api', `http://127.0.0.1:${cloud.httpPort}`, '--pki', pki().dir, ...args], {
      io: { out: (t) => out.push(t), err: (t) => err.push(t) },
    });
    return { code, out: out.join('\n'), err: err.join('\n') };
  }

  async function publish(camera: string, label: string): Promise<string> {
    const svc = pki().services.cloud!;
    const nc = await connect({
      servers: [`tls://localhost:${nats().port}`],
      tls: { caFile: pki().caCert, certFile: svc.cert, keyFile: svc.key },
    });
    const id = uuidV7(Date.now());
    await jetstream(nc).publish(
      subjectFor('acme', 'gw-1', 'evt', camera),
      DetectionEvent.encode(
        DetectionEvent.fromPartial({
          eventId: id,
          tenantId: 'acme',
          siteId: 'hq',
          deviceId: 'gw-1',
          cameraId: camera,
          occurredAt: new Date(),
          trackId: 't1',
          phase: TrackPhase.TRACK_PHASE_START,
          label,
          score: 0.75,
          box: { x: 0.1, y: 0.1, w: 0.2, h: 0.2 },
        }),
      ).finish(),
      { msgID: id },
    );
    await nc.close();
    return id;
  }

  it('prints the matching events as they are committed, then stops at --count', async () => {
    const watching = cli(
      'events',
      'watch',
      '--tenant',
      'acme',
      '--camera',
      'door',
      '--count',
      '2',
      '--seconds',
      '30',
    );
    // connected once the cloud counts the stream
    await expect
      .poll(async () =>
        /^vigil_cloud_realtime_connections 1$/m.test(
          await (await fetch(`http://127.0.0.1:${cloud.httpPort}/metrics`)).text(),
        ),
      )
      .toBe(true);
    const a = await publish('door', 'person');
    await publish('yard', 'person'); // filtered out
    const b = await publish('door', 'car');
    const r = await watching;
    expect(r.code, r.err).toBe(0);
    const lines = r.out.split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(new RegExp(`^\\S+Z  ${a}  gw-1  door  person  0\\.75  start$`));
    expect(lines[1]).toContain(`${b}  gw-1  door  car`);
    expect(r.err).toContain('watching /v1/stream?camera=door');
  });

  it('stops after --seconds with nothing to show, and says why a stream is refused', async () => {
    const quiet = await cli(
      '--json',
      'events',
      'watch',
      '--tenant',
      'acme',
      '--label',
      'zebra',
      '--seconds',
      '1',
    );
    expect(quiet).toMatchObject({ code: 0, out: '' });
    const refused = await cli('events', 'watch', '--tenant', 'acme', '--role', 'installer', '--seconds', '5');
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('the cloud refused the stream: 403');
  });
});
