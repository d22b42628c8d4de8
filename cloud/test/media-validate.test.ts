import { describe, expect, it } from 'vitest';
import { MediaObject } from '@vigil/proto';
import { MEDIA_REFUSALS, validateMedia, type MediaValidation } from '../src/media/validate.js';
import { uuidv7 } from './support/ingest-stack.js';
import { makeMedia, sha256Hex as sha, TINY_JPEG, withData } from './support/media.js';

const now = new Date('2026-03-01T12:00:00Z');
const limits = { maxObjectBytes: 4096, acceptPastDays: 30, acceptFutureHours: 24 };
const subject = 'vigil.v1.acme.gw-1.media.cam1';
const HOUR = 3_600_000;

const gw1 = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' };
const media = (overrides: Partial<MediaObject> = {}): MediaObject =>
  makeMedia(gw1, overrides, new Date(now.getTime() - 1000));
function check(m: MediaObject, subj = subject): MediaValidation {
  return validateMedia(subj, MediaObject.encode(m).finish(), now, limits);
}
function reason(v: MediaValidation): string {
  return v.ok ? 'ok' : v.reason;
}

describe('validateMedia', () => {
  it('accepts a valid JPEG object and returns its fields, the recomputed hash and the size', () => {
    const m = media();
    const v = check(m);
    expect(v.ok).toBe(true);
    if (!v.ok) return;
    expect(v.media).toMatchObject({
      mediaId: m.mediaId,
      tenantId: 'acme',
      siteId: 'hq',
      deviceId: 'gw-1',
      cameraId: 'cam1',
      eventId: m.eventId,
      contentType: 'image/jpeg',
      sha256: sha(TINY_JPEG),
      sizeBytes: TINY_JPEG.length,
      redacted: true,
      capturedAt: m.capturedAt,
    });
    expect(Buffer.from(v.media.data).equals(TINY_JPEG)).toBe(true);
  });

  it('refuses each kind of bad object with its reason code (every reason at least once)', () => {
    const cases: Array<[string, MediaValidation]> = [
      ['undecodable', validateMedia(subject, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]), now, limits)],
      ['subject_mismatch', check(media(), 'vigil.v1.acme.gw-1.evt.cam1')],
      ['subject_mismatch', check(media(), 'vigil.v1.acme.gw-1.media')],
      ['subject_mismatch', check(media({ deviceId: 'gw-2' }))],
      ['subject_mismatch', check(media({ tenantId: 'other' }))],
      ['subject_mismatch', check(media({ cameraId: 'cam2' }))],
      ['invalid_id', check(media({ mediaId: 'not-a-uuid' }))],
      ['invalid_id', check(media({ mediaId: uuidv7(now.getTime()).toUpperCase() }))],
      ['invalid_id', check(media({ eventId: '0190a6e2-7f00-4000-8000-000000000000' }))],
      ['invalid_id', check(media({ siteId: 'h.q' }))],
      ['invalid_id', check(media({ siteId: '' }))],
      ['content_type', check(media({ contentType: 'image/png' }))],
      ['content_type', check(media({ contentType: 'IMAGE/JPEG' }))],
      ['empty', check(media(withData(Buffer.alloc(0))))],
      ['too_large', check(media(withData(Buffer.concat([TINY_JPEG, Buffer.alloc(4096)]))))],
      ['not_jpeg', check(media(withData(Buffer.from('\x89PNG\r\n\x1a\n'))))],
      ['not_jpeg', check(media(withData(Buffer.from([0xff, 0xd8]))))],
      ['sha256_mismatch', check(media({ sha256: sha(Buffer.from('other')) }))],
      ['sha256_mismatch', check(media({ sha256: sha(TINY_JPEG).toUpperCase() }))],
      ['sha256_mismatch', check(media({ sha256: '' }))],
      ['captured_at', check({ ...media(), capturedAt: undefined })],
      ['captured_at', check(media({ capturedAt: new Date(now.getTime() - 31 * 24 * HOUR) }))],
      ['captured_at', check(media({ capturedAt: new Date(now.getTime() + 25 * HOUR) }))],
    ];
    for (const [want, got] of cases) {
      expect(reason(got), want).toBe(want);
      if (!got.ok) expect(got.detail.length).toBeGreaterThan(0);
    }
    expect(new Set(cases.map(([r]) => r))).toEqual(new Set(MEDIA_REFUSALS));
  });

  it('names the subject identity in a refusal, and accepts the bounds themselves', () => {
    const v = check(media({ deviceId: 'gw-2' }));
    expect(v).toMatchObject({ ok: false, tenantId: 'acme', deviceId: 'gw-1' });
    expect(reason(check(media({ capturedAt: new Date(now.getTime() - 30 * 24 * HOUR) })))).toBe('ok');
    expect(reason(check(media({ capturedAt: new Date(now.getTime() + 24 * HOUR) })))).toBe('ok');
    const exact = Buffer.concat([TINY_JPEG, Buffer.alloc(4096 - TINY_JPEG.length)]);
    expect(reason(check(media(withData(exact))))).toBe('ok');
  });
});
