import { DetectionEvent, Priority, TrackPhase } from '@vigil/proto';
import type { TrackEvent, TrackEventKind } from '../track/types.js';

export interface EventContext {
  tenantId: string;
  siteId: string;
  deviceId: string;
  cameraId: string;
  model: { name: string; sha256: string };
}

export interface SnapshotRef {
  mediaId: string;
  sha256: string;
  sizeBytes: number;
  /**
   * The face model ran over the frame (faces found or not) before it was encoded: the event says so in its
   * `redacted` attribute, which the uplink copies into the MediaObject.
   */
  redacted?: boolean;
}

const phase: Record<TrackEventKind, TrackPhase> = {
  start: TrackPhase.TRACK_PHASE_START,
  zone_enter: TrackPhase.TRACK_PHASE_ZONE_ENTER,
  zone_exit: TrackPhase.TRACK_PHASE_ZONE_EXIT,
  end: TrackPhase.TRACK_PHASE_END,
};

/**
 * Zone crossings are what operators alert on: they go first when the uplink drains and are evicted last.
 * Outbox classes: 0 is the highest priority.
 */
export function priorityOf(kind: TrackEventKind): { wire: Priority; outbox: 0 | 1 | 2 | 3 } {
  return kind === 'zone_enter' || kind === 'zone_exit'
    ? { wire: Priority.PRIORITY_HIGH, outbox: 0 }
    : { wire: Priority.PRIORITY_NORMAL, outbox: 1 };
}

/**
 * Pure: one tracker event -> the v1 wire event. `trace`: the W3C context of the event's `vigil.event` span,
 * carried in the payload so it survives the outbox (and a restart) to the uplink and the cloud.
 */
export function buildDetectionEvent<F>(
  eventId: string,
  ev: TrackEvent<F>,
  ctx: EventContext,
  snapshot?: SnapshotRef,
  trace?: { traceparent: string; tracestate: string },
): DetectionEvent {
  return DetectionEvent.fromPartial({
    eventId,
    tenantId: ctx.tenantId,
    siteId: ctx.siteId,
    deviceId: ctx.deviceId,
    cameraId: ctx.cameraId,
    occurredAt: new Date(ev.atMs),
    trackId: ev.trackId,
    phase: phase[ev.kind],
    label: ev.label,
    score: ev.score,
    box: ev.box,
    zones: ev.zones,
    triggerZone: ev.zone ?? '',
    model: { name: ctx.model.name, sha256: ctx.model.sha256 },
    snapshot: snapshot
      ? {
          $case: 'snapshotRef',
          value: {
            mediaId: snapshot.mediaId,
            contentType: 'image/jpeg',
            sha256: snapshot.sha256,
            sizeBytes: BigInt(snapshot.sizeBytes),
          },
        }
      : undefined,
    priority: priorityOf(ev.kind).wire,
    attributes: {
      duration_ms: String(Math.round(ev.durationMs)),
      ...(ev.stationary ? { stationary: 'true' } : {}),
      ...(snapshot?.redacted ? { redacted: 'true' } : {}),
    },
    trace,
  });
}
