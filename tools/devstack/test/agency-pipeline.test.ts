import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCloudConfig, startCloud, type CloudApp } from '@vigil/cloud';
import { parseAgentConfig, startAgent, type Agent } from '@vigil/edge-agent';
import { TrackPhase, type DetectionEvent } from '@vigil/proto';
import { asset, natsConfig, registry, useCameraSim, useDatabase, useNats, usePki } from '@vigil/testkit';
import { AlertStore } from '../../../cloud/src/alerts/store.js';
import {
  CAP_XSD,
  capReader,
  expectCapChain,
  HQ_CAP_POLYGON,
  HQ_LOCATION,
  INTRUSION,
  startAgency,
  type Agency,
  type CapSeen,
} from '../../../cloud/test/support/agency.js';

const source = asset('videos/one-by-one-person-detection.mp4');
const model = asset('models/yolox_nano.onnx');

// CAP alerts from the real pipeline, nothing simulated past the camera: the clip served over RTSP by the
// camera-sim -> the agent's ffmpeg -> YOLOX-nano -> tracker and zones -> SQLite outbox -> JetStream (device
// certificate) -> cloud ingest (rules decided in the commit) -> outbox relay -> JOBS -> alert worker -> HTTPS
// with mTLS to a local agency that validates every message against the OASIS XSD itself.
//
// The clip's first visit (5-19 s, read off a contact sheet): a woman walks in from the bottom edge (her feet
// out of the frame), stops at the table in the middle (feet at ~0.87-0.93 of the height) and leaves to the
// right. The zone `floor` is the floor above the bottom strip (edge at 0.96, clear of her feet at the table),
// so the track starts outside it and enters it a second later: START (Alert), ZONE_ENTER floor (Update), END
// 2 s after she is gone (Cancel, after alerts.endGraceMs). A jittery box may add a ZONE_EXIT/ENTER pair (an
// Update each: the zones she is in changed); the test counts the Updates from the agent's own events.
const FLOOR = [
  [0.2, 0],
  [1, 0],
  [1, 0.96],
  [0.2, 0.96],
];
// Nobody's feet go near the window in the top-left corner.
const WINDOW = [
  [0, 0],
  [0.15, 0],
  [0.15, 0.5],
  [0, 0.5],
];
/** Clip seconds kept: the first visit and the empty room after it (the track ends 2 s after she leaves, the next visitor comes at 22 s). */
const CLIP_SECONDS = 22;

describe.skipIf(!source || !model)(
  'CAP alerts from the real pipeline (camera-sim -> agent -> ingest -> agency)',
  () => {
    const device = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' };
    const pki = usePki({ devices: [device], services: ['cloud'] });
    const nats = useNats({
      config: (ctx) =>
        natsConfig({
          tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
        })(ctx),
    });
    const dbUrl = useDatabase();
    // The clip cut to its first visit, in a temp dir (never into the repository).
    const dir = mkdtempSync(join(tmpdir(), 'vigil-agency-pipeline-'));
    const clip = join(dir, 'first-visit.mp4');
    if (source)
      execFileSync('ffmpeg', [
        '-loglevel',
        'error',
        '-y',
        '-i',
        source,
        '-t',
        String(CLIP_SECONDS),
        '-an',
        '-c',
        'copy',
        clip,
      ]);
    const sim = useCameraSim([{ name: 'lobby', source: { kind: 'file', path: clip, loop: false } }]);
    const logger = pino({ level: 'warn' });
    const read = capReader();
    const received: Array<CapSeen & { path: string; client: string | undefined; body: string }> = [];
    let agency: Agency;
    let cloud: CloudApp;
    let agent: Agent | undefined;
    const produced: DetectionEvent[] = [];
    const natsUrl = () => `tls://localhost:${nats().port}`;

    beforeAll(async () => {
      agency = await startAgency((req) => {
        const cap = read(req.body);
        received.push({ ...cap, path: req.path, client: req.client, body: req.body });
        return { status: cap.valid === null ? 200 : 400 };
      });
      const svc = pki().services.cloud!;
      cloud = await startCloud(
        parseCloudConfig({
          http: { port: 0 },
          api: { enabled: false },
          database: { url: dbUrl() },
          nats: { servers: [natsUrl()], tls: { caFile: pki().caCert, certFile: svc.cert, keyFile: svc.key } },
          media: { dir: join(dir, 'media') },
          integrations: {
            allowPrivateNetworks: true,
            timeoutMs: 5000,
            backoff: { initialMs: 100, maxMs: 1000 },
          },
          alerts: {
            capSchemaFile: CAP_XSD,
            senderDomain: 'vigil.test',
            publicBaseUrl: 'https://vigil.example',
          },
        }),
        { logger },
      );
      await cloud.registry.registerDevice(device);
      const store = new AlertStore(cloud.db);
      expect(await store.setSiteLocation('acme', 'hq', HQ_LOCATION)).toBe(true);
      const { target } = await store.createTarget({
        tenantId: 'acme',
        name: 'agency',
        url: `${agency.url}/cap`,
        auth: 'mtls',
        clientCertPem: agency.client.certPem,
        clientKeyPem: agency.client.keyPem,
        caPem: agency.ca.certPem,
        createdBy: 'test',
      });
      const rule = (name: string, match: Parameters<AlertStore['createRule']>[0]['match']) =>
        store.createRule({
          tenantId: 'acme',
          name,
          match,
          cap: INTRUSION,
          targetIds: [target.id],
          createdBy: 'test',
        });
      await rule('person in the lobby', { labels: ['person'], cameras: ['lobby'] });
      // Rules that must not fire: another label, another zone.
      await rule('car in the lobby', { labels: ['car'], cameras: ['lobby'] });
      await rule('person at the window', { labels: ['person'], cameras: ['lobby'], zones: ['window'] });
    }, 120_000);
    afterAll(async () => {
      await agent?.stop();
      await cloud?.stop();
      await agency?.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it('the agency receives Alert, Update, Cancel for the one tracked person, in order, each referencing the one before; the other rules stay silent', async () => {
      const began = Date.now();
      const dev = pki().devices['acme/gw-1']!;
      agent = await startAgent(
        parseAgentConfig({
          device,
          dataDir: join(dir, 'agent'),
          http: { port: 0 },
          log: { level: 'warn' },
          nats: { servers: [natsUrl()], tls: { caFile: pki().caCert, certFile: dev.cert, keyFile: dev.key } },
          models: [{ name: 'yolox', type: 'yolox', path: model! }],
          cameras: [
            {
              id: 'lobby',
              url: sim().url('lobby'),
              width: 640,
              height: 360,
              fps: 5,
              detect: {
                model: 'yolox',
                labels: ['person', 'car'],
                defaultThreshold: 0.5,
                zones: [
                  { id: 'floor', polygon: FLOOR },
                  { id: 'window', polygon: WINDOW },
                ],
              },
            },
          ],
        }),
        {
          logger,
          onSpawn: (c) => registry.track(c, 'ffmpeg'),
          onEvent: (_camera, e) => produced.push(e),
        },
      );
      // The clip plays in real time (22 s). Her track ends maxAgeMs after she leaves (19 s); on a loaded machine
      // that may be after the RTSP session ended, in the first seconds of the pass a reconnecting agent gets
      // (an empty room until 5 s). Once every track has ended and its events are sent, the agent stops.
      const tracksOf = (phase: TrackPhase) =>
        new Set(produced.filter((e) => e.phase === phase).map((e) => e.trackId));
      await expect
        .poll(
          () =>
            tracksOf(TrackPhase.TRACK_PHASE_START).size > 0 &&
            [...tracksOf(TrackPhase.TRACK_PHASE_START)].every((t) =>
              tracksOf(TrackPhase.TRACK_PHASE_END).has(t),
            ),
          { timeout: 150_000, interval: 250 },
        )
        .toBe(true);
      const pass = produced.length;
      await expect.poll(() => agent!.outbox.stats().depth, { timeout: 30_000, interval: 250 }).toBe(0);
      await agent.stop();
      agent = undefined;
      produced.splice(pass);
      const tracks = [...tracksOf(TrackPhase.TRACK_PHASE_START)];
      await expect
        .poll(() => received.filter((r) => r.msgType === 'Cancel').length, { timeout: 60_000, interval: 500 })
        .toBe(tracks.length);
      await new Promise((r) => setTimeout(r, 3000)); // nothing more: no other rule, nothing twice
      console.log(
        `[agency pipeline] events: ${produced.map((e) => `${e.trackId.slice(-6)} ${e.phase} [${e.zones.join(',')}]`).join('; ')}\n` +
          `[agency pipeline] messages: ${received.map((r) => `${r.identifier.slice(-8)} ${r.msgType}`).join(', ')} in ${((Date.now() - began) / 1000).toFixed(1)} s`,
      );
      expect(received.every((r) => r.path === '/cap')).toBe(true);
      // The person's track (the first; a loaded machine may drop frames and split off a short second one, which
      // then gets its own complete incident): Alert, one Update per change of the zones she is in, Cancel.
      const first = produced.filter((e) => e.trackId === tracks[0]);
      let zones = first[0]!.zones.join(',');
      let updates = 0;
      for (const e of first.slice(1, -1)) {
        if (e.zones.join(',') !== zones) updates++;
        zones = e.zones.join(',');
      }
      expect(updates).toBeGreaterThanOrEqual(1); // she walks onto the floor zone
      const byIncident = new Map<string, typeof received>();
      for (const r of received) {
        const inc = r.identifier.replace(/-\d+$/, '');
        byIncident.set(inc, [...(byIncident.get(inc) ?? []), r]);
      }
      expect(byIncident.size).toBe(tracks.length);
      const [cap, ...others] = [...byIncident.values()];
      expectCapChain(cap!, ['Alert', ...Array<string>(updates).fill('Update'), 'Cancel'], {
        sender: 'acme@vigil.test',
        client: 'vigil-acme',
      });
      for (const o of others) expect(o.map((r) => r.msgType)[0]).toBe('Alert');
      for (const o of others) expect(o.map((r) => r.msgType).at(-1)).toBe('Cancel');
      expect(cap![0]!.body).toContain(HQ_CAP_POLYGON);
      expect(cap![0]!.body).toContain('<event>Intrusion</event>');
      expect(cap![1]!.body).toMatch(/in zone\(s\) floor/); // the Update says where she went
      // Only the person rule fired (not the car rule, not the window zone's), one incident per track, all closed.
      const rules = await cloud.db.selectFrom('alert_rules').select(['id', 'name']).execute();
      const incidents = await cloud.db
        .selectFrom('alert_incidents')
        .select(['rule_id', 'state', 'track_id'])
        .execute();
      expect(incidents.map((i) => rules.find((r) => r.id === i.rule_id)?.name)).toEqual(
        tracks.map(() => 'person in the lobby'),
      );
      expect(incidents.every((i) => i.state === 'ended')).toBe(true);
      const messages = await cloud.db.selectFrom('alert_messages').select('state').execute();
      expect(messages.every((m) => m.state === 'delivered')).toBe(true);
      expect(messages).toHaveLength(received.length);
    }, 180_000);
  },
);
