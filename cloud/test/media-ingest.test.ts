import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import type { StoredMsg } from '@nats-io/jetstream';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { MediaObject, subjectFor } from '@vigil/proto';
import { useDatabase } from '@vigil/testkit';
import { DEAD_LETTER_STREAM, DLQ_HEADERS } from '../src/index.js';
import { MEDIA_CONSUMER, MEDIA_STREAM } from '../src/ingest/streams.js';
import { mediaKeyFor } from '../src/media/store.js';
import {
  useIngestStack,
  uuidv7,
  type DeviceLink,
  type IngestStack,
  type TestDevice,
} from './support/ingest-stack.js';
import { makeMedia, sha256Hex, TINY_JPEG, withData } from './support/media.js';

const gw1: TestDevice = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' };
const gw2: TestDevice = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-2' };
const stranger: TestDevice = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-9' };
const MAX_OBJECT = 64 * 1024;
const DAY = 86_400_000;

const enc = (m: MediaObject): Uint8Array => MediaObject.encode(m).finish();
const mediaSubject = (d: TestDevice, camera = 'cam1'): string =>
  subjectFor(d.tenantId, d.deviceId, 'media', camera);
const send = (link: DeviceLink, d: TestDevice, m: MediaObject, msgID = m.mediaId) =>
  link.publishRaw(mediaSubject(d, m.cameraId || 'cam1'), enc(m), msgID);

/** Every file under `root`, as store keys. */
function files(root: string): string[] {
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(root, join(e.parentPath, e.name)))
    .sort();
}

async function mediaRows(stack: IngestStack) {
  return stack.cloud().db.selectFrom('media').selectAll().orderBy('stored_at').execute();
}

/** Waits until MEDIA holds nothing (work queue: everything acked) and nothing is pending on the consumer. */
async function drained(stack: IngestStack): Promise<void> {
  const jsm = stack.jsm();
  await expect
    .poll(
      async () => {
        const info = await jsm.consumers.info(MEDIA_STREAM, MEDIA_CONSUMER);
        return (
          (await jsm.streams.info(MEDIA_STREAM)).state.messages + info.num_ack_pending + info.num_pending
        );
      },
      { timeout: 15_000 },
    )
    .toBe(0);
}

/** The media dead letters, by original MEDIA stream sequence. */
async function mediaLetters(stack: IngestStack): Promise<Map<number, StoredMsg>> {
  const jsm = stack.jsm();
  const { state } = await jsm.streams.info(DEAD_LETTER_STREAM);
  const out = new Map<number, StoredMsg>();
  for (let seq = state.first_seq; seq <= state.last_seq && state.messages > 0; seq++) {
    const m = await jsm.streams.getMessage(DEAD_LETTER_STREAM, { seq }).catch(() => null);
    if (m?.subject.startsWith('vigil.dlq.media.'))
      out.set(Number(m.header.get(DLQ_HEADERS.originalStreamSeq)), m);
  }
  return out;
}

describe('media ingest with a MediaStore', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-media-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const stack = useIngestStack({
    devices: [gw1, gw2, stranger],
    registered: [gw1, gw2],
    databaseUrl: useDatabase(),
    config: { media: { dir, maxObjectBytes: MAX_OBJECT } },
  });
  const metric = (result: string) => stack.metric('vigil_cloud_media_received_total', `{result="${result}"}`);

  it('stores a valid object: one row with every column right and a file with the sent bytes', async () => {
    const link = await stack.device(gw1);
    const before = Date.now();
    const m = makeMedia(gw1);
    expect((await send(link, gw1, m)).duplicate).toBe(false);
    await expect.poll(async () => (await mediaRows(stack)).length, { timeout: 15_000 }).toBe(1);
    const [row] = await mediaRows(stack);
    const key = mediaKeyFor({
      tenantId: 'acme',
      mediaId: m.mediaId,
      capturedAt: m.capturedAt!,
      contentType: 'image/jpeg',
      sha256: m.sha256,
    });
    expect(row).toMatchObject({
      tenant_id: 'acme',
      media_id: m.mediaId,
      site_id: 'hq',
      device_id: 'gw-1',
      camera_id: 'cam1',
      event_id: m.eventId,
      content_type: 'image/jpeg',
      sha256: sha256Hex(TINY_JPEG),
      size_bytes: TINY_JPEG.length,
      redacted: true,
      captured_at: m.capturedAt,
      storage_key: key,
      deleted_at: null,
      deleted_reason: null,
    });
    expect(row!.stored_at.getTime()).toBeGreaterThanOrEqual(before - 1000);
    expect(row!.stored_at.getTime()).toBeLessThanOrEqual(Date.now());
    expect(readFileSync(join(dir, key)).equals(TINY_JPEG)).toBe(true);
    await drained(stack);
    expect(await metric('ok')).toBe(1);
    expect(await stack.metric('vigil_cloud_media_stored_bytes_total')).toBe(TINY_JPEG.length);
    expect(await stack.metric('vigil_cloud_media_store_seconds_count')).toBe(1);
  });

  it('stores an object sent twice (same msg id, then another msg id) once, counting the resend duplicate', async () => {
    const link = await stack.device(gw1);
    const m = makeMedia(gw1);
    expect((await send(link, gw1, m)).duplicate).toBe(false);
    // JetStream's duplicate window drops the same msg id; the consumer never sees it.
    expect((await send(link, gw1, m)).duplicate).toBe(true);
    expect((await send(link, gw1, m, `resend-${m.mediaId}`)).duplicate).toBe(false);
    await drained(stack);
    const rows = (await mediaRows(stack)).filter((r) => r.media_id === m.mediaId);
    expect(rows).toHaveLength(1);
    expect(await metric('ok')).toBe(2);
    expect(await metric('duplicate')).toBe(1);
    expect(files(dir)).toHaveLength(2);
  });

  it('dead-letters each invalid object with its reason and the original bytes; nothing is stored', async () => {
    const a = await stack.device(gw1);
    const s = await stack.device(stranger);
    const rowsBefore = (await mediaRows(stack)).length;
    const filesBefore = files(dir);
    const big = Buffer.concat([TINY_JPEG, Buffer.alloc(MAX_OBJECT)]);
    const old = new Date(Date.now() - 40 * DAY);
    const cases: Array<{
      reason: string;
      subject?: string;
      data?: Uint8Array;
      m?: MediaObject;
      link?: DeviceLink;
    }> = [
      { reason: 'undecodable', data: Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]) },
      { reason: 'subject_mismatch', m: makeMedia(gw2) },
      { reason: 'subject_mismatch', m: makeMedia(gw1), subject: mediaSubject(gw1, 'cam2') },
      { reason: 'invalid_id', m: makeMedia(gw1, { mediaId: 'not-a-uuid' }) },
      { reason: 'invalid_id', m: makeMedia(gw1, { eventId: uuidv7().toUpperCase() }) },
      { reason: 'invalid_id', m: makeMedia(gw1, { siteId: 'h q' }) },
      { reason: 'content_type', m: makeMedia(gw1, { contentType: 'image/png' }) },
      { reason: 'empty', m: makeMedia(gw1, withData(Buffer.alloc(0))) },
      { reason: 'too_large', m: makeMedia(gw1, withData(big.subarray(0, MAX_OBJECT + 1))) },
      { reason: 'not_jpeg', m: makeMedia(gw1, withData(Buffer.from('GIF89a-not-a-jpeg'))) },
      { reason: 'sha256_mismatch', m: makeMedia(gw1, { sha256: sha256Hex(Buffer.from('x')) }) },
      { reason: 'captured_at', m: makeMedia(gw1, {}, old) },
      { reason: 'captured_at', m: { ...makeMedia(gw1), capturedAt: undefined } },
      // Issue 12 finding 3: gw-1 is registered at hq; a snapshot filed under another site of the tenant.
      { reason: 'site_mismatch', m: makeMedia(gw1, { siteId: 'plant' }) },
      { reason: 'unknown_device', m: makeMedia(stranger), link: s },
    ];
    const seqs: number[] = [];
    for (const [i, c] of cases.entries()) {
      const data = c.data ?? enc(c.m!);
      const subject = c.subject ?? mediaSubject(gw1);
      const link = c.link ?? a;
      const subj = c.link ? mediaSubject(stranger) : subject;
      seqs.push((await link.publishRaw(subj, data, `bad-${i}`)).seq);
    }
    await drained(stack);
    const letters = await mediaLetters(stack);
    for (const [i, c] of cases.entries()) {
      const letter = letters.get(seqs[i]!);
      expect(letter, `dead letter for ${c.reason} #${i}`).toBeDefined();
      expect(letter!.header.get(DLQ_HEADERS.reason)).toBe(c.reason);
      expect(letter!.header.get(DLQ_HEADERS.detail)).not.toBe('');
      expect(letter!.header.get('Nats-Msg-Id')).toBe(`dlq-media-${seqs[i]}`);
      expect(letter!.subject).toBe(c.link ? 'vigil.dlq.media.acme.gw-9' : 'vigil.dlq.media.acme.gw-1');
      expect(Buffer.from(letter!.data).equals(Buffer.from(c.data ?? enc(c.m!)))).toBe(true);
    }
    expect((await mediaRows(stack)).length).toBe(rowsBefore);
    expect(files(dir)).toEqual(filesBefore);
    expect(await metric('subject_mismatch')).toBe(2);
    expect(await metric('unknown_device')).toBe(1);
    expect(await metric('site_mismatch')).toBe(1);
    expect(await metric('too_large')).toBe(1);
  });

  it('dead-letters a media id reused with other bytes as media_id_conflict; the first object is untouched', async () => {
    const link = await stack.device(gw1);
    const first = makeMedia(gw1);
    await send(link, gw1, first);
    await drained(stack);
    const other = Buffer.concat([TINY_JPEG, Buffer.from('other bytes')]);
    const second = { ...first, ...withData(other) };
    const { seq } = await send(link, gw1, second, `again-${first.mediaId}`);
    await drained(stack);
    const letter = (await mediaLetters(stack)).get(seq);
    expect(letter?.header.get(DLQ_HEADERS.reason)).toBe('media_id_conflict');
    const rows = (await mediaRows(stack)).filter((r) => r.media_id === first.mediaId);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.sha256).toBe(sha256Hex(TINY_JPEG));
    expect(readFileSync(join(dir, rows[0]!.storage_key!)).equals(TINY_JPEG)).toBe(true);
    expect(await metric('media_id_conflict')).toBe(1);
  });

  it('has the stream refuse, at publish time, an object larger than its max message size', async () => {
    const link = await stack.device(gw1);
    const m = makeMedia(gw1, withData(Buffer.concat([TINY_JPEG, Buffer.alloc(MAX_OBJECT + 8192)])));
    const { messages } = await stack
      .jsm()
      .streams.info(MEDIA_STREAM)
      .then((i) => i.state);
    await expect(send(link, gw1, m)).rejects.toThrow(/maximum|size/i);
    expect((await stack.jsm().streams.info(MEDIA_STREAM)).state.messages).toBe(messages);
    const info = await stack.jsm().streams.info(MEDIA_STREAM);
    expect(info.config).toMatchObject({
      subjects: ['vigil.v1.*.*.media.*'],
      retention: 'workqueue',
      discard: 'new',
      max_msg_size: MAX_OBJECT + 4096,
      max_bytes: 512 * 1024 * 1024,
    });
  });
});

describe('media ingest without a MediaStore (media.dir unset)', () => {
  const stack = useIngestStack({ devices: [gw1], registered: [gw1], databaseUrl: useDatabase() });

  it('acks and counts no_store; nothing is stored', async () => {
    const link = await stack.device(gw1);
    await send(link, gw1, makeMedia(gw1));
    await send(link, gw1, makeMedia(gw1));
    await drained(stack);
    await expect
      .poll(() => stack.metric('vigil_cloud_media_received_total', '{result="no_store"}'), {
        timeout: 10_000,
      })
      .toBe(2);
    const { rows } = await sql<{ n: string }>`select count(*) as n from media`.execute(stack.cloud().db);
    expect(Number(rows[0]?.n)).toBe(0);
    expect(stack.cloud().media.store).toBeUndefined();
    expect(stack.logs().match(/media\.dir is not set/g)).toHaveLength(1);
  });
});
