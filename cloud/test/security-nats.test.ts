// The NATS security suite (issue 12): the real stack in JWT mode with mutual TLS (nats-server, the cloud,
// PostgreSQL), attacked by ONE enrolled gateway holding its own certificate, NATS key and JWT. Every subject
// the cloud serves gets requests with hostile reply subjects, malformed and oversized payloads and identity
// claims that disagree with the registry. Independent observers prove nothing happened: a separate service
// connection (stream state, JetStream API advisories, everything on `vigil.>`), victim devices of the same
// and of another tenant (their subscriptions receive nothing) and PostgreSQL. Ends with `tried=N refused=N`.
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, jetstreamManager, type JetStreamManager, type StoredMsg } from '@nats-io/jetstream';
import { createUser, type KeyPair } from '@nats-io/nkeys';
import {
  connect,
  jwtAuthenticator,
  type Msg,
  type NatsConnection,
  type Status,
} from '@nats-io/transport-node';
import { sql, type RawBuilder } from 'kysely';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  CommitReceipt,
  ConfigStatus,
  DetectionEvent,
  Heartbeat,
  MediaObject,
  ReceiptQuery,
  subjectFor,
  type EnrollRequest,
  type EnrollResponse,
} from '@vigil/proto';
import { DEAD_LETTER_STREAM, DLQ_HEADERS } from '../src/index.js';
import { deviceInboxPrefix, issueServiceUser } from '../src/fleet/nats-auth.js';
import { useFleetStack } from './support/fleet-stack.js';
import { makeEvent, uuidv7, type TestDevice } from './support/ingest-stack.js';
import { makeMedia } from './support/media.js';

const tmp = mkdtempSync(join(tmpdir(), 'vigil-security-nats-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const tally = { tried: 0, refused: 0, failed: [] as string[], open: [] as string[] };
/**
 * Counts one hostile input; `check` throws unless it was refused. A failure is recorded and the next input
 * is tried (so one run shows every hole); each test ends with {@link noneFailedSince}.
 */
async function attempt(name: string, check: () => Promise<void>): Promise<void> {
  tally.tried++;
  try {
    await check();
    tally.refused++;
  } catch (err) {
    tally.failed.push(`${name}: ${(err as Error).message}`);
  }
}
/** Asserts that no input since `mark` (a tally.failed length) was let through. */
function noneFailedSince(mark: number): void {
  expect(tally.failed.slice(mark), 'hostile inputs NOT refused').toEqual([]);
}

interface Gateway {
  dev: TestDevice;
  res: EnrollResponse;
  nc: NatsConnection;
  statuses: Status[];
}

const EVIL_ID = 'gw-evil';
const CANARY_STREAM = 'SECURITY_CANARY';

describe('NATS security suite: one enrolled gateway against the cloud', () => {
  const stack = useFleetStack();
  let mark = 0;
  beforeEach(() => {
    mark = tally.failed.length;
  });
  afterEach(() => noneFailedSince(mark));
  const open: NatsConnection[] = [];
  afterAll(async () => {
    for (const nc of open) await nc.close().catch(() => undefined);
    const open_ = tally.open.length ? ` open=${tally.open.length} (${tally.open.join('; ')})` : '';
    const bad = tally.failed.length ? `; NOT refused: ${tally.failed.join(', ')}` : '';
    console.log(`[security-nats] NATS surface: tried=${tally.tried} refused=${tally.refused}${open_}${bad}`);
  });

  function makeCsr(tenantId: string, deviceId: string): { csrPem: string; keyPem: string } {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const keyFile = join(tmp, `k-${tenantId}-${deviceId}.pem`);
    writeFileSync(keyFile, keyPem, { mode: 0o600 });
    const csrPem = execFileSync('openssl', ['req', '-new', '-key', keyFile, '-subj', `/CN=${deviceId}`], {
      encoding: 'utf8',
    });
    return { csrPem, keyPem };
  }

  /** Enrolls like a real gateway (gRPC, one-time token) and connects with what it got. */
  async function gateway(tenantId: string, siteId: string, deviceId: string): Promise<Gateway> {
    const token = await stack.enrollmentToken(tenantId, siteId);
    const nkey: KeyPair = createUser();
    const { csrPem, keyPem } = makeCsr(tenantId, deviceId);
    const req: EnrollRequest = {
      token,
      csrPem,
      agentVersion: '0.1.0',
      hardwareId: `hw-${tenantId}-${deviceId}`,
      natsPublicKey: nkey.getPublicKey(),
    };
    const res = await new Promise<EnrollResponse>((resolve, reject) =>
      stack.client().enroll(req, (err, v) => (err ? reject(err) : resolve(v))),
    );
    expect(res).toMatchObject({ tenantId, deviceId });
    const certFile = join(tmp, `${tenantId}-${deviceId}.crt`);
    writeFileSync(certFile, res.certificatePem);
    writeFileSync(`${certFile}.key`, keyPem, { mode: 0o600 });
    const nc = await connect({
      servers: [stack.natsUrl()],
      tls: { caFile: stack.pki().caCert, certFile, keyFile: `${certFile}.key` },
      authenticator: jwtAuthenticator(res.natsUserJwt, nkey.getSeed()),
      inboxPrefix: deviceInboxPrefix(tenantId, deviceId),
      name: `${tenantId}/${deviceId}`,
      reconnect: false,
      timeout: 10_000,
    });
    open.push(nc);
    const statuses: Status[] = [];
    void (async () => {
      for await (const s of nc.status()) statuses.push(s);
    })();
    return { dev: { tenantId, siteId, deviceId }, res, nc, statuses };
  }

  let evil: Gateway; // the attacker: acme/gw-evil at site hq
  let peer: Gateway; // a victim of the same tenant and site
  let foreign: Gateway; // a victim of another tenant
  let admin: NatsConnection; // the observer: a cloud service user of its own
  let jsm: JetStreamManager;
  let streams: string[];
  let victimEventId: string;
  const heard: string[] = []; // everything on vigil.> not on the attacker's own subjects
  const advisories: Array<{ subject: string; request: string }> = [];
  const victimInbox: string[] = []; // everything the victim devices receive

  beforeAll(async () => {
    [evil, peer, foreign] = [
      await gateway('acme', 'hq', EVIL_ID),
      await gateway('acme', 'hq', 'gw-peer'),
      await gateway('globex', 'plant', 'gw-g'),
    ];
    const kp = createUser();
    const jwt = await issueServiceUser(stack.authority().authority, {
      name: 'security-observer',
      userPublicKey: kp.getPublicKey(),
    });
    const svc = stack.pki().services.cloud!;
    admin = await connect({
      servers: [stack.natsUrl()],
      tls: { caFile: stack.pki().caCert, certFile: svc.cert, keyFile: svc.key },
      authenticator: jwtAuthenticator(jwt, kp.getSeed()),
      name: 'security-observer',
    });
    open.push(admin);
    jsm = await jetstreamManager(admin);
    // A canary stream with messages: a purge or delete of any stream would show here too.
    await jsm.streams.add({ name: CANARY_STREAM, subjects: ['vigil.canary.>'] });
    for (let i = 0; i < 3; i++) await jetstream(admin).publish(`vigil.canary.${i}`, `canary-${i}`);
    await jetstream(admin).publish('vigil.dlq.canary.x', 'a canary dead letter');
    streams = [];
    for await (const name of jsm.streams.names()) streams.push(name);
    expect(streams).toEqual(
      expect.arrayContaining(['EVENTS', 'DEAD_LETTER', 'TELEMETRY', 'MEDIA', CANARY_STREAM]),
    );

    // A committed event of the peer (the attacker will ask about it).
    const ev = makeEvent(peer.dev);
    victimEventId = ev.eventId;
    await jetstream(peer.nc).publish(
      subjectFor('acme', 'gw-peer', 'evt', 'cam1'),
      DetectionEvent.encode(ev).finish(),
      { msgID: ev.eventId },
    );
    await until(
      'the peer event committed',
      async () => (await eventCount(sql`device_id = 'gw-peer'`)) === 1,
      20_000,
    );

    // Observers from here on.
    const mine = `vigil.v1.acme.${EVIL_ID}.`;
    admin.subscribe('vigil.>', {
      callback: (_e, m) => void (m.subject.startsWith(mine) || heard.push(m.subject)),
    });
    admin.subscribe('$JS.EVENT.ADVISORY.API', {
      callback: (_e, m) => {
        const a = m.json<{ subject?: string; request?: string }>();
        advisories.push({ subject: a.subject ?? '', request: a.request ?? '' });
      },
    });
    for (const v of [peer, foreign]) {
      const { tenantId: t, deviceId: d } = v.dev;
      for (const s of [subjectFor(t, d, 'cfg'), subjectFor(t, d, 'rcpt'), `${deviceInboxPrefix(t, d)}.>`])
        v.nc.subscribe(s, { callback: (_e, m) => void victimInbox.push(`${t}/${d} got ${m.subject}`) });
      await v.nc.flush();
    }
    await admin.flush();
  });

  async function eventCount(where: RawBuilder<unknown>): Promise<number> {
    const r = await sql<{ n: string }>`select count(*)::text as n from events where ${where}`.execute(
      stack.cloud().db,
    );
    return Number(r.rows[0]!.n);
  }

  async function metric(name: string, labels: string): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${stack.cloud().httpPort}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
    return line ? Number(line.split(' ').pop()) : 0;
  }

  /** Stream names and, per stream, messages and first/last sequence: a purge or delete changes these. */
  async function streamState(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for await (const info of jsm.streams.list()) {
      const s = info.state;
      out[info.config.name] = `${s.messages} msgs, seq ${s.first_seq}..${s.last_seq}`;
    }
    return out;
  }

  /** Rows that nothing the attacker sends may change (its own device's rows excluded). */
  async function dbState(): Promise<Record<string, unknown>> {
    const db = stack.cloud().db;
    const q = async (query: RawBuilder<unknown>): Promise<unknown> => (await query.execute(db)).rows;
    return {
      events: await q(
        sql`select tenant_id, site_id, device_id, count(*)::int as n from events group by 1, 2, 3 order by 1, 2, 3`,
      ),
      media: await q(sql`select count(*)::int as n from media`),
      configState: await q(
        sql`select tenant_id, device_id, reported_at::text from device_config_state where device_id <> ${EVIL_ID} order by 1, 2`,
      ),
      devices: await q(
        sql`select tenant_id, id, site_id, agent_version, last_seen_at::text, revoked_at::text from devices where id <> ${EVIL_ID} order by 1, 2`,
      ),
    };
  }

  /** Waits until a condition holds (never a fixed sleep). */
  async function until(what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 5_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!(await fn())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  const hostileReplies = (): string[] => {
    const acct = stack.authority().authority.account.publicKey;
    return [
      ...streams.flatMap((s) => [
        `$JS.API.STREAM.DELETE.${s}`,
        `$JS.API.STREAM.PURGE.${s}`,
        `$JS.API.STREAM.MSG.DELETE.${s}`,
      ]),
      '$JS.API.CONSUMER.DELETE.EVENTS.ingest',
      '$JS.API.CONSUMER.MSG.NEXT.EVENTS.ingest',
      '$JS.API.STREAM.CREATE.HOSTILE',
      '$KV.config.x',
      '$SYS.REQ.SERVER.PING',
      `$SYS.REQ.ACCOUNT.${acct}.CLAIMS.UPDATE`,
      'vigil.v1.acme.gw-peer.cfg',
      'vigil.v1.acme.gw-peer.rcpt',
      'vigil.v1.globex.gw-g.cfg',
      'vigil.v1.globex.gw-g.rcpt',
      'vigil.v1.globex.gw-g.evt.cam1',
      `${deviceInboxPrefix('acme', 'gw-peer')}.x`,
      `${deviceInboxPrefix('globex', 'gw-g')}.x`,
      '_INBOX_acme.gw-peer.x',
      'vigil.internal.v1.committed.acme',
      'vigil.internal.v1.committed.globex',
      'vigil.dlq.events.globex.gw-g',
      'vigil.jobs.webhook.x',
      '_INBOX.x',
    ];
  };

  describe('requests with hostile reply subjects (the confused deputy)', () => {
    let before: { streams: Record<string, string>; db: Record<string, unknown> };
    beforeAll(async () => {
      before = { streams: await streamState(), db: await dbState() };
      advisories.length = 0;
    });

    const kinds = [
      {
        kind: 'status' as const,
        responder: 'config_status',
        payload: (): Uint8Array =>
          ConfigStatus.encode(
            ConfigStatus.fromPartial({ tenantId: 'acme', deviceId: EVIL_ID, reportedAt: new Date() }),
          ).finish(),
      },
      {
        kind: 'rcpt' as const,
        responder: 'receipt_query',
        payload: (): Uint8Array =>
          ReceiptQuery.encode(
            ReceiptQuery.fromPartial({ tenantId: 'acme', deviceId: EVIL_ID, eventIds: [victimEventId] }),
          ).finish(),
      },
    ];
    for (const k of kinds) {
      it(`${k.kind}: the cloud answers no reply subject but the requesting device's own inbox`, async () => {
        const subject = subjectFor('acme', EVIL_ID, k.kind);
        const labels = `responder="${k.responder}",reason="foreign_reply"`;
        for (const reply of hostileReplies()) {
          await attempt(`${k.kind} reply=${reply}`, async () => {
            const n = await metric('vigil_cloud_device_replies_refused_total', labels);
            evil.nc.publish(subject, k.payload(), { reply });
            await evil.nc.flush();
            await until(`the cloud to refuse reply ${reply}`, async () => {
              return (await metric('vigil_cloud_device_replies_refused_total', labels)) === n + 1;
            });
          });
        }
        // Its own inbox is answered (the responder works; a receipt names only what the attacker may know).
        const answer = await evil.nc.request(subject, k.payload(), { timeout: 5_000 });
        if (k.kind === 'rcpt') {
          const r = CommitReceipt.decode(answer.data);
          expect(r).toMatchObject({ tenantId: 'acme', deviceId: EVIL_ID, eventIds: [] });
        }
      });
    }

    it("a reply into the ingest consumer's $JS.ACK space is refused by the server itself", async () => {
      const reply = '$JS.ACK.EVENTS.ingest.1.1.1.1700000000000000000.0';
      await attempt(`status reply=${reply}`, async () => {
        evil.nc.publish(subjectFor('acme', EVIL_ID, 'status'), new Uint8Array(0), { reply });
        await evil.nc.flush();
        await until('the server to refuse the reserved reply', () =>
          evil.statuses.some((s) => s.type === 'error' && String(s.error).includes('$JS.ACK')),
        );
      });
    });

    it('observers: no stream changed, no JetStream API call, no victim message, no row changed', async () => {
      // Let anything in flight arrive before looking (a flush round trip through the cloud's responders).
      await evil.nc.request(subjectFor('acme', EVIL_ID, 'status'), new Uint8Array(0), { timeout: 5_000 });
      await admin.flush();
      expect(await streamState()).toEqual(before.streams);
      const hostile = new Set(hostileReplies());
      expect(advisories.filter((a) => hostile.has(a.subject))).toEqual([]);
      expect(victimInbox).toEqual([]);
      expect(heard).toEqual([]);
      expect(await dbState()).toEqual(before.db);
      expect(evil.nc.isClosed()).toBe(false);

      // The observers are alive: each sees a probe of its own kind (so the empty lists above mean something).
      await jsm.streams.info(CANARY_STREAM);
      await until('the API advisory of a probe', () =>
        advisories.some((a) => a.subject === `$JS.API.STREAM.INFO.${CANARY_STREAM}`),
      );
      admin.publish('vigil.probe.observer', 'probe');
      await until('the vigil.> observer to hear a probe', () => heard.includes('vigil.probe.observer'));
      admin.publish(subjectFor('acme', 'gw-peer', 'cfg'), 'probe');
      admin.publish(subjectFor('globex', 'gw-g', 'rcpt'), 'probe');
      await until('both victims to get a probe', () => victimInbox.length === 2);
      heard.length = 0;
      victimInbox.length = 0;
    });
  });

  describe('malformed, oversized and lying payloads', () => {
    const status = subjectFor('acme', EVIL_ID, 'status');
    const rcpt = subjectFor('acme', EVIL_ID, 'rcpt');
    const evil_ = (): TestDevice => evil.dev;

    async function answered(subject: string, data: Uint8Array): Promise<Msg> {
      return evil.nc.request(subject, data, { timeout: 5_000 });
    }
    async function counted(name: string, labels: string, send: () => Promise<void>): Promise<void> {
      const n = await metric(name, labels);
      await send();
      await until(`${name}{${labels}} to count it`, async () => (await metric(name, labels)) === n + 1);
    }

    it('config status: no reply, garbage, oversized, or naming another device: an empty answer at most, nothing recorded', async () => {
      const before = await dbState();
      const cases: Array<[string, Uint8Array, string]> = [
        ['garbage', Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]), 'invalid'],
        ['900 kB of noise', Buffer.alloc(900 * 1024, 0xff), 'invalid'],
        [
          'names globex/gw-g',
          ConfigStatus.encode(ConfigStatus.fromPartial({ tenantId: 'globex', deviceId: 'gw-g' })).finish(),
          'mismatch',
        ],
        [
          'names acme/gw-peer',
          ConfigStatus.encode(ConfigStatus.fromPartial({ tenantId: 'acme', deviceId: 'gw-peer' })).finish(),
          'mismatch',
        ],
      ];
      await attempt('status without a reply subject', () =>
        counted(
          'vigil_cloud_device_replies_refused_total',
          'responder="config_status",reason="no_reply"',
          async () => {
            evil.nc.publish(status, ConfigStatus.encode(ConfigStatus.fromPartial({})).finish());
            await evil.nc.flush();
          },
        ),
      );
      for (const [name, data, result] of cases)
        await attempt(`status ${name}`, () =>
          counted('vigil_cloud_config_status_total', `result="${result}"`, async () => {
            expect((await answered(status, data)).data.length).toBe(0);
          }),
        );
      expect(await dbState()).toEqual(before);
    });

    it("receipt queries: garbage, too many ids, another device's name or ids learn nothing", async () => {
      const q = (p: Partial<ReceiptQuery>): Uint8Array =>
        ReceiptQuery.encode(ReceiptQuery.fromPartial({ tenantId: 'acme', deviceId: EVIL_ID, ...p })).finish();
      const cases: Array<[string, Uint8Array, string]> = [
        ['garbage', Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]), 'invalid'],
        ['1001 ids', q({ eventIds: Array.from({ length: 1001 }, () => uuidv7()) }), 'too_large'],
        ['names acme/gw-peer', q({ deviceId: 'gw-peer', eventIds: [victimEventId] }), 'mismatch'],
        ['names globex/gw-g', q({ tenantId: 'globex', deviceId: 'gw-g' }), 'mismatch'],
        ["asks for gw-peer's committed event", q({ eventIds: [victimEventId] }), 'answered'],
      ];
      for (const [name, data, result] of cases)
        await attempt(`rcpt ${name}`, () =>
          counted('vigil_cloud_ingest_receipt_queries_total', `result="${result}"`, async () => {
            const r = CommitReceipt.decode((await answered(rcpt, data)).data);
            expect(r).toMatchObject({ tenantId: 'acme', deviceId: EVIL_ID, eventIds: [] });
          }),
        );
    });

    /** The dead letter of EVENTS or MEDIA message `seq` (by its original stream sequence). */
    async function deadLetter(source: 'events' | 'media', seq: number): Promise<StoredMsg> {
      let found: StoredMsg | undefined;
      await until(
        `a dead letter for ${source} seq ${seq}`,
        async () => {
          const { state } = await jsm.streams.info(DEAD_LETTER_STREAM);
          for (let s = state.last_seq; s >= state.first_seq && s > 0; s--) {
            const m = await jsm.streams.getMessage(DEAD_LETTER_STREAM, { seq: s }).catch(() => null);
            if (
              m?.subject === `vigil.dlq.${source}.acme.${EVIL_ID}` &&
              Number(m.header.get(DLQ_HEADERS.originalStreamSeq)) === seq
            ) {
              found = m;
              return true;
            }
          }
          return false;
        },
        20_000,
      );
      return found!;
    }

    it('events and snapshots naming another tenant, device or site are dead-lettered, never stored', async () => {
      const before = await dbState();
      const js = jetstream(evil.nc);
      const other = (p: Partial<TestDevice>): TestDevice => ({ ...evil_(), ...p });
      const evt = subjectFor('acme', EVIL_ID, 'evt', 'cam1');
      const media = subjectFor('acme', EVIL_ID, 'media', 'cam1');
      const events: Array<[string, Uint8Array, string]> = [
        ['undecodable', Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]), 'undecodable'],
        [
          'naming tenant globex',
          DetectionEvent.encode(makeEvent(other({ tenantId: 'globex' }))).finish(),
          'subject_mismatch',
        ],
        [
          'naming device gw-peer',
          DetectionEvent.encode(makeEvent(other({ deviceId: 'gw-peer' }))).finish(),
          'subject_mismatch',
        ],
        [
          'naming site plant',
          DetectionEvent.encode(makeEvent(other({ siteId: 'plant' }))).finish(),
          'site_mismatch',
        ],
      ];
      for (const [name, data, reason] of events)
        await attempt(`event ${name}`, async () => {
          const ack = await js.publish(evt, data, { msgID: `hostile-${name}` });
          expect((await deadLetter('events', ack.seq)).header.get(DLQ_HEADERS.reason)).toBe(reason);
        });
      await attempt('event over EVENTS max message size (1.5 MiB)', async () => {
        const refused = await js.publish(evt, Buffer.alloc(1536 * 1024, 0x41), { msgID: 'hostile-big' }).then(
          () => 'stored',
          (e: Error) => e.message,
        );
        expect(refused).toMatch(/maximum|too large|size/i);
      });
      const snapshots: Array<[string, MediaObject, string]> = [
        ['naming site plant', makeMedia(other({ siteId: 'plant' })), 'site_mismatch'],
        ['naming device gw-peer', makeMedia(other({ deviceId: 'gw-peer' })), 'subject_mismatch'],
        ['naming tenant globex', makeMedia(other({ tenantId: 'globex' })), 'subject_mismatch'],
      ];
      for (const [name, m, reason] of snapshots)
        await attempt(`snapshot ${name}`, async () => {
          const ack = await js.publish(media, MediaObject.encode(m).finish(), { msgID: m.mediaId });
          expect((await deadLetter('media', ack.seq)).header.get(DLQ_HEADERS.reason)).toBe(reason);
        });
      expect(await dbState()).toEqual(before);
    });

    it("a heartbeat naming another device changes nothing of that device's", async () => {
      const before = await dbState();
      await attempt('heartbeat naming gw-peer', () =>
        counted('vigil_cloud_heartbeats_total', 'result="mismatch"', async () => {
          const hb = Heartbeat.fromPartial({
            tenantId: 'acme',
            deviceId: 'gw-peer',
            agentVersion: '6.6.6',
            sentAt: new Date(),
          });
          evil.nc.publish(subjectFor('acme', EVIL_ID, 'hb'), Heartbeat.encode(hb).finish());
          await evil.nc.flush();
        }),
      );
      expect(await dbState()).toEqual(before);
    });

    it("publishing on another device's or tenant's subjects is refused by the server", async () => {
      for (const subject of [
        'vigil.v1.acme.gw-peer.cfg',
        'vigil.v1.acme.gw-peer.evt.cam1',
        'vigil.v1.globex.gw-g.rcpt',
        'vigil.internal.v1.committed.acme',
        `${deviceInboxPrefix('acme', 'gw-peer')}.x`,
      ])
        await attempt(`publish on ${subject}`, async () => {
          evil.nc.publish(subject, 'forged');
          await evil.nc.flush();
          await until(`a violation for ${subject}`, () =>
            evil.statuses.some((s) => s.type === 'error' && String(s.error).includes(`"${subject}"`)),
          );
        });
      expect(victimInbox).toEqual([]);
    });
  });

  describe('JetStream PubAcks go to the reply subject the publisher names', () => {
    const purge = `$JS.API.STREAM.PURGE.${CANARY_STREAM}`;
    const canary = async (): Promise<number> => (await jsm.streams.info(CANARY_STREAM)).state.messages;

    it('heartbeats: TELEMETRY sends no PubAck (no_ack), so a hostile reply goes nowhere', async () => {
      await attempt(`heartbeat with reply=${purge}`, async () => {
        const n = await metric('vigil_cloud_heartbeats_total', 'result="ok"');
        const hb = Heartbeat.fromPartial({ tenantId: 'acme', deviceId: EVIL_ID, sentAt: new Date() });
        evil.nc.publish(subjectFor('acme', EVIL_ID, 'hb'), Heartbeat.encode(hb).finish(), { reply: purge });
        await evil.nc.flush();
        // Processed (stored and consumed) and still the canary is whole.
        await until('the heartbeat to be recorded', async () => {
          return (await metric('vigil_cloud_heartbeats_total', 'result="ok"')) > n;
        });
        await admin.flush();
        expect(await canary()).toBe(3);
      });
    });

    it('KNOWN OPEN (issue 12): an event publish makes EVENTS send its PubAck to any subject, e.g. a purge', async () => {
      // Not closed by this change: EVENTS and MEDIA must ack devices (the agent's flow control), and
      // nats-server has no permission on reply subjects. The PubAck {"stream","seq"} is a valid purge
      // request ("up to seq"): proved here on the canary stream. See the report / README for the fix
      // (devices publish through a cloud relay, or no_ack with receipts as the only acknowledgement).
      expect(await canary()).toBe(3);
      const ev = makeEvent(evil.dev);
      evil.nc.publish(subjectFor('acme', EVIL_ID, 'evt', 'cam1'), DetectionEvent.encode(ev).finish(), {
        reply: purge,
      });
      await evil.nc.flush();
      await until('the PubAck-driven purge', async () => (await canary()) === 0, 10_000);
      tally.open.push(`event PubAck to ${purge} purged ${CANARY_STREAM}`);
    });
  });
});
