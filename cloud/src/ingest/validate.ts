import { createHash } from 'node:crypto';
import { DetectionEvent, parseSubject, TrackPhase } from '@vigil/proto';
import { isUuidV7, uuidV7Time } from '../lib/uuidv7.js';
import type { NewEvent } from '../events/store.js';

/**
 * Why a message went to DEAD_LETTER (header `Vigil-Dlq-Reason`, metric label `reason`). A poison message is
 * decided by what it is, never by how often it was delivered: a database outage redelivers good events
 * for as long as it lasts and must never push them into the dead letter.
 */
export const DEAD_LETTER_REASONS = [
  'undecodable',
  'invalid_event_id',
  'subject_mismatch',
  'occurred_at_out_of_range',
  'id_time_mismatch',
  'invalid_event',
  'unknown_device',
  'site_mismatch',
] as const;
export type DeadLetterReason = (typeof DEAD_LETTER_REASONS)[number];

export interface ValidationLimits {
  acceptPastDays: number;
  acceptFutureHours: number;
}

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/**
 * How far occurred_at may be from the time inside the event's UUIDv7 id.
 *
 * The events table is partitioned by occurred_at, and PostgreSQL wants the partition key in every unique
 * constraint, so the key is (event_id, occurred_at), not event_id alone. That is as good as a unique
 * event_id because:
 * - an event is immutable from the moment the edge writes it to its outbox, so every retry, JetStream
 *   redelivery or re-publish of one id carries the same occurred_at and hits the same key (ON CONFLICT DO
 *   NOTHING then makes it a no-op);
 * - the edge makes the id when it makes the event, so both times come from the same clock a moment apart;
 *   refusing events whose occurred_at is more than this far from the id's time pins every id to a window
 *   of two days. Lookups by id alone (receipt queries, the API) can therefore prune to the few partitions
 *   of that window (see RECEIPT_LOOKUP_MARGIN_MS), and an id can never turn up in a far-away partition.
 * What it does not catch: a broken or hostile device that re-sends one id with a different occurred_at
 * inside the window would get two rows. Such a device can only write its own tenant's and device's
 * events (the subject is its authenticated identity), and the edge never rebuilds a stored event.
 */
export const MAX_ID_TIME_SKEW_MS = DAY_MS;

const MAX_ID_LENGTH = 128;
const MAX_TEXT_LENGTH = 256;
const MAX_ZONES = 64;
const MAX_ATTRIBUTES = 64;
const MAX_ATTRIBUTE_VALUE_LENGTH = 4096;
const INT32_MAX = 2 ** 31 - 1;

export type Validation =
  | {
      ok: true;
      row: NewEvent;
      /** The payload's W3C trace context, unchecked (ingest/tracing.ts validates it: never a reason to refuse). */
      trace?: { traceparent: string; tracestate: string };
    }
  | {
      ok: false;
      reason: DeadLetterReason;
      detail: string;
      /** From the subject (the authenticated publisher), when it names one. */
      tenantId: string | undefined;
      deviceId: string | undefined;
    };

const PHASES: Partial<Record<number, string>> = {
  [TrackPhase.TRACK_PHASE_UNSPECIFIED]: 'unspecified',
  [TrackPhase.TRACK_PHASE_START]: 'start',
  [TrackPhase.TRACK_PHASE_ZONE_ENTER]: 'zone_enter',
  [TrackPhase.TRACK_PHASE_ZONE_EXIT]: 'zone_exit',
  [TrackPhase.TRACK_PHASE_END]: 'end',
  [TrackPhase.TRACK_PHASE_UPDATE]: 'update',
};

/** The `phase` column: lowercase names; a phase from a newer agent is kept as `phase_<number>`. */
export function phaseName(phase: number): string {
  return PHASES[phase] ?? `phase_${phase}`;
}

/**
 * Decodes and checks one message from EVENTS. Pure: no I/O (the registry check for unknown devices is
 * done by the caller, batched). `data` is stored as-is in the row's payload, unknown fields included.
 */
export function validateEvent(
  subject: string,
  data: Uint8Array,
  streamSeq: number,
  now: Date,
  limits: ValidationLimits,
): Validation {
  const route = parseSubject(subject);
  // Only a refused event pays for its closure and detail (this runs for every event).
  const poison = (reason: DeadLetterReason, detail: string): Validation => ({
    ok: false,
    reason,
    detail,
    tenantId: route?.tenant,
    deviceId: route?.device,
  });

  let ev: DetectionEvent;
  try {
    ev = DetectionEvent.decode(data);
  } catch (err) {
    return poison('undecodable', `not a vigil.v1.DetectionEvent: ${(err as Error).message}`);
  }
  if (!isUuidV7(ev.eventId))
    return poison('invalid_event_id', `event_id ${clip(ev.eventId)} is not a canonical lowercase UUIDv7`);

  if (!route || route.kind !== 'evt' || route.camera === undefined)
    return poison('subject_mismatch', `${clip(subject)} is not a vigil.v1 evt subject`);
  if (ev.tenantId !== route.tenant || ev.deviceId !== route.device || ev.cameraId !== route.camera)
    return poison(
      'subject_mismatch',
      `payload names ${clip(ev.tenantId)}/${clip(ev.deviceId)}/${clip(ev.cameraId)}, ` +
        `subject ${route.tenant}/${route.device}/${route.camera}`,
    );

  const at = ev.occurredAt?.getTime();
  if (at === undefined || !Number.isFinite(at))
    return poison('occurred_at_out_of_range', 'occurred_at missing');
  const nowMs = now.getTime();
  if (at < nowMs - limits.acceptPastDays * DAY_MS || at > nowMs + limits.acceptFutureHours * HOUR_MS)
    return poison(
      'occurred_at_out_of_range',
      `occurred_at ${new Date(at).toISOString()} outside [-${limits.acceptPastDays} d, +${limits.acceptFutureHours} h] of ${now.toISOString()}`,
    );
  const idTime = uuidV7Time(ev.eventId) ?? Number.NaN;
  if (Math.abs(at - idTime) > MAX_ID_TIME_SKEW_MS)
    return poison(
      'id_time_mismatch',
      `occurred_at ${new Date(at).toISOString()} is more than 24 h from the id's time ${new Date(idTime).toISOString()}`,
    );

  const problem = checkContent(ev);
  if (problem) return poison('invalid_event', problem);

  const box = ev.box!;
  const snapshot = ev.snapshot;
  return {
    ok: true,
    row: {
      event_id: ev.eventId,
      occurred_at: new Date(at),
      tenant_id: ev.tenantId,
      site_id: ev.siteId,
      device_id: ev.deviceId,
      camera_id: ev.cameraId,
      track_id: ev.trackId,
      phase: phaseName(ev.phase),
      label: ev.label,
      score: ev.score,
      box_x: box.x,
      box_y: box.y,
      box_w: box.w,
      box_h: box.h,
      zones: ev.zones,
      trigger_zone: ev.triggerZone || null,
      model_name: ev.model?.name || null,
      model_sha256: ev.model?.sha256 || null,
      snapshot_media_id: snapshot?.$case === 'snapshotRef' ? snapshot.value.mediaId || null : null,
      snapshot_sha256:
        snapshot?.$case === 'snapshotRef'
          ? snapshot.value.sha256 || null
          : snapshot?.$case === 'snapshotInline'
            ? createHash('sha256').update(snapshot.value).digest('hex')
            : null,
      snapshot_bytes:
        snapshot?.$case === 'snapshotRef'
          ? Number(snapshot.value.sizeBytes)
          : snapshot?.$case === 'snapshotInline'
            ? snapshot.value.length
            : null,
      priority: ev.priority,
      attributes: JSON.stringify(ev.attributes),
      payload: Buffer.from(data.buffer, data.byteOffset, data.byteLength),
      stream_seq: streamSeq,
    },
    trace: ev.trace ? { traceparent: ev.trace.traceparent, tracestate: ev.trace.tracestate } : undefined,
  };
}

/**
 * What PostgreSQL would refuse, or what would break an index, must be refused here: a row that the database
 * rejects would otherwise be retried forever as if the database were down. Text cannot hold NUL, btree
 * index entries are limited to ~2.7 kB, smallint and integer have ranges.
 */
function checkContent(ev: DetectionEvent): string | undefined {
  // Field by field, no arrays of pairs: this runs for every event (allocations were a visible GC cost).
  const idProblem =
    textProblem('tenant_id', ev.tenantId, MAX_ID_LENGTH) ??
    textProblem('site_id', ev.siteId, MAX_ID_LENGTH) ??
    textProblem('device_id', ev.deviceId, MAX_ID_LENGTH) ??
    textProblem('camera_id', ev.cameraId, MAX_ID_LENGTH);
  if (idProblem) return idProblem;
  if (ev.label === '') return 'label is empty';
  if (ev.trackId === '') return 'track_id is empty';
  if (!Number.isFinite(ev.score)) return `score is not finite (${ev.score})`;
  const box = ev.box;
  if (!box) return 'box is missing';
  if (
    !Number.isFinite(box.x) ||
    !Number.isFinite(box.y) ||
    !Number.isFinite(box.w) ||
    !Number.isFinite(box.h)
  )
    return 'box has a non-finite coordinate';
  // An enum number from a newer agent survives decoding; it must still fit the smallint column.
  const priority: number = ev.priority;
  if (priority < -32768 || priority > 32767) return `priority ${priority} out of range`;
  if (ev.zones.length > MAX_ZONES) return `more than ${MAX_ZONES} zones`;
  const snapshot = ev.snapshot;
  const ref = snapshot?.$case === 'snapshotRef' ? snapshot.value : undefined;
  if (ref && ref.sizeBytes > BigInt(INT32_MAX)) return 'snapshot size_bytes out of range';
  const textProblems =
    textProblem('label', ev.label) ??
    textProblem('track_id', ev.trackId) ??
    textProblem('trigger_zone', ev.triggerZone) ??
    textProblem('model.name', ev.model?.name ?? '') ??
    textProblem('model.sha256', ev.model?.sha256 ?? '');
  if (textProblems) return textProblems;
  for (const z of ev.zones) {
    const problem = textProblem('zones[]', z);
    if (problem) return problem;
  }
  if (ref) {
    const problem =
      textProblem('snapshot.media_id', ref.mediaId) ?? textProblem('snapshot.sha256', ref.sha256);
    if (problem) return problem;
  }
  let attributes = 0;
  for (const k in ev.attributes) if (Object.hasOwn(ev.attributes, k)) attributes++;
  if (attributes > MAX_ATTRIBUTES) return `more than ${MAX_ATTRIBUTES} attributes`;
  for (const k in ev.attributes) {
    if (!Object.hasOwn(ev.attributes, k)) continue;
    const v = ev.attributes[k]!;
    if (k.length > MAX_TEXT_LENGTH || v.length > MAX_ATTRIBUTE_VALUE_LENGTH) return 'attribute too long';
    if (k.includes('\0') || v.includes('\0')) return 'attribute contains NUL';
  }
  return undefined;
}

/** Why a text field cannot be stored (too long, or a NUL PostgreSQL text cannot hold), or undefined. */
function textProblem(name: string, value: string, max = MAX_TEXT_LENGTH): string | undefined {
  if (value.length > max) return `${name} longer than ${max}`;
  if (value.includes('\0')) return `${name} contains NUL`;
  return undefined;
}

function clip(s: string, max = 80): string {
  const json = JSON.stringify(s);
  return json.length > max ? `${json.slice(0, max)}…` : json;
}
