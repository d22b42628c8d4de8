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
  fingerprint: string;
}

export type Decision =
  | { kind: 'none' }
  /** A new incident, waiting for its dwell. */
  | { kind: 'pending' }
  | { kind: 'alert' }
  | { kind: 'update' }
  | { kind: 'cancel' }
  /** A pending incident whose track ended before its dwell: closed, nothing sent. */
  | { kind: 'end' };

/**
 * What one event of a track does to the rule's incident for that track. Matching events open it (pending);
 * once the track has been seen for `min_dwell_seconds` (from its first matching event) it is alerted. An
 * alerted incident is updated when its label or zones change (whether or not the event still matches: the
 * person left the zone is news), and cancelled when the track ends. Cancelled or ended incidents stay closed.
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
  switch (incident.state) {
    case 'pending': {
      if (ends) return { kind: 'end' };
      if (!matchesRule(match, e)) return { kind: 'none' };
      const dwell = (Date.parse(e.occurred_at) - incident.first_seen_at.getTime()) / 1000;
      return dwell >= (match.min_dwell_seconds ?? 0) ? { kind: 'alert' } : { kind: 'none' };
    }
    case 'alerted':
      if (ends) return { kind: 'cancel' };
      return fingerprintOf(e) !== incident.fingerprint ? { kind: 'update' } : { kind: 'none' };
    default:
      return { kind: 'none' };
  }
}
