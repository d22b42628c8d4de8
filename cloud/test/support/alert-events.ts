// Committed-event rows (NewEvent, as ingest's validateEvent makes them) for the alert plan and sweep tests: a
// person at camera `gate` of device gw-1 at site hq, in zone `door`, `ms` milliseconds after T0. Free of
// services and heavy imports, so the pure plan test can use it too.
import { randomUUID } from 'node:crypto';
import type { NewEvent } from '../../src/events/store.js';

/** The time every row's `ms` counts from. */
export const T0 = Date.parse('2026-12-07T10:00:00Z');

/** The end grace (ms) the alert tests give the hook: how long an incident stays open after its track's END. */
export const END_GRACE_MS = 3000;

/** The rule CAP fields the tests use. */
export const INTRUSION = {
  event: 'Intrusion',
  urgency: 'Immediate',
  severity: 'Severe',
  certainty: 'Observed',
} as const;

/** Event ids that are a row's number: the same every run (for tests that compare plans). */
export const countedEventId = (n: number): string => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

export type EventRow = (track: string, phase: string, ms: number, over?: Partial<NewEvent>) => NewEvent;

/**
 * A maker of rows numbered from 1 (the number is the row's stream_seq and is given to `newId`); event ids are
 * random UUIDs unless `newId` says otherwise. `over` replaces any column (tenant, zones, label...).
 */
export function eventRows(newId: (n: number) => string = () => randomUUID()): EventRow {
  let n = 0;
  return (track, phase, ms, over = {}) => {
    n++;
    return {
      event_id: newId(n),
      tenant_id: 'acme',
      site_id: 'hq',
      device_id: 'gw-1',
      camera_id: 'gate',
      occurred_at: new Date(T0 + ms),
      track_id: track,
      phase,
      label: 'person',
      score: 0.9,
      box_x: 0,
      box_y: 0,
      box_w: 1,
      box_h: 1,
      zones: ['door'],
      priority: 1,
      payload: Buffer.alloc(0),
      stream_seq: n,
      ...over,
    } as NewEvent;
  };
}
