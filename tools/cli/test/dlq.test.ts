import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { connect, headers, nanos, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import * as cloud from '@vigil/cloud';
import { DetectionEvent, TrackPhase } from '@vigil/proto';
import { natsConfig, useNats, usePki } from '@vigil/testkit';
import {
  DEAD_LETTER_STREAM,
  DLQ_HEADERS,
  EVENTS_STREAM,
  iterateDeadLetters,
  REPLAY_HEADER,
  replayAll,
  runCli,
} from '../src/index.js';

const EVENT_ID = '0190f5c2-8a3e-7b1c-9d2e-4f5a6b7c8d9e';
const SUBJECT = 'vigil.v1.acme.gw-1.evt.cam1';

function eventBytes(eventId = EVENT_ID): Uint8Array {
  return DetectionEvent.encode(
    DetectionEvent.fromPartial({
      eventId,
      tenantId: 'acme',
      siteId: 'hq',
      deviceId: 'gw-1',
      cameraId: 'cam1',
      occurredAt: new Date('2026-03-01T10:00:00Z'),
      trackId: 't-1',
      phase: TrackPhase.TRACK_PHASE_START,
      label: 'person',
      score: 0.9,
      snapshot: { $case: 'snapshotInline', value: Buffer.alloc(5000, 1) },
    }),
  ).finish();
}

describe('vigil dlq (against nats-server with JetStream)', () => {
  const pki = usePki({ services: ['cloud'] });
  const nats = useNats({
    config: (ctx) =>
      natsConfig({
        tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
      })(ctx),
  });
  let nc: NatsConnection;
  let js: JetStreamClient;
  let jsm: JetStreamManager;
  const url = (): string => `tls://localhost:${nats().port}`;

  beforeAll(async () => {
    const svc = pki().services.cloud!;
    nc = await connect({
      servers: url(),
      tls: { caFile: pki().caCert, certFile: svc.cert, keyFile: svc.key },
    });
    jsm = await jetstreamManager(nc);
    js = jetstream(nc);
    await jsm.streams.add({
      name: EVENTS_STREAM,
      subjects: ['vigil.v1.*.*.evt.*'],
      duplicate_window: nanos(600_000),
    });
    await jsm.streams.add({ name: DEAD_LETTER_STREAM, subjects: ['vigil.dlq.>'] });
  });
  afterAll(async () => {
    await nc?.close();
  });
  beforeEach(async () => {
    await jsm.streams.purge(DEAD_LETTER_STREAM);
    await jsm.streams.purge(EVENTS_STREAM);
  });

  /** Puts a dead letter the way cloud ingest does; returns its DEAD_LETTER sequence. */
  async function deadLetter(data: Uint8Array, reason: string, subject = SUBJECT): Promise<number> {
    const h = headers();
    h.set(DLQ_HEADERS.reason, reason);
    h.set(DLQ_HEADERS.detail, `why: ${reason}`);
    h.set(DLQ_HEADERS.originalSubject, subject);
    h.set(DLQ_HEADERS.originalStreamSeq, '7');
    h.set(DLQ_HEADERS.failedAt, '2026-03-01T10:00:01.000Z');
    const ack = await js.publish('vigil.dlq.events.acme.gw-1', data, { headers: h });
    return ack.seq;
  }

  async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runCli(['--nats', url(), '--pki', pki().dir, ...args], {
      io: { out: (t) => out.push(t), err: (t) => err.push(t) },
    });
    return { code, out: out.join('\n'), err: err.join('\n') };
  }

  const dlqCount = async (): Promise<number> => (await jsm.streams.info(DEAD_LETTER_STREAM)).state.messages;

  it('lists, shows and replays dead letters; they move to EVENTS with the right msgID', async () => {
    const original = eventBytes();
    const garbage = Uint8Array.from([0xff, 0xfe, 0x00, 0x41, 0x42, 0x43, 0x07]);
    const s1 = await deadLetter(original, 'unknown_device');
    const s2 = await deadLetter(garbage, 'undecodable');

    const listed = [];
    for await (const dl of iterateDeadLetters(js, jsm)) listed.push(dl);
    expect(listed.map((d) => [d.seq, d.reason, d.originalSubject, d.detail])).toEqual([
      [s1, 'unknown_device', SUBJECT, 'why: unknown_device'],
      [s2, 'undecodable', SUBJECT, 'why: undecodable'],
    ]);

    const table = await cli('dlq', 'list');
    expect(table.code).toBe(0);
    expect(table.out.split('\n')[0]).toMatch(/^SEQ\s+FAILED AT\s+REASON\s+ORIGINAL SUBJECT\s+DETAIL$/);
    expect(table.out).toContain(
      `${s2}    2026-03-01T10:00:01.000Z  undecodable     ${SUBJECT}  why: undecodable`,
    );
    const json = await cli('dlq', 'list', '--json', '--limit', '1');
    expect(json.out.split('\n').map((l) => JSON.parse(l) as unknown)).toEqual([
      expect.objectContaining({
        seq: s1,
        reason: 'unknown_device',
        original_subject: SUBJECT,
        size_bytes: original.length,
      }),
    ]);

    const shown = await cli('dlq', 'show', String(s1));
    expect(shown.code).toBe(0);
    expect(shown.out).toContain(`Vigil-Dlq-Reason: unknown_device`);
    expect(shown.out).toContain('decoded DetectionEvent:');
    expect(shown.out).toContain(`"eventId": "${EVENT_ID}"`);
    expect(shown.out).toContain('"snapshotInline": "<5000 bytes of JPEG>"');
    const hex = await cli('dlq', 'show', String(s2));
    expect(hex.out).toContain('does not decode as a DetectionEvent');
    expect(hex.out).toContain('00000000  ff fe 00 41 42 43 07');
    expect(hex.out).toContain('|...ABC.|');

    const dry = await cli('dlq', 'replay', '--all', '--dry-run');
    expect(dry.code).toBe(0);
    expect(dry.out).toContain(`seq ${s1}: would-replay -> ${SUBJECT} (msgID replay-${s1}-${EVENT_ID})`);
    expect(await dlqCount()).toBe(2);

    const one = await cli('dlq', 'replay', String(s1));
    expect(one.code).toBe(0);
    expect(one.out).toMatch(
      new RegExp(
        `^seq ${s1}: replayed -> ${SUBJECT.replace(/\./g, '\\.')} \\(msgID replay-${s1}-${EVENT_ID}, EVENTS seq 1\\)`,
      ),
    );
    const rest = await cli('--json', 'dlq', 'replay', '--all', '--reason', 'undecodable');
    expect(JSON.parse(rest.out)).toMatchObject({
      seq: s2,
      status: 'replayed',
      msgID: `replay-${s2}`,
      streamSeq: 2,
    });
    expect(rest.err).toBe('1 replayed');

    expect(await dlqCount()).toBe(0);
    const first = (await jsm.streams.getMessage(EVENTS_STREAM, { seq: 1 }))!;
    expect(first.subject).toBe(SUBJECT);
    expect(Buffer.from(first.data).equals(Buffer.from(original))).toBe(true);
    expect(first.header.get('Nats-Msg-Id')).toBe(`replay-${s1}-${EVENT_ID}`);
    expect(first.header.get(REPLAY_HEADER)).toBe(String(s1));
    const second = (await jsm.streams.getMessage(EVENTS_STREAM, { seq: 2 }))!;
    expect(Buffer.from(second.data).equals(Buffer.from(garbage))).toBe(true);
    expect(second.header.get('Nats-Msg-Id')).toBe(`replay-${s2}`);
  });

  it('replays an event whose id EVENTS still remembers from the original publish', async () => {
    // Right after a poison message EVENTS remembers its id (the duplicate window outlives the consumed message).
    const id = '0190f5c2-8a3e-7b1c-9d2e-000000000002';
    await js.publish(SUBJECT, eventBytes(id), { msgID: id });
    await jsm.streams.purge(EVENTS_STREAM);
    const seq = await deadLetter(eventBytes(id), 'db_rejected');
    const res = await cli('dlq', 'replay', String(seq));
    expect(res.code).toBe(0);
    expect(res.out).toContain(`seq ${seq}: replayed`);
    expect(await dlqCount()).toBe(0);
    expect((await jsm.streams.info(EVENTS_STREAM)).state.messages).toBe(1);
  });

  it('finishes its own earlier replay (crash between publish and delete)', async () => {
    const id = '0190f5c2-8a3e-7b1c-9d2e-000000000003';
    const seq = await deadLetter(eventBytes(id), 'db_rejected');
    const h = headers();
    h.set(REPLAY_HEADER, String(seq));
    await js.publish(SUBJECT, eventBytes(id), { msgID: `replay-${seq}-${id}`, headers: h });
    const counts = await replayAll(js, jsm);
    expect(counts).toMatchObject({ replayed: 1, kept: 0, failed: 0 });
    expect(await dlqCount()).toBe(0);
    expect((await jsm.streams.info(EVENTS_STREAM)).state.messages).toBe(1);
  });

  it('refuses to replay to anything but a device event subject, and reports missing sequences', async () => {
    const seq = await deadLetter(eventBytes(), 'mismatch', 'vigil.v1.acme.gw-1.hb');
    const res = await cli('dlq', 'replay', String(seq), '999');
    expect(res.code).toBe(1);
    expect(res.out).toContain(
      `seq ${seq}: failed: Vigil-Original-Subject "vigil.v1.acme.gw-1.hb" is not a device event subject`,
    );
    expect(res.out).toContain('seq 999: not-found: no message 999 in DEAD_LETTER');
    expect(res.err).toBe('1 failed, 1 not-found');
    expect(await dlqCount()).toBe(1);
    expect((await jsm.streams.info(EVENTS_STREAM)).state.messages).toBe(0);
  });

  it('a PubAck that a device aimed into DEAD_LETTER (no headers) is listed and never replayed (issue 12)', async () => {
    // JetStream sends a device's PubAck to any reply subject it names, vigil.dlq.> included.
    const ack = await js.publish(
      'vigil.dlq.events.globex.gw-g',
      JSON.stringify({ stream: 'EVENTS', seq: 7 }),
    );
    const listed = await cli('dlq', 'list', '--json');
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.out) as unknown).toMatchObject({
      seq: ack.seq,
      reason: '',
      original_subject: '',
    });
    for (const args of [[String(ack.seq)], ['--all']]) {
      const res = await cli('dlq', 'replay', ...args);
      expect(res.code).toBe(1);
      expect(res.out).toContain(
        `seq ${ack.seq}: failed: Vigil-Original-Subject "" is not a device event subject`,
      );
    }
    expect(await dlqCount()).toBe(1);
    expect((await jsm.streams.info(EVENTS_STREAM)).state.messages).toBe(0);
  });

  it('reads the dead-letter format that cloud ingest writes', () => {
    expect(DLQ_HEADERS).toEqual(cloud.DLQ_HEADERS);
    expect([DEAD_LETTER_STREAM, EVENTS_STREAM]).toEqual([cloud.DEAD_LETTER_STREAM, cloud.EVENTS_STREAM]);
  });

  it('says so when the queue is empty, and checks its arguments', async () => {
    expect(await cli('dlq', 'list')).toMatchObject({ code: 0, out: '', err: 'DEAD_LETTER is empty' });
    expect(await cli('dlq', 'replay', '--all')).toMatchObject({ code: 0, err: 'nothing to replay' });
    expect((await cli('dlq', 'replay')).code).toBe(2);
    expect((await cli('dlq', 'replay', '1', '--all')).code).toBe(2);
    expect((await cli('dlq', 'replay', '1', '--reason', 'x')).code).toBe(2);
    expect((await cli('dlq', 'show', 'abc')).code).toBe(2);
    const missing = await cli('dlq', 'show', '12345');
    expect(missing).toMatchObject({ code: 1, err: 'vigil: no message 12345 in DEAD_LETTER' });
  });
});
