// EIDO-style JSON incident documents and pull-only targets, end to end: a device publishes DetectionEvents of one
// tracked person over NATS (mTLS), ingest commits them with their incidents and message jobs, the alert worker
// POSTs JSON over mTLS to a local agency (an outside party on 127.0.0.1) that checks the client certificate and
// validates every document against the repository's JSON Schema with its own validator; pull-only targets get
// the same messages in their Atom feed and nothing POSTed.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { DetectionEvent, subjectFor, TrackPhase } from '@vigil/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useApiCloud, uuidV7 } from './api-fixtures.js';
import {
  CAP_XSD as XSD,
  capReader,
  HQ_LOCATION,
  INTRUSION,
  startAgency,
  type Agency,
} from './support/agency.js';

const SCHEMA = new URL('../src/alerts/eido-v1.schema.json', import.meta.url);

interface Doc {
  messageId: string;
  messageType: string;
  sender: string;
  sent: string;
  references: { sender: string; messageId: string; sent: string } | null;
  incident: { id: string; status: string; urgency: string; closureReason?: string };
  location: { polygon?: number[][] } | null;
  observation: { trackId: string; zones: string[] };
}
interface Received {
  path: string;
  client: string | undefined;
  contentType: string | undefined;
  invalid: string | null;
  doc: Doc | undefined;
}

const addFormats = ((addFormatsModule as unknown as { default?: typeof addFormatsModule }).default ??
  addFormatsModule) as unknown as (ajv: Ajv2020) => Ajv2020;

describe(
  'EIDO-style JSON incidents and pull-only targets (device -> ingest -> outbox -> JOBS -> agency or feed)',
  { timeout: 120_000 },
  () => {
    const mediaDir = mkdtempSync(join(tmpdir(), 'vigil-eido-media-'));
    const api = useApiCloud({
      media: { dir: mediaDir },
      integrations: {
        allowPrivateNetworks: true,
        timeoutMs: 3000,
        backoff: { initialMs: 100, maxMs: 400 },
        circuit: { failures: 3, openSeconds: 1 },
      },
      alerts: { capSchemaFile: XSD, maxAttempts: 50, senderDomain: 'vigil.test' },
    });
    // The agency's own validator (not the cloud's EidoSchema): draft 2020-12, formats checked, strict.
    const ajv = new Ajv2020({ allErrors: true, strict: true });
    addFormats(ajv);
    const validate = ajv.compile(JSON.parse(readFileSync(SCHEMA, 'utf8')) as object);
    const readCap = capReader();
    const received: Received[] = [];
    let agency: Agency;
    let nc: NatsConnection;
    let admin: string;
    const targets: Record<string, { id: string; feed: string }> = {};

    const post = (path: string, body: unknown) =>
      api.get(path, admin, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });

    beforeAll(async () => {
      agency = await startAgency(
        (req) => {
          let doc: Doc | undefined;
          let invalid: string | null = null;
          try {
            doc = JSON.parse(req.body) as Doc;
            if (!validate(doc)) invalid = ajv.errorsText(validate.errors);
          } catch (err) {
            invalid = (err as Error).message;
          }
          received.push({ path: req.path, client: req.client, contentType: req.contentType, invalid, doc });
          return { status: invalid === null ? 200 : 400 };
        },
        { caName: 'EIDO agency CA' },
      );
      nc = await api.connectNats();
      await api.cloud().registry.registerDevice({ tenantId: 'acme', siteId: 'hq', deviceId: 'gw-eido' });
      admin = await api.token('acme', ['admin']);
      const loc = await api.get('/v1/sites/hq/location', admin, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(HQ_LOCATION),
      });
      expect(loc.status).toBe(200);
      const made = async (name: string, body: Record<string, unknown>) => {
        const res = await post('/v1/alerts/targets', { name, ...body });
        expect(res.status, await res.clone().text()).toBe(201);
        const t = (await res.json()) as { id: string; feed_token: string };
        targets[name] = { id: t.id, feed: t.feed_token };
        return t;
      };
      const pushed = await made('eido', { format: 'eido', ...agency.mtlsTarget('eido', '/eido') });
      expect(pushed).toMatchObject({ format: 'eido', delivery: 'push', auth: 'mtls' });
      const pulled = await made('pull-cap', { delivery: 'pull' });
      expect(pulled).toMatchObject({ format: 'cap', delivery: 'pull', auth: 'feed', url: null });
      await made('pull-eido', { delivery: 'pull', format: 'eido' });
      const rule = async (name: string, match: unknown, names: string[]) => {
        const res = await post('/v1/alerts/rules', {
          name,
          match,
          cap: INTRUSION,
          target_ids: names.map((n) => targets[n]!.id),
        });
        expect(res.status, await res.clone().text()).toBe(201);
        return ((await res.json()) as { id: string }).id;
      };
      await rule(
        'person in yard',
        { labels: ['person'], zones: ['yard'], cameras: ['gate'], min_dwell_seconds: 2 },
        ['eido', 'pull-cap', 'pull-eido'],
      );
      const broken = await rule('broken', { cameras: ['broken'] }, ['eido', 'pull-eido']);
      // A defect stand-in: a value the API would refuse, written behind its back (the schema is the last line).
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
        .where('id', '=', broken)
        .execute();
    });
    afterAll(async () => {
      await nc?.close();
      await agency?.close();
      rmSync(mediaDir, { recursive: true, force: true });
    });

    let clock = Date.now() - 60_000;
    async function publish(
      camera: string,
      track: string,
      phase: TrackPhase,
      zones: string[],
      afterMs: number,
    ) {
      clock += afterMs;
      const id = uuidV7(clock);
      await jetstream(nc).publish(
        subjectFor('acme', 'gw-eido', 'evt', camera),
        DetectionEvent.encode(
          DetectionEvent.fromPartial({
            eventId: id,
            tenantId: 'acme',
            siteId: 'hq',
            deviceId: 'gw-eido',
            cameraId: camera,
            occurredAt: new Date(clock),
            trackId: track,
            phase,
            label: 'person',
            score: 0.9,
            box: { x: 0.1, y: 0.1, w: 0.2, h: 0.2 },
            zones,
          }),
        ).finish(),
        { msgID: id },
      );
    }
    const messages = async (query: string) => {
      const res = await api.get(`/v1/alerts/messages?${query}`, admin);
      expect(res.status).toBe(200);
      return ((await res.json()) as { items: Array<Record<string, unknown>> }).items;
    };
    /** The entries of a target's Atom feed, oldest first: [content type, content text]. */
    const feed = async (name: string, token = targets[name]!.feed) => {
      const res = await fetch(`${api.base()}/public/alerts/feeds/${targets[name]!.id}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      if (res.status !== 200) return { status: res.status, entries: [] };
      const text = await res.text();
      const entries = [...text.matchAll(/<content type="([^"]+)">([^<]*)<\/content>/g)]
        .map((m) => [m[1]!, m[2]!.replace(/&#(\d+);/g, (_, n: string) => String.fromCharCode(Number(n)))])
        .reverse();
      return { status: 200, entries };
    };
    const eido = () => received.filter((r) => r.path === '/eido');

    it('one tracked person: Alert, Update, Cancel as JSON over mTLS, each valid and referencing the one before', async () => {
      await publish('gate', 'p1', TrackPhase.TRACK_PHASE_START, ['yard'], 0);
      await publish('gate', 'p1', TrackPhase.TRACK_PHASE_UPDATE, ['yard'], 3000); // dwell 3 s: Alert
      await publish('gate', 'p1', TrackPhase.TRACK_PHASE_ZONE_ENTER, ['yard', 'door'], 1000); // Update
      await publish('gate', 'p1', TrackPhase.TRACK_PHASE_END, [], 1000); // Cancel
      await expect.poll(() => eido().length, { timeout: 30_000 }).toBe(3);
      const got = eido();
      for (const r of got) {
        expect(r.invalid).toBeNull();
        expect(r.client).toBe('vigil-acme');
        expect(r.contentType).toBe('application/json');
      }
      const docs = got.map((r) => r.doc!);
      expect(docs.map((d) => d.messageType)).toEqual(['Alert', 'Update', 'Cancel']);
      expect(docs[0]!.references).toBeNull();
      for (const i of [1, 2])
        expect(docs[i]!.references).toEqual({
          sender: docs[i - 1]!.sender,
          messageId: docs[i - 1]!.messageId,
          sent: docs[i - 1]!.sent,
        });
      expect(new Set(docs.map((d) => d.incident.id)).size).toBe(1);
      expect(docs[0]!.sender).toBe('acme@vigil.test');
      expect(docs[1]!.observation.zones).toEqual(['yard', 'door']);
      expect(docs[2]!.incident).toMatchObject({
        status: 'Closed',
        urgency: 'Past',
        closureReason: 'track ended',
      });
      expect(docs[0]!.location!.polygon).toEqual([
        [48.85, 2.35],
        [48.86, 2.35],
        [48.86, 2.36],
        [48.85, 2.35],
      ]);
      const sent = await messages(`target=${targets.eido!.id}`);
      expect(sent.map((m) => m.state)).toEqual(['delivered', 'delivered', 'delivered']);
      await new Promise((r) => setTimeout(r, 1500));
      expect(eido()).toHaveLength(3); // once each
    });

    it('pull-only targets: the same messages in the Atom feed (CAP valid against the XSD, EIDO against the schema), nothing POSTed', async () => {
      await expect.poll(async () => (await feed('pull-cap')).entries.length, { timeout: 30_000 }).toBe(3);
      await expect.poll(async () => (await feed('pull-eido')).entries.length, { timeout: 30_000 }).toBe(3);
      const cap = (await feed('pull-cap')).entries;
      for (const [type, body] of cap) {
        expect(type).toBe('application/cap+xml');
        expect(readCap(body!).valid).toBeNull();
      }
      expect(cap.map(([, b]) => /<msgType>(\w+)<\/msgType>/.exec(b!)![1])).toEqual([
        'Alert',
        'Update',
        'Cancel',
      ]);
      const json = (await feed('pull-eido')).entries;
      for (const [type, body] of json) {
        expect(type).toBe('application/json');
        expect(validate(JSON.parse(body!)), ajv.errorsText(validate.errors)).toBe(true);
      }
      // The same incident and identifiers as the pushed documents.
      expect(json.map(([, b]) => (JSON.parse(b!) as Doc).messageId)).toEqual(
        eido().map((r) => r.doc!.messageId),
      );
      for (const name of ['pull-cap', 'pull-eido']) {
        const ms = await messages(`target=${targets[name]!.id}`);
        expect(
          ms.every((m) => m.state === 'delivered' && m.answer === 'in the Atom feed (pull-only target)'),
        ).toBe(true);
        expect(ms.every((m) => m.http_status === null)).toBe(true);
      }
      expect(received.every((r) => r.path === '/eido')).toBe(true);
      // The feed token is the credential: another target's token or none is refused.
      expect((await feed('pull-cap', targets['pull-eido']!.feed)).status).toBe(401);
      expect((await fetch(`${api.base()}/public/alerts/feeds/${targets['pull-cap']!.id}`)).status).toBe(401);
    });

    it('target shapes: a pull-only target has no url or auth, a push target needs both', async () => {
      const bad = async (body: Record<string, unknown>, path: string) => {
        const res = await post('/v1/alerts/targets', { name: 'bad', ...body });
        expect(res.status).toBe(400);
        const p = (await res.json()) as { errors?: Array<{ path: string }> };
        expect(JSON.stringify(p)).toContain(path);
      };
      await bad({ delivery: 'pull', url: `${agency.url}/x` }, 'url');
      await bad({ delivery: 'pull', auth: 'signature' }, 'auth');
      await bad({ auth: 'signature' }, 'url');
      await bad({ url: `${agency.url}/x` }, 'auth');
      await bad({ delivery: 'pull', format: 'json' }, 'format');
    });

    it('a document that fails the JSON Schema is a dead letter carrying the validator message, never sent nor in the feed', async () => {
      const before = eido().length;
      await publish('broken', 'p2', TrackPhase.TRACK_PHASE_START, [], 0);
      for (const name of ['eido', 'pull-eido'])
        await expect
          .poll(
            async () =>
              (await messages(`target=${targets[name]!.id}&state=dead`))
                .map((m) => String(m.error))
                .join(' '),
            { timeout: 30_000 },
          )
          .toMatch(
            /^EIDO document fails the JSON Schema: \/incident\/urgency must be equal to one of the allowed values/,
          );
      expect(eido()).toHaveLength(before);
      expect((await feed('pull-eido')).entries).toHaveLength(3);
      const metrics = await (await fetch(`${api.base()}/metrics`)).text();
      expect(metrics).toContain('vigil_cloud_alert_deliveries_total{result="invalid_eido"} 2');
    });
  },
);
