import type { EventView } from '../api/event-store.js';
import type { AlertIncidentState, AlertRuleMatch } from '../storage/tables.js';

/*
 * Alert rules, pure: whether a committed event matches a rule, and what an event does to the incident of its
 * track (one incident per rule and track). No I/O; the commit hook (outbox.ts) reads and writes the rows.
 */

/** The fields of a committed event the rules look at. */
export type RuleEvent = Pick<
  EventView,
  'label' | 'score' | 'zones' | 'trigger_zone' | 'site_id' | 'camera_id' | 'phase' | 'occurred_at'
>;

const HHMM = /^([01]\d|2[0-3]):([0-5]\d)$/;

/** Minutes since UTC midnight of "HH:MM", or undefined when it is not one. */
export function minutesOf(hhmm: string): number | undefined {
  const m = HHMM.exec(hhmm);
  return m ? Number(m[1]) * 60 + Number(m[2]) : undefined;
}

/** Whether `at` falls in the schedule (UTC days, [from, to); from > to wraps past midnight). */
export function inSchedule(schedule: AlertRuleMatch['schedule'], at: Date): boolean {
  if (!schedule) return true;
  if (schedule.days && schedule.days.length > 0 && !schedule.days.includes(at.getUTCDay())) return false;
  const from = schedule.from === undefined ? undefined : minutesOf(schedule.from);
  const to = schedule.to === undefined ? undefined : minutesOf(schedule.to);
  if (from === undefined || to === undefined || from === to) return true;
  const now = at.getUTCHours() * 60 + at.getUTCMinutes();
  return from < to ? now >= from && now < to : now >= from || now < to;
}

const anyOf = (list: readonly string[] | undefined, v: string): boolean =>
  !list || list.length === 0 || list.includes(v);

/**
 * Whether the event can open (or keep pending) an incident of this rule: label, site, camera, a zone (any of
 * the event's zones or its trigger zone), score and schedule. The dwell is the incident's business (decide).
 */
export function matchesRule(match: AlertRuleMatch, e: RuleEvent): boolean {
  if (!anyOf(match.labels, e.label) || !anyOf(match.sites, e.site_id) || !anyOf(match.cameras, e.camera_id))
    return false;
  if (match.zones && match.zones.length > 0) {
    const zones = new Set([...e.zones, ...(e.trigger_zone ? [e.trigger_zone] : [])]);
    if (!match.zones.some((z) => zones.has(z))) return false;
  }
  if (match.min_score !== undefined && e.score < match.min_score) return false;
  return inSchedule(match.schedule, new Date(e.occurred_at));
}

/** What an Update compares: the label and the zones the track is in. */
export function fingerprintOf(e: Pick<RuleEvent, 'label' | 'zones'>): string {
  return JSON.stringify([e.label, [...e.zones].sort()]);
}

export interface IncidentSnapshot {
  state: AlertIncidentState;
  first_seen_at: Date;
  /** The newest occurred_at applied (null on rows older than migration 0027: first_seen_at stands in). */
  last_seen_at: Date | null;
  fingerprint: string;
}

export type Decision =
  | { kind: 'none' }
  /** A new incident, waiting for its dwell. */
  | { kind: 'pending' }
  /** The incident's window moved (an earlier first sighting, a newer last one); nothing is sent. */
  | { kind: 'seen' }
  | { kind: 'alert' }
  | { kind: 'update' }
  | { kind: 'cancel' }
  /** A pending incident whose track ended before its dwell: closed, nothing sent. */
  | { kind: 'end' };

/** The incident's first and newest sightings once `e` is applied, and whether `e` is the newest so far. */
export function windowOf(
  incident: Pick<IncidentSnapshot, 'first_seen_at' | 'last_seen_at'>,
  e: Pick<RuleEvent, 'occurred_at'>,
): { first: Date; last: Date; newest: boolean } {
  const t = Date.parse(e.occurred_at);
  const first = incident.first_seen_at.getTime();
  const last = (incident.last_seen_at ?? incident.first_seen_at).getTime();
  return { first: new Date(Math.min(first, t)), last: new Date(Math.max(last, t)), newest: t >= last };
}

/**
 * What one event of a track does to the rule's incident for that track. Matching events open it (pending);
 * once the track has been seen for `min_dwell_seconds` (first to newest matching sighting) it is alerted. An
 * alerted incident is updated when its label or zones change (whether or not the event still matches: the
 * person left the zone is news), and cancelled when the track ends. Cancelled or ended incidents stay closed.
 *
 * Events of one track may arrive out of order (ingest commits batches concurrently and redelivers a failed one
 * after later ones), so the decision does not assume they come in order: a late earlier sighting moves the
 * pending incident's start back (the dwell counts from the real first sighting), and an event older than the
 * newest one applied raises no Update (it describes the past; the incident already shows something newer).
 */
export function decide(
  match: AlertRuleMatch,
  incident: IncidentSnapshot | undefined,
  e: RuleEvent,
): Decision {
  const ends = e.phase === 'end';
  if (!incident) {
    if (ends || !matchesRule(match, e)) return { kind: 'none' };
    return (match.min_dwell_seconds ?? 0) <= 0 ? { kind: 'alert' } : { kind: 'pending' };
  }
  const w = windowOf(incident, e);
  const moved =
    w.first.getTime() !== incident.first_seen_at.getTime() ||
    w.last.getTime() !== (incident.last_seen_at ?? incident.first_seen_at).getTime();
  switch (incident.state) {
    case 'pending': {
      if (ends) return { kind: 'end' };
      if (!matchesRule(match, e)) return { kind: 'none' };
      const dwell = (w.last.getTime() - w.first.getTime()) / 1000;
      if (dwell >= (match.min_dwell_seconds ?? 0)) return { kind: 'alert' };
      return moved ? { kind: 'seen' } : { kind: 'none' };
    }
    case 'alerted':
      if (ends) return { kind: 'cancel' };
      if (!w.newest) return { kind: 'none' };
      if (fingerprintOf(e) !== incident.fingerprint) return { kind: 'update' };
      return moved ? { kind: 'seen' } : { kind: 'none' };
    default:
      return { kind: 'none' };
  }
}
