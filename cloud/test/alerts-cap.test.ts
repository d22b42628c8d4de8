// Agency alerts end to end: a device publishes DetectionEvents of one tracked person over NATS (mTLS), ingest
// commits them with their incidents and CAP message jobs (the shared outbox), the relay enqueues the jobs on
// JOBS, the alert worker POSTs CAP 1.2 over mTLS to a local agency (an outside party on 127.0.0.1) that
// checks the client certificate and validates every message against the OASIS XSD on its own.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { createCa, issueClientCert } from '@vigil/certs';
import { DetectionEvent, subjectFor, TrackPhase } from '@vigil/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MediaRepository } from '../src/media/repository.js';
import { FsMediaStore, mediaKeyFor } from '../src/media/store.js';
import { useApiCloud, uuidV7 } from './api-fixtures.js';
import {
  CAP_NS as CAP,
  CAP_XSD as XSD,
  capReader,
  expectCapChain as expectValidChain,
  HQ_CAP_POLYGON,
  HQ_LOCATION,
  INTRUSION,
  startAgency,
  type Agency,
  type CapSeen,
} from './support/agency.js';

interface Received extends CapSeen {
  path: string;
  client: string | undefined;
  status: number;
  body: string;
}

const ACK = (id: string) =>
  `<?xml version="1.0" encoding="UTF-8"?><alert xmlns="${CAP}"><identifier>ack-${id}</identifier><sender>agency@example.org</sender>` +
  `<sent>2026-01-01T00:00:00+00:00</sent><status>Actual</status><msgType>Ack</msgType><scope>Public</scope></alert>`;

const HOSTILE: Record<string, string> = {
  xxe: `<?xml version="1.0"?><!DOCTYPE alert [<!ENTITY x SYSTEM "file:///etc/passwd">]><alert xmlns="${CAP}"><note>&x;</note></alert>`,
  laughs: `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><lolz>&lol3;</lolz>`,
  dtd: `<?xml version="1.0"?><!DOCTYPE alert SYSTEM "http://127.0.0.1:9/evil.dtd"><alert xmlns="${CAP}"/>`,
  oversized: `<alert xmlns="${CAP}"><note>${'A'.repeat(200_000)}</note></alert>`,
  wrongns: `<alert xmlns="urn:oasis:names:tc:emergency:cap:1.1"><msgType>Ack</msgType></alert>`,
  notxml: `{"ok": true}`,
};
const REASON: Record<string, string> = {
  xxe: 'doctype',
  laughs: 'doctype',
  dtd: 'doctype',
  oversized: 'oversized',
  wrongns: 'wrong_namespace',
  notxml: 'not_xml',
};

// Each test polls up to 30 s per step on the full pipeline; the suite runs beside the whole CI suite.
describe(
  'CAP 1.2 agency alerts (device -> ingest -> outbox -> JOBS -> mTLS agency)',
  { timeout: 120_000 },
  () => {
    const mediaDir = mkdtempSync(join(tmpdir(), 'vigil-alerts-media-'));
    const api = useApiCloud({
      media: { dir: mediaDir },
      integrations: {
        allowPrivateNetworks: true,
        timeoutMs: 3000,
        backoff: { initialMs: 100, maxMs: 400 },
        circuit: { failures: 3, openSeconds: 1 },
      },
      alerts: {
        capSchemaFile: XSD,
        maxAttempts: 200,
        senderDomain: 'vigil.test',
        publicBaseUrl: 'https://vigil.example',
      },
    });
    const received: Received[] = [];
    const mode = { flakyDown: true, refuse: true };
    let agencyServer: Agency;
    let nc: NatsConnection;
    let admin: string;
    const targets: Record<string, string> = {};

    beforeAll(async () => {
      const read = capReader();
      agencyServer = await startAgency((req) => {
        const cap = read(req.body);
        const status =
          cap.valid !== null
            ? 400
            : req.path === '/flaky' && mode.flakyDown
              ? 503
              : req.path === '/refuse' && mode.refuse
                ? 422
                : 200;
        received.push({ ...cap, path: req.path, client: req.client, status, body: req.body });
        const hostile = HOSTILE[req.path.slice(1)];
        return {
          status,
          contentType: 'application/cap+xml',
          body: status === 200 ? (hostile ?? ACK(cap.identifier)) : '',
        };
      });
      const stranger = createCa({ commonName: 'Someone else' });
      nc = await api.connectNats();
      await api.cloud().registry.registerDevice({ tenantId: 'acme', siteId: 'hq', deviceId: 'gw-cap' });
      admin = await api.token('acme', ['admin']);

      const post = (path: string, body: unknown, token = admin, method = 'POST') =>
        api.get(path, token, {
          method,
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
      const loc = await post('/v1/sites/hq/location', HQ_LOCATION, admin, 'PUT');
      expect(loc.status).toBe(200);
      for (const name of ['ok', 'flaky', 'refuse', ...Object.keys(HOSTILE)]) {
        const res = await post('/v1/alerts/targets', agencyServer.mtlsTarget(name, `/${name}`));
        expect(res.status, await res.clone().text()).toBe(201);
        targets[name] = ((await res.json()) as { id: string }).id;
      }
      // A certificate the agency does not trust is refused at the handshake (the agency really checks mTLS).
      const bad = issueClientCert(stranger, { commonName: 'intruder' });
      const badTarget = await post('/v1/alerts/targets', agencyServer.mtlsTarget('stranger', '/ok', bad));
      expect(badTarget.status).toBe(201);
      targets.stranger = ((await badTarget.json()) as { id: string }).id;

      const rule = async (name: string, match: unknown, names: string[]) => {
        const res = await post('/v1/alerts/rules', {
          name,
          match,
          cap: INTRUSION,
          target_ids: names.map((n) => targets[n]),
        });
        expect(res.status, await res.clone().text()).toBe(201);
      };
      await rule(
        'person in yard',
        { labels: ['person'], zones: ['yard'], cameras: ['gate'], min_dwell_seconds: 2 },
        ['ok'],
      );
      await rule('cars at the gate', { labels: ['car'], cameras: ['gate'] }, ['ok']);
      await rule('flaky', { cameras: ['flaky'] }, ['flaky']);
      await rule('refused', { cameras: ['refuse'] }, ['refuse', 'stranger']);
      await rule('hostile', { cameras: ['hostile'] }, Object.keys(HOSTILE));
      await rule('snapshots', { cameras: ['snap'] }, ['ok']);
    });
    afterAll(async () => {
      await nc?.close();
      await agencyServer?.close();
      rmSync(mediaDir, { recursive: true, force: true });
    });

    let clock = Date.now() - 60_000;
    /** Publishes one event of a track as gw-cap (event times from a test clock: dwell never waits on the wall). */
    async function publish(
      camera: string,
      track: string,
      phase: TrackPhase,
      zones: string[],
      afterMs: number,
      label = 'person',
    ) {
      clock += afterMs;
      const id = uuidV7(clock);
      await jetstream(nc).publish(
        subjectFor('acme', 'gw-cap', 'evt', camera),
        DetectionEvent.encode(
          DetectionEvent.fromPartial({
            eventId: id,
            tenantId: 'acme',
            siteId: 'hq',
            deviceId: 'gw-cap',
            cameraId: camera,
            occurredAt: new Date(clock),
            trackId: track,
            phase,
            label,
            score: 0.9,
            box: { x: 0.1, y: 0.1, w: 0.2, h: 0.2 },
            zones,
          }),
        ).finish(),
        { msgID: id },
      );
      return id;
    }
    /** One tracked person: seen in the yard, stays past the dwell, walks to the door, leaves. */
    async function person(camera: string, track: string): Promise<void> {
      await publish(camera, track, TrackPhase.TRACK_PHASE_START, ['yard'], 0);
      await publish(camera, track, TrackPhase.TRACK_PHASE_UPDATE, ['yard'], 1000); // dwell 1 s: pending
      await publish(camera, track, TrackPhase.TRACK_PHASE_UPDATE, ['yard'], 2000); // dwell 3 s: Alert
      await publish(camera, track, TrackPhase.TRACK_PHASE_UPDATE, ['yard'], 500); // no change: nothing
      await publish(camera, track, TrackPhase.TRACK_PHASE_ZONE_ENTER, ['yard', 'door'], 1000); // Update
      await publish(camera, track, TrackPhase.TRACK_PHASE_END, [], 1000); // Cancel
    }
    const at = (path: string) => received.filter((r) => r.path === path);
    const accepted = (path: string) => at(path).filter((r) => r.status === 200);
    const messages = async (query: string) => {
      const res = await api.get(`/v1/alerts/messages?${query}`, admin);
      expect(res.status).toBe(200);
      return ((await res.json()) as { items: Array<Record<string, unknown>> }).items;
    };
    const metric = async (line: string): Promise<number> => {
      const t = await (await fetch(`${api.base()}/metrics`)).text();
      const l = t.split('\n').find((x) => x.startsWith(line));
      return l === undefined ? 0 : Number(l.split(' ').pop());
    };
    const expectChain = (got: Received[]) => {
      expectValidChain(got, ['Alert', 'Update', 'Cancel'], {
        sender: 'acme@vigil.test',
        client: 'vigil-acme',
      });
      // The site's location as the CAP area (closed polygon), category Security, the rule's urgency/severity/certainty.
      expect(got[0]!.body).toContain(HQ_CAP_POLYGON);
      expect(got[0]!.body).toContain(
        '<category>Security</category><event>Intrusion</event><urgency>Immediate</urgency><severity>Severe</severity><certainty>Observed</certainty>',
      );
    };

    it('one tracked person: Alert, Update, Cancel in order over mTLS, each valid and referencing the one before; the car rule does not fire', async () => {
      await person('gate', 'p1');
      await expect.poll(() => accepted('/ok').length, { timeout: 30_000 }).toBe(3);
      expectChain(accepted('/ok'));
      const incidents = (await (await api.get('/v1/alerts/incidents', admin)).json()) as {
        items: Array<{ state: string; track_id: string }>;
      };
      const mine = incidents.items.filter((i) => i.track_id === 'p1');
      expect(mine).toHaveLength(1); // only the person rule: the car rule matched nothing
      expect(mine[0]!.state).toBe('ended');
      const sent = await messages(`target=${targets.ok}`);
      expect(
        sent.every(
          (m) => m.state === 'delivered' && typeof m.answer === 'string' && m.answer.startsWith('Ack'),
        ),
      ).toBe(true);
      // No second delivery of anything, even after a while.
      await new Promise((r) => setTimeout(r, 1500));
      expect(at('/ok')).toHaveLength(3);
    });

    it('agency down for a while: the messages arrive after it returns, in order, once each', async () => {
      mode.flakyDown = true;
      await person('flaky', 'p2');
      await expect.poll(() => at('/flaky').length, { timeout: 30_000 }).toBeGreaterThanOrEqual(3);
      expect(accepted('/flaky')).toHaveLength(0);
      mode.flakyDown = false;
      await expect.poll(() => accepted('/flaky').length, { timeout: 60_000 }).toBe(3);
      expectChain(accepted('/flaky'));
      await new Promise((r) => setTimeout(r, 1500));
      expect(accepted('/flaky')).toHaveLength(3);
    });

    it('an agency refusing for good: a dead letter with the reason; an untrusted client certificate too; replay delivers it', async () => {
      await publish('refuse', 'p3', TrackPhase.TRACK_PHASE_START, ['yard'], 0);
      await expect
        .poll(async () => (await messages(`target=${targets.refuse}&state=dead`)).length, { timeout: 30_000 })
        .toBe(1);
      const [dead] = await messages(`target=${targets.refuse}&state=dead`);
      expect(dead!.http_status).toBe(422);
      expect(dead!.error).toBe('HTTP 422');
      // The stranger's certificate never got past the agency's handshake: retried (network), never accepted.
      await expect
        .poll(async () => (await messages(`target=${targets.stranger}`))[0]?.attempts ?? 0, {
          timeout: 30_000,
        })
        .toBeGreaterThanOrEqual(1);
      expect(received.some((r) => r.client === 'intruder')).toBe(false);

      mode.refuse = false;
      const replay = await api.get(
        `/v1/alerts/messages/${encodeURIComponent(String(dead!.id))}/replay`,
        admin,
        { method: 'POST' },
      );
      expect(replay.status).toBe(200);
      await expect.poll(() => accepted('/refuse').length, { timeout: 30_000 }).toBe(1);
      expect(accepted('/refuse')[0]!.identifier).toBe(dead!.identifier);
      await expect
        .poll(async () => (await messages(`target=${targets.refuse}`))[0]?.state, { timeout: 30_000 })
        .toBe('delivered');
    });

    it('hostile agency answers are refused unparsed and counted (XXE, billion laughs, external DTD, oversized, wrong namespace, not XML)', async () => {
      await publish('hostile', 'p4', TrackPhase.TRACK_PHASE_START, ['yard'], 0);
      for (const [name, reason] of Object.entries(REASON)) {
        await expect
          .poll(async () => (await messages(`target=${targets[name]}`))[0]?.answer ?? '', { timeout: 30_000 })
          .toMatch(new RegExp(`^refused \\(${reason}\\)`));
      }
      for (const reason of new Set(Object.values(REASON)))
        expect(
          await metric(`vigil_cloud_alert_answers_refused_total{reason="${reason}"}`),
        ).toBeGreaterThanOrEqual(1);
      expect(
        await metric('vigil_cloud_alert_answers_refused_total{reason="doctype"}'),
      ).toBeGreaterThanOrEqual(3);
    });

    it('a message that fails the XSD is a dead letter carrying the validator message, and is never sent', async () => {
      const res = await api.get('/v1/alerts/rules', admin, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          name: 'broken',
          match: { cameras: ['broken'] },
          cap: { event: 'Intrusion' },
          target_ids: [targets.ok],
        }),
      });
      expect(res.status).toBe(201);
      const rule = (await res.json()) as { id: string };
      // A defect stand-in: a value the API would refuse, written behind its back (the XSD is the last line).
      await api
        .cloud()
        .db.updateTable('alert_rules')
        .set({
          cap: JSON.stringify({
            event: 'Intrusion',
            urgency: 'Bogus',
            severity: 'Severe',
            certainty: 'Observed',
          }),
        })
        .where('id', '=', rule.id)
        .execute();
      const before = at('/ok').length;
      await publish('broken', 'p6', TrackPhase.TRACK_PHASE_START, [], 0);
      await expect
        .poll(
          async () =>
            (await messages(`target=${targets.ok}&state=dead`)).map((m) => String(m.error)).join(' '),
          { timeout: 30_000 },
        )
        .toMatch(/^CAP message fails the XSD: .*urgency.*Bogus/);
      expect(at('/ok').length).toBe(before);
      expect(await metric('vigil_cloud_alert_deliveries_total{result="invalid_cap"}')).toBe(1);
    });

    it('an operator cancel sends CAP Cancel and is audited; rule changes are audited', async () => {
      await publish('gate', 'p5', TrackPhase.TRACK_PHASE_START, ['yard'], 0);
      await publish('gate', 'p5', TrackPhase.TRACK_PHASE_UPDATE, ['yard'], 3000);
      let id = '';
      await expect
        .poll(
          async () => {
            const r = (await (await api.get('/v1/alerts/incidents?state=alerted', admin)).json()) as {
              items: Array<{ id: string; track_id: string }>;
            };
            id = r.items.find((i) => i.track_id === 'p5')?.id ?? '';
            return id;
          },
          { timeout: 30_000 },
        )
        .not.toBe('');
      const operator = await api.token('acme', ['operator']);
      const viewer = await api.token('acme', ['viewer']);
      const cancel = (token: string) =>
        api.get(`/v1/alerts/incidents/${id}/cancel`, token, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ reason: 'false alarm' }),
        });
      expect((await cancel(viewer)).status).toBe(403);
      const ok = await cancel(operator);
      expect(ok.status).toBe(200);
      expect(((await ok.json()) as { state: string }).state).toBe('cancelled');
      const mine = () => accepted('/ok').filter((r) => r.identifier.includes(id));
      await expect.poll(() => mine().map((r) => r.msgType), { timeout: 30_000 }).toEqual(['Alert', 'Cancel']);
      expect(mine()[1]!.references).toBe(`${mine()[0]!.sender},${mine()[0]!.identifier},${mine()[0]!.sent}`);
      const audit = (await (await api.get('/v1/audit-log?limit=200', admin)).json()) as {
        items: Array<{ action: string }>;
      };
      const actions = new Set(audit.items.map((e) => e.action));
      for (const a of [
        'alert.cancel',
        'alert_rule.create',
        'alert_target.create',
        'alert_message.replay',
        'site.location_set',
      ])
        expect(actions, a).toContain(a);
    });

    it('the snapshot travels as a signed, expiring, audited URL with its digest', async () => {
      const capturedAt = new Date();
      const mediaId = uuidV7(capturedAt.getTime());
      const bytes = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(1024)]);
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      const key = mediaKeyFor({ tenantId: 'acme', mediaId, capturedAt, contentType: 'image/jpeg', sha256 });
      await new FsMediaStore(mediaDir).put(key, bytes);
      await new MediaRepository(api.cloud().db).insert({
        tenantId: 'acme',
        mediaId,
        siteId: 'hq',
        deviceId: 'gw-cap',
        cameraId: 'snap',
        eventId: uuidV7(capturedAt.getTime()),
        contentType: 'image/jpeg',
        sha256,
        sizeBytes: bytes.length,
        redacted: true,
        capturedAt,
        storedAt: new Date(),
        storageKey: key,
      });
      clock += 1;
      const id = uuidV7(clock);
      await jetstream(nc).publish(
        subjectFor('acme', 'gw-cap', 'evt', 'snap'),
        DetectionEvent.encode(
          DetectionEvent.fromPartial({
            eventId: id,
            tenantId: 'acme',
            siteId: 'hq',
            deviceId: 'gw-cap',
            cameraId: 'snap',
            occurredAt: new Date(clock),
            trackId: 'p7',
            phase: TrackPhase.TRACK_PHASE_START,
            label: 'person',
            score: 0.9,
            box: { x: 0.1, y: 0.1, w: 0.2, h: 0.2 },
            snapshot: {
              $case: 'snapshotRef',
              value: { mediaId, contentType: 'image/jpeg', sha256, sizeBytes: BigInt(bytes.length) },
            },
          }),
        ).finish(),
        { msgID: id },
      );
      await expect
        .poll(() => accepted('/ok').filter((r) => r.body.includes('<resource>')).length, { timeout: 30_000 })
        .toBe(1);
      const body = accepted('/ok').find((r) => r.body.includes('<resource>'))!.body;
      expect(body).toContain(`<mimeType>image/jpeg</mimeType><size>${bytes.length}</size>`);
      expect(body).toContain(`<digest>${sha256}</digest>`);
      const uri = /<uri>([^<]+)<\/uri>/.exec(body)![1]!.replaceAll('&#38;', '&');
      const url = new URL(uri);
      expect(url.origin).toBe('https://vigil.example');
      expect(url.pathname).toBe(`/public/alerts/media/acme/${mediaId}`);
      const local = `${api.base()}${url.pathname}${url.search}`;
      const got = await fetch(local);
      expect(got.status).toBe(200);
      expect(Buffer.from(await got.arrayBuffer()).equals(bytes)).toBe(true);
      const forged = local.replace(/sig=[^&]+/, 'sig=AAAA');
      expect((await fetch(forged)).status).toBe(403);
      const expired = local.replace(/exp=\d+/, 'exp=1000');
      expect((await fetch(expired)).status).toBe(403);
      const audit = (await (await api.get('/v1/audit-log?limit=200', admin)).json()) as {
        items: Array<{ action: string; actor: string; resource: string }>;
      };
      expect(
        audit.items.some((e) => e.action === 'media.url_issue' && e.resource === `media:acme/${mediaId}`),
      ).toBe(true);
      expect(
        audit.items.filter(
          (e) =>
            e.action === 'media.read' && e.actor === 'signed-url' && e.resource === `media:acme/${mediaId}`,
        ),
      ).toHaveLength(1);
    });

    // Ingest commits batches concurrently and redelivers a failed one after later ones, so one track's events
    // can be committed out of order. Here that order is forced (each event committed before the next is sent).
    it('events of one track committed out of order: a late START still counts the dwell; a stale event raises no Update', async () => {
      const committed = async (id: string) =>
        expect
          .poll(
            async () =>
              (
                await api
                  .cloud()
                  .db.selectFrom('events')
                  .select('event_id')
                  .where('event_id', '=', id)
                  .executeTakeFirst()
              )?.event_id,
            { timeout: 30_000 },
          )
          .toBe(id);
      const incident = async () => {
        const r = (await (await api.get('/v1/alerts/incidents', admin)).json()) as {
          items: Array<{ id: string; track_id: string; state: string }>;
        };
        return r.items.find((i) => i.track_id === 'p8');
      };
      clock += 10_000;
      await committed(await publish('gate', 'p8', TrackPhase.TRACK_PHASE_UPDATE, ['yard'], 3000)); // t+3 s first
      expect((await incident())?.state).toBe('pending');
      await committed(await publish('gate', 'p8', TrackPhase.TRACK_PHASE_START, ['yard'], -3000)); // then t
      await expect.poll(async () => (await incident())?.state, { timeout: 30_000 }).toBe('alerted');
      // t+1 s, in the door: older than the newest sighting (t+3 s), so not news.
      await committed(await publish('gate', 'p8', TrackPhase.TRACK_PHASE_ZONE_ENTER, ['yard', 'door'], 1000));
      await publish('gate', 'p8', TrackPhase.TRACK_PHASE_END, [], 5000);
      await expect.poll(async () => (await incident())?.state, { timeout: 30_000 }).toBe('ended');
      const id = (await incident())!.id;
      const mine = () => accepted('/ok').filter((r) => r.identifier.includes(id));
      await expect.poll(() => mine().map((r) => r.msgType), { timeout: 30_000 }).toEqual(['Alert', 'Cancel']);
      expect(mine()[1]!.references).toBe(`${mine()[0]!.sender},${mine()[0]!.identifier},${mine()[0]!.sent}`);
    });
  },
);
