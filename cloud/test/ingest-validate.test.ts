import { describe, expect, it } from 'vitest';
import { DetectionEvent, type Priority, TrackPhase } from '@vigil/proto';
import { validateEvent, type Validation } from '../src/index.js';
import { makeEvent, uuidv7 } from './support/ingest-stack.js';

const gw1 = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' };
const now = new Date('2026-03-01T12:00:00Z');
const limits = { acceptPastDays: 30, acceptFutureHours: 24 };
const HOUR = 3_600_000;
const subject = 'vigil.v1.acme.gw-1.evt.cam1';

function check(ev: DetectionEvent, subj = subject): Validation {
  return validateEvent(subj, DetectionEvent.encode(ev).finish(), 7, now, limits);
}
function reason(v: Validation): string {
  return v.ok ? 'ok' : v.reason;
}
const at = (offsetMs: number): Partial<DetectionEvent> => {
  const t = new Date(now.getTime() + offsetMs);
  return { occurredAt: t, eventId: uuidv7(t.getTime()) };
};

describe('validateEvent', () => {
  it('maps a valid event to a row, keeping the original bytes', () => {
    const ev = makeEvent(gw1, {
      ...at(-HOUR),
      phase: TrackPhase.TRACK_PHASE_ZONE_ENTER,
      triggerZone: 'door',
    });
    const bytes = DetectionEvent.encode(ev).finish();
    const v = validateEvent(subject, bytes, 42, now, limits);
    if (!v.ok) throw new Error(v.detail);
    expect(v.row).toMatchObject({
      event_id: ev.eventId,
      tenant_id: 'acme',
      device_id: 'gw-1',
      camera_id: 'cam1',
      phase: 'zone_enter',
      trigger_zone: 'door',
      snapshot_media_id: null,
      stream_seq: 42,
      attributes: '{"duration_ms":"120"}',
    });
    expect(Buffer.compare(v.row.payload, Buffer.from(bytes))).toBe(0);
    expect(check(makeEvent(gw1, { ...at(0), phase: 9 as TrackPhase }))).toMatchObject({
      row: { phase: 'phase_9' },
    });
  });

  it('bounds occurred_at by the cloud clock and by the id', () => {
    expect(reason(check(makeEvent(gw1, at(-29 * 24 * HOUR))))).toBe('ok');
    expect(reason(check(makeEvent(gw1, at(-31 * 24 * HOUR))))).toBe('occurred_at_out_of_range');
    expect(reason(check(makeEvent(gw1, at(23 * HOUR))))).toBe('ok');
    expect(reason(check(makeEvent(gw1, at(25 * HOUR))))).toBe('occurred_at_out_of_range');
    const t = new Date(now.getTime() - HOUR);
    expect(reason(check(makeEvent(gw1, { occurredAt: t, eventId: uuidv7(t.getTime() - 23 * HOUR) })))).toBe(
      'ok',
    );
    expect(reason(check(makeEvent(gw1, { occurredAt: t, eventId: uuidv7(t.getTime() + 25 * HOUR) })))).toBe(
      'id_time_mismatch',
    );
  });

  it('refuses what the subject does not vouch for', () => {
    const ev = makeEvent(gw1, at(0));
    expect(reason(check(ev, 'vigil.v1.acme.gw-2.evt.cam1'))).toBe('subject_mismatch');
    expect(reason(check(ev, 'vigil.v1.acme.gw-1.evt.cam9'))).toBe('subject_mismatch');
    expect(reason(check(ev, 'vigil.v1.acme.gw-1.hb'))).toBe('subject_mismatch');
    expect(check(ev, 'vigil.v1.globex.gw-1.evt.cam1')).toMatchObject({
      tenantId: 'globex',
      deviceId: 'gw-1',
    });
  });

  it('refuses ids that are not canonical UUIDv7', () => {
    const id = uuidv7(now.getTime());
    expect(reason(check(makeEvent(gw1, { ...at(0), eventId: id.toUpperCase() })))).toBe('invalid_event_id');
    expect(reason(check(makeEvent(gw1, { ...at(0), eventId: id.replace(/^(.{14})7/, '$14') })))).toBe(
      'invalid_event_id',
    );
    expect(reason(check(makeEvent(gw1, { ...at(0), eventId: '' })))).toBe('invalid_event_id');
  });

  it('refuses rows that PostgreSQL would reject (they would be retried forever)', () => {
    const cases: Array<Partial<DetectionEvent>> = [
      { label: '' },
      { trackId: '' },
      { score: Number.NaN },
      { score: Number.POSITIVE_INFINITY },
      { box: undefined },
      { box: { x: 0, y: 0, w: Number.NaN, h: 0 } },
      { label: 'a\0b' },
      { label: 'x'.repeat(300) },
      { attributes: { k: 'v\0' } },
      { zones: Array.from({ length: 65 }, (_, i) => `z${i}`) },
      { priority: 70_000 as Priority },
      {
        snapshot: {
          $case: 'snapshotRef',
          value: { mediaId: 'm', contentType: 'image/jpeg', sha256: '', sizeBytes: 2n ** 40n },
        },
      },
    ];
    for (const [i, c] of cases.entries())
      expect(reason(check(makeEvent(gw1, { ...at(0), ...c }))), `case ${i}`).toBe('invalid_event');
  });

  it('calls undecodable bytes undecodable', () => {
    const v = validateEvent(subject, Buffer.from([0x0a, 0xff]), 1, now, limits);
    expect(v).toMatchObject({ ok: false, reason: 'undecodable', tenantId: 'acme', deviceId: 'gw-1' });
  });
});
