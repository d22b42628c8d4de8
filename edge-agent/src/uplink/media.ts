import { DetectionEvent, MediaObject, subjectFor } from '@vigil/proto';
import type { OutboxEntry } from '../buffer/index.js';

/*
 * The MediaObject of an outbox entry (the snapshot JPEG of a start/end event), published to the MEDIA stream
 * before the event that references it (proto/vigil/v1/media.proto). Pure: no I/O, unit-testable.
 */

/** How one media publish ended; the label of `vigil_agent_media_published_total`. */
export type MediaPublishResult = 'ok' | 'duplicate' | 'too_large' | 'error';
export const MEDIA_PUBLISH_RESULTS: readonly MediaPublishResult[] = ['ok', 'duplicate', 'too_large', 'error'];

export interface MediaMessage {
  /** vigil.v1.<tenant>.<device>.media.<camera> */
  subject: string;
  /** The JetStream msg id (MEDIA deduplicates on it). */
  mediaId: string;
  eventId: string;
  /** Encoded MediaObject. */
  payload: Uint8Array;
  /** Size of the media bytes alone (the JPEG), for logs and metrics. */
  dataBytes: number;
}

/**
 * `none`: nothing to send besides the event (no media, or the event references none). `undecodable`: the entry
 * has media but its payload is not a DetectionEvent we can read (or names an invalid camera): the event goes
 * alone.
 */
export type MediaPlan =
  { kind: 'none' } | { kind: 'undecodable'; error: string } | { kind: 'media'; message: MediaMessage };

/**
 * What to publish for `e`'s media, from the entry's bytes and its decoded DetectionEvent. The subject is the
 * uplink's own device (what its NATS permissions allow), the camera the event's.
 */
export function planMedia(
  e: Pick<OutboxEntry, 'payload' | 'media'>,
  device: { tenantId: string; deviceId: string },
): MediaPlan {
  if (!e.media) return { kind: 'none' };
  let event: DetectionEvent;
  try {
    event = DetectionEvent.decode(e.payload);
  } catch (err) {
    return { kind: 'undecodable', error: err instanceof Error ? err.message : String(err) };
  }
  if (event.snapshot?.$case !== 'snapshotRef') return { kind: 'none' };
  const ref = event.snapshot.value;
  if (ref.mediaId === '') return { kind: 'undecodable', error: 'snapshotRef without a media_id' };
  let subject: string;
  try {
    subject = subjectFor(device.tenantId, device.deviceId, 'media', event.cameraId);
  } catch (err) {
    return { kind: 'undecodable', error: err instanceof Error ? err.message : String(err) };
  }
  const data = e.media.data;
  const payload = MediaObject.encode(
    MediaObject.fromPartial({
      mediaId: ref.mediaId,
      tenantId: event.tenantId,
      siteId: event.siteId,
      deviceId: event.deviceId,
      cameraId: event.cameraId,
      eventId: event.eventId,
      capturedAt: event.occurredAt,
      contentType: e.media.contentType,
      sha256: ref.sha256,
      // A view, not a copy: the JPEG is encoded straight from the outbox's buffer.
      data: Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength),
      redacted: event.attributes['redacted'] === 'true',
      trace: event.trace,
    }),
  ).finish();
  return {
    kind: 'media',
    message: { subject, mediaId: ref.mediaId, eventId: event.eventId, payload, dataBytes: data.byteLength },
  };
}
