import { createHash, randomBytes } from 'node:crypto';
import {
  DiscardPolicy,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
  type StoredMsg,
} from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DetectionEvent, MediaObject, subjectFor } from '@vigil/proto';
import { usePki } from '@vigil/testkit';
import type { Outbox } from '../src/buffer/index.js';
import { buildDetectionEvent } from '../src/pipeline/events.js';
import { classifyPublishError, planMedia } from '../src/uplink/index.js';
import { createEventsStream, EVENTS_STREAM } from './helpers/receipt-responder.js';
import { startRig, type UplinkRig } from './helpers/uplink-harness.js';
import {
  appendEvents,
  connectCloud,
  DEVICE,
  eventPayload,
  eventSubject,
  newId,
  useMtlsNats,
} from './helpers/uplink-env.js';

// Snapshots travel as MediaObjects on MEDIA, each published (and PubAcked) before the event that references
// it; a snapshot MEDIA can never take is dropped and the event goes alone. Real nats-server, real outbox.

const MEDIA_STREAM = 'MEDIA';
const CAMERA = 'cam7';
const CAPTURED_AT_MS = Date.parse('2026-02-03T04:05:06.789Z');
const TRACE = {
  traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
  tracestate: 'vigil=edge',
};

/** MEDIA as the cloud creates it (work queue, discard new), with nobody consuming: messages stay to inspect. */
async function createMediaStream(
  nc: NatsConnection,
  opts: { maxMsgSize?: number } = {},
): Promise<JetStreamManager> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.delete(MEDIA_STREAM).catch(() => false);
  await jsm.streams.add({
    name: MEDIA_STREAM,
    subjects: ['vigil.v1.*.*.media.*'],
    storage: StorageType.File,
    retention: RetentionPolicy.Workqueue,
    discard: DiscardPolicy.New,
    max_msg_size: opts.maxMsgSize ?? 1024 * 1024,
  });
  return jsm;
}

async function deleteMediaStream(nc: NatsConnection): Promise<void> {
  await (await jetstreamManager(nc)).streams.delete(MEDIA_STREAM).catch(() => false);
}

/** A few KB of noise as a JPEG (noise does not compress: well above the 512-byte limit of the too-large test). */
function testJpeg(): Promise<Buffer> {
  const [w, h] = [64, 48];
  return sharp(randomBytes(w * h * 3), { raw: { width: w, height: h, channels: 3 } })
    .jpeg({ quality: 80 })
    .toBuffer();
}

interface MediaEntry {
  id: string;
  mediaId: string;
  jpeg: Buffer;
  sha256: string;
}

/** A start event with a redacted snapshot, as the camera pipeline appends it (event + media in one entry). */
async function appendWithMedia(outbox: Outbox): Promise<MediaEntry> {
  const id = newId();
  const mediaId = newId();
  const jpeg = await testJpeg();
  const sha256 = createHash('sha256').update(jpeg).digest('hex');
  const box = { x: 0.1, y: 0.2, w: 0.3, h: 0.4 };
  const event = buildDetectionEvent(
    id,
    {
      kind: 'start',
      trackId: `trk-${id}`,
      label: 'person',
      classId: 0,
      score: 0.9,
      box,
      atMs: CAPTURED_AT_MS,
      zones: [],
      best: { frame: null, box, score: 0.9, atMs: CAPTURED_AT_MS },
      stationary: false,
      durationMs: 0,
      firstSeenMs: CAPTURED_AT_MS,
      lastSeenMs: CAPTURED_AT_MS,
    },
    {
      ...DEVICE,
      cameraId: CAMERA,
      model: { name: 'yolox', sha256: 'ab'.repeat(32) },
    },
    { mediaId, sha256, sizeBytes: jpeg.length, redacted: true },
  );
  event.trace = TRACE;
  const result = outbox.append({
    id,
    priority: 1,
    kind: 'event',
    subject: eventSubject(CAMERA),
    payload: DetectionEvent.encode(event).finish(),
    media: { contentType: 'image/jpeg', data: jpeg },
  });
  if (!result.accepted) throw new Error(`append refused: ${result.reason}`);
  return { id, mediaId, jpeg, sha256 };
}

async function streamMessages(nc: NatsConnection, stream: string): Promise<StoredMsg[]> {
  const jsm = await jetstreamManager(nc);
  const { state } = await jsm.streams.info(stream);
  const out: StoredMsg[] = [];
  for (let seq = state.first_seq; state.messages > 0 && seq <= state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq });
    if (m) out.push(m);
  }
  return out;
}

async function streamCount(nc: NatsConnection, stream: string): Promise<number> {
  return (await (await jetstreamManager(nc)).streams.info(stream)).state.messages;
}

/** A stored message's timestamp (RFC 3339 with nanoseconds) as ns since the epoch: ms are too coarse here. */
function nanosOf(m: StoredMsg): bigint {
  const match = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(m.timestamp);
  if (!match) throw new Error(`unexpected timestamp ${m.timestamp}`);
  const [, secs = '', frac = '', zone = ''] = match;
  return BigInt(Date.parse(`${secs}${zone}`)) * 1_000_000n + BigInt(frac.padEnd(9, '0'));
}

describe('uplink: snapshots as MediaObjects on MEDIA, before their events', () => {
  const pki = usePki({ devices: [DEVICE], services: ['cloud'] });
  const nats = useMtlsNats(pki);
  let cloud: NatsConnection;
  const rigs: UplinkRig[] = [];

  beforeAll(async () => {
    cloud = await connectCloud(pki(), nats());
  });
  afterEach(async () => {
    for (const rig of rigs.splice(0)) await rig.dispose();
    await deleteMediaStream(cloud);
  });
  afterAll(async () => {
    await cloud?.close();
  });

  async function rig(opts: Omit<Parameters<typeof startRig>[0], 'pki' | 'server' | 'cloud'> = {}) {
    const r = await startRig({ pki: pki(), server: nats(), cloud, ...opts });
    rigs.push(r);
    return r;
  }

  it('publishes the MediaObject (every field) before its event, then the event is receipted', async () => {
    await createEventsStream(cloud);
    await createMediaStream(cloud);
    // The responder starts later: until then EVENTS keeps the event message, so its timestamp can be read.
    const r = await rig({ startResponder: false });
    const m = await appendWithMedia(r.outbox);
    r.uplink.notify();
    await expect.poll(() => streamCount(cloud, EVENTS_STREAM), { timeout: 10_000 }).toBe(1);

    const media = await streamMessages(cloud, MEDIA_STREAM);
    expect(media).toHaveLength(1);
    const stored = media[0]!;
    expect(stored.subject).toBe(subjectFor(DEVICE.tenantId, DEVICE.deviceId, 'media', CAMERA));
    expect(stored.header.get('Nats-Msg-Id')).toBe(m.mediaId);
    const obj = MediaObject.decode(stored.data);
    expect(Buffer.compare(obj.data, m.jpeg)).toBe(0);
    expect(obj).toMatchObject({
      mediaId: m.mediaId,
      tenantId: DEVICE.tenantId,
      siteId: DEVICE.siteId,
      deviceId: DEVICE.deviceId,
      cameraId: CAMERA,
      eventId: m.id,
      contentType: 'image/jpeg',
      sha256: m.sha256,
      redacted: true,
      trace: TRACE,
    });
    expect(obj.capturedAt?.getTime()).toBe(CAPTURED_AT_MS);
    expect(createHash('sha256').update(obj.data).digest('hex')).toBe(obj.sha256);

    const [event] = await streamMessages(cloud, EVENTS_STREAM);
    expect(event?.header.get('Nats-Msg-Id')).toBe(m.id);
    const snapshot = DetectionEvent.decode(event!.data).snapshot;
    expect(snapshot?.$case === 'snapshotRef' && snapshot.value.mediaId).toBe(m.mediaId);
    // Media first: the event was published only after the media's PubAck.
    expect(nanosOf(stored)).toBeLessThanOrEqual(nanosOf(event!));

    await r.responder.start();
    await expect.poll(() => r.outbox.stats().depth, { timeout: 10_000 }).toBe(0);
    expect([...r.responder.committed]).toEqual([m.id]);
    expect(r.uplink.status()).toMatchObject({ inFlight: 0, inFlightBytes: 0 });
    expect(await r.metric('vigil_agent_media_published_total', { result: 'ok' })).toBe(1);
    expect(await r.metric('vigil_agent_media_published_total')).toBe(1);
    expect(await r.metric('vigil_agent_media_published_bytes_total')).toBe(m.jpeg.length);
    expect(await r.metric('vigil_agent_uplink_published_total')).toBe(1);
    expect(await r.metric('vigil_agent_uplink_publish_errors_total')).toBe(0);
  });

  it('drops a snapshot MEDIA can never take and still delivers its event', async () => {
    await createEventsStream(cloud);
    await createMediaStream(cloud, { maxMsgSize: 512 });
    // How JetStream refuses it, as the uplink sees it: a PubAck with an error, classified too_large.
    const err = await jetstream(cloud)
      .publish(subjectFor(DEVICE.tenantId, DEVICE.deviceId, 'media', CAMERA), new Uint8Array(1024))
      .then(
        () => undefined,
        (e: unknown) => e as Error & { code?: unknown },
      );
    expect(err).toBeInstanceOf(Error);
    console.log(`MEDIA max_msg_size exceeded: ${err?.name} code=${String(err?.code)} "${err?.message}"`);
    expect(classifyPublishError(err)).toBe('too_large');

    const r = await rig();
    const m = await appendWithMedia(r.outbox);
    expect(m.jpeg.length).toBeGreaterThan(512);
    r.uplink.notify();
    await expect.poll(() => r.outbox.stats().depth, { timeout: 10_000 }).toBe(0);
    expect([...r.responder.committed]).toEqual([m.id]);
    expect(await streamCount(cloud, MEDIA_STREAM)).toBe(0);
    expect(await r.metric('vigil_agent_media_published_total', { result: 'too_large' })).toBe(1);
    expect(await r.metric('vigil_agent_media_published_total')).toBe(1);
    expect(await r.metric('vigil_agent_media_published_bytes_total')).toBe(0);
    expect(await r.metric('vigil_agent_uplink_pubacks_total')).toBe(1);
    expect(r.uplink.status()).toMatchObject({ state: 'online', inFlight: 0, inFlightBytes: 0 });
    // Dropping the frame is not a failed entry: no back-off.
    expect(r.states).not.toContain('backing_off');
  });

  it('holds the event back while its media cannot be published, and sends both once MEDIA exists', async () => {
    await createEventsStream(cloud);
    await deleteMediaStream(cloud);
    const r = await rig({ uplink: { backoff: { initialMs: 50, maxMs: 200, jitter: 0.5 } } });
    const m = await appendWithMedia(r.outbox);
    r.uplink.notify();
    // Several attempts, each failing on the media (503 no responders: no stream on the subject).
    await expect
      .poll(() => r.metric('vigil_agent_media_published_total', { result: 'error' }), { timeout: 10_000 })
      .toBeGreaterThanOrEqual(3);
    expect(
      await r.metric('vigil_agent_uplink_publish_errors_total', { reason: 'no_stream' }),
    ).toBeGreaterThan(0);
    expect(r.states).toContain('backing_off');
    // The event never left: not in EVENTS, nothing committed, no event PubAck, still in the outbox.
    expect(await streamCount(cloud, EVENTS_STREAM)).toBe(0);
    expect(r.responder.committed.size).toBe(0);
    expect(await r.metric('vigil_agent_uplink_pubacks_total')).toBe(0);
    expect(r.outbox.stats().depth).toBe(1);

    await createMediaStream(cloud);
    await expect.poll(() => r.outbox.stats().depth, { timeout: 10_000 }).toBe(0);
    expect([...r.responder.committed]).toEqual([m.id]);
    const media = await streamMessages(cloud, MEDIA_STREAM);
    expect(media).toHaveLength(1);
    const obj = MediaObject.decode(media[0]!.data);
    expect(obj.mediaId).toBe(m.mediaId);
    expect(obj.eventId).toBe(m.id);
    expect(Buffer.compare(obj.data, m.jpeg)).toBe(0);
    expect(await r.metric('vigil_agent_media_published_total', { result: 'ok' })).toBe(1);
    expect(r.uplink.status()).toMatchObject({ inFlight: 0, inFlightBytes: 0 });
  });

  it('publishes no media for an entry without media', async () => {
    await createEventsStream(cloud);
    await createMediaStream(cloud);
    const r = await rig();
    const ids = appendEvents(r.outbox, 3, { camera: CAMERA });
    r.uplink.notify();
    await expect.poll(() => r.outbox.stats().depth, { timeout: 10_000 }).toBe(0);
    expect(ids.every((id) => r.responder.committed.has(id))).toBe(true);
    expect(await streamCount(cloud, MEDIA_STREAM)).toBe(0);
    expect(await r.metric('vigil_agent_media_published_total')).toBe(0);
    expect(await r.metric('vigil_agent_uplink_pubacks_total')).toBe(3);
  });
});

describe('planMedia (which MediaObject an outbox entry carries)', () => {
  const media = { contentType: 'image/jpeg', data: Buffer.from([0xff, 0xd8, 0xff, 0xd9]) };

  it('has nothing to send without media, or when the event references no snapshot', () => {
    expect(planMedia({ payload: eventPayload(newId()) }, DEVICE)).toEqual({ kind: 'none' });
    expect(planMedia({ payload: eventPayload(newId()), media }, DEVICE)).toEqual({ kind: 'none' });
  });

  it('reports an unreadable event (the uplink then publishes the event alone)', () => {
    // Field 1, length 80, then nothing: a truncated message.
    const plan = planMedia({ payload: Uint8Array.of(0x0a, 0x50), media }, DEVICE);
    expect(plan.kind).toBe('undecodable');
  });
});
