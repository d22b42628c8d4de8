import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
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

// `vigil webhooks` against the real cloud: a webhook made with the CLI receives a committed event (the receiver is
// a local HTTP server: an outside party), and its deliveries are listed.
describe('vigil webhooks (against the cloud)', () => {
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
        integrations: { allowInsecureHttp: true, allowPrivateNetworks: true },
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

  it('creates a webhook, delivers a committed event to it, lists deliveries, disables it', async () => {
    const received: Array<{ headers: Record<string, unknown>; body: string }> = [];
    const server: Server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        received.push({ headers: req.headers, body });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
      const made = await cli('webhooks', 'create', '--tenant', 'acme', '--url', url, '--label', 'person');
      expect(made.code, made.err).toBe(0);
      const [first, second] = made.out.split('\n');
      const id = /^webhook (\S+) -> /.exec(first ?? '')?.[1];
      expect(id).toBeDefined();
      expect(second).toMatch(/^secret: \S{16,}$/);
      expect(made.err).toContain('shown only now');

      const list = await cli('webhooks', 'list', '--tenant', 'acme');
      expect(list.out).toMatch(
        new RegExp(`^${id}\\s+enabled\\s+${url.replaceAll('.', '\\.')}\\s+labels=person$`, 'm'),
      );

      const eventId = await publish('door', 'person');
      await expect.poll(() => received.length, { timeout: 20_000 }).toBe(1);
      expect(JSON.parse(received[0]!.body)).toMatchObject({ event: { event_id: eventId } });
      expect(received[0]!.headers['signature-input']).toMatch(/keyid=/);

      await expect
        .poll(async () => (await cli('webhooks', 'deliveries', id!, '--tenant', 'acme')).out, {
          timeout: 10_000,
        })
        .toMatch(new RegExp(`${eventId}\\s+1\\s+delivered\\s+204`));

      const off = await cli('webhooks', 'disable', id!, '--tenant', 'acme', '--reason', 'partner gone');
      expect(off.out).toBe(`webhook ${id} disabled`);
      expect((await cli('webhooks', 'list', '--tenant', 'acme')).out).toContain('disabled (partner gone)');
      // a viewer may not manage webhooks
      const viewer = await cli('webhooks', 'list', '--tenant', 'acme', '--role', 'viewer');
      expect(viewer.code).toBe(1);
      expect(viewer.err).toContain('403');
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
