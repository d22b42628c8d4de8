import { createHash } from 'node:crypto';
import { isValidSubjectToken, MediaObject, parseSubject } from '@vigil/proto';
import { isUuidV7 } from '../lib/uuidv7.js';

/** The only content type the v1 cloud accepts. */
export const MEDIA_CONTENT_TYPE = 'image/jpeg';

/** Why validation refused a media object (DEAD_LETTER header `Vigil-Dlq-Reason`, metric label `result`). */
export const MEDIA_REFUSALS = [
  'undecodable',
  'subject_mismatch',
  'invalid_id',
  'content_type',
  'empty',
  'too_large',
  'not_jpeg',
  'sha256_mismatch',
  'captured_at',
] as const;
export type MediaRefusal = (typeof MEDIA_REFUSALS)[number];

/** Every reason a media object goes to DEAD_LETTER: validation's, and the media consumer's own. */
export const MEDIA_DEAD_LETTER_REASONS = [
  ...MEDIA_REFUSALS,
  'unknown_device',
  'site_mismatch',
  'media_id_conflict',
  'store_failed',
] as const;
export type MediaDeadLetterReason = (typeof MEDIA_DEAD_LETTER_REASONS)[number];

export interface MediaLimits {
  maxObjectBytes: number;
  acceptPastDays: number;
  acceptFutureHours: number;
}

/** A media object that passed validation: what the consumer stores and indexes. */
export interface ValidMedia {
  tenantId: string;
  mediaId: string;
  siteId: string;
  deviceId: string;
  cameraId: string;
  eventId: string;
  contentType: string;
  sha256: string;
  sizeBytes: number;
  redacted: boolean;
  capturedAt: Date;
  data: Uint8Array;
}

export type MediaValidation =
  | { ok: true; media: ValidMedia }
  | {
      ok: false;
      reason: MediaRefusal;
      detail: string;
      /** From the subject (the authenticated publisher), when it names one. */
      tenantId: string | undefined;
      deviceId: string | undefined;
    };

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const MAX_SITE_ID_LENGTH = 128;
const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * Decodes and checks one message of MEDIA against its subject. Pure: no I/O (the registry check for
 * unknown devices and the duplicate check are the consumer's). The subject is the authenticated identity
 * (NATS permissions bind a device to its own subjects), so the payload must name the same tenant, device
 * and camera; the content is checked, never trusted (type, JPEG magic, size, recomputed SHA-256).
 */
export function validateMedia(
  subject: string,
  raw: Uint8Array,
  now: Date,
  limits: MediaLimits,
): MediaValidation {
  const route = parseSubject(subject);
  const refuse = (reason: MediaRefusal, detail: string): MediaValidation => ({
    ok: false,
    reason,
    detail,
    tenantId: route?.tenant,
    deviceId: route?.device,
  });

  let m: MediaObject;
  try {
    m = MediaObject.decode(raw);
  } catch (err) {
    return refuse('undecodable', `not a vigil.v1.MediaObject: ${(err as Error).message}`);
  }

  if (!route || route.kind !== 'media' || route.camera === undefined)
    return refuse('subject_mismatch', `${clip(subject)} is not a vigil.v1 media subject`);
  if (m.tenantId !== route.tenant || m.deviceId !== route.device || m.cameraId !== route.camera)
    return refuse(
      'subject_mismatch',
      `payload names ${clip(m.tenantId)}/${clip(m.deviceId)}/${clip(m.cameraId)}, ` +
        `subject ${route.tenant}/${route.device}/${route.camera}`,
    );

  if (!isUuidV7(m.mediaId))
    return refuse('invalid_id', `media_id ${clip(m.mediaId)} is not a canonical lowercase UUIDv7`);
  if (!isUuidV7(m.eventId))
    return refuse('invalid_id', `event_id ${clip(m.eventId)} is not a canonical lowercase UUIDv7`);
  if (!isValidSubjectToken(m.siteId) || m.siteId.length > MAX_SITE_ID_LENGTH || m.siteId.includes('\0'))
    return refuse('invalid_id', `site_id ${clip(m.siteId)} is not a valid subject token`);

  if (m.contentType !== MEDIA_CONTENT_TYPE)
    return refuse('content_type', `content_type ${clip(m.contentType)} is not ${MEDIA_CONTENT_TYPE}`);
  const data = m.data;
  if (data.length === 0) return refuse('empty', 'data is empty');
  if (data.length > limits.maxObjectBytes)
    return refuse('too_large', `data is ${data.length} bytes, more than ${limits.maxObjectBytes}`);
  if (data.length < 3 || data[0] !== 0xff || data[1] !== 0xd8 || data[2] !== 0xff)
    return refuse('not_jpeg', 'data does not start with the JPEG SOI marker FF D8 FF');

  const digest = createHash('sha256').update(data).digest('hex');
  if (!SHA256_HEX.test(m.sha256))
    return refuse('sha256_mismatch', `sha256 ${clip(m.sha256)} is not 64 lowercase hex digits`);
  if (m.sha256 !== digest)
    return refuse('sha256_mismatch', `sha256 ${m.sha256} does not match the data's ${digest}`);

  const at = m.capturedAt?.getTime();
  if (at === undefined || !Number.isFinite(at)) return refuse('captured_at', 'captured_at missing');
  const nowMs = now.getTime();
  if (at < nowMs - limits.acceptPastDays * DAY_MS || at > nowMs + limits.acceptFutureHours * HOUR_MS)
    return refuse(
      'captured_at',
      `captured_at ${new Date(at).toISOString()} outside [-${limits.acceptPastDays} d, +${limits.acceptFutureHours} h] of ${now.toISOString()}`,
    );

  return {
    ok: true,
    media: {
      tenantId: m.tenantId,
      mediaId: m.mediaId,
      siteId: m.siteId,
      deviceId: m.deviceId,
      cameraId: m.cameraId,
      eventId: m.eventId,
      contentType: m.contentType,
      sha256: digest,
      sizeBytes: data.length,
      redacted: m.redacted,
      capturedAt: new Date(at),
      data,
    },
  };
}

function clip(s: string, max = 80): string {
  const json = JSON.stringify(s);
  return json.length > max ? `${json.slice(0, max)}…` : json;
}
