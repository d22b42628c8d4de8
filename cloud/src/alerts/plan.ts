import type { NewEvent } from '../events/store.js';
import { committedView } from '../realtime/feed.js';
import type { AlertMessageInfo } from '../storage/tables.js';
import { decide, fingerprintOf, matchesRule, windowOf } from './rules.js';
import type { AlertIncident, AlertRule } from './store.js';

/*
 * What a batch of committed events does to the incidents of its tracks, and what the end sweeper does to the
 * incidents it closes: pure, on rows read (and locked) by the caller, so that a batch costs a fixed number of
 * statements (alerts/writes.ts) however many of its events match.
 */

interface Track {
  tenant_id: string;
  device_id: string;
  camera_id: string;
  track_id: string;
}

/** The per-track advisory lock key (pg_advisory_xact_lock(hashtextextended(key, 0))) of the hook and the end sweeper. */
export function trackLockKey(r: Track): string {
  return `alert-track\n${r.tenant_id}\n${r.device_id}\n${r.camera_id}\n${r.track_id}`;
}

/** One incident per (rule, device, camera, track): alert_incidents_track. */
export function incidentKey(ruleId: string, r: Omit<Track, 'tenant_id'>): string {
  return `${ruleId}\n${r.device_id}\n${r.camera_id}\n${r.track_id}`;
}

/** The CAP sender of a tenant's messages (no spaces or commas: it goes into `references`). */
export function senderOf(tenantId: string, domain: string): string {
  return `${tenantId}@${domain}`;
}

/** The next message of an incident, one per enabled target among `targetIds` (writes.ts picks them). */
export interface PlannedMessage {
  incident: Pick<AlertIncident, 'id' | 'tenant_id'>;
  /** The incident's seq after this message. */
  seq: number;
  msgType: 'Alert' | 'Update' | 'Cancel';
  eventId: string;
  info: AlertMessageInfo;
  targetIds: readonly string[];
  sender: string;
  sent: Date;
}

/** A committed END of a track (in `events`: committed before, or inserted by this very transaction). */
export interface TrackEnd extends Track {
  event_id: string;
  occurred_at: Date;
}

export interface BatchPlan {
  /** New incidents, as they stand after the batch. */
  inserts: AlertIncident[];
  /** Incidents read before the batch that it changed, as they stand after it. */
  updates: AlertIncident[];
  /** In the order they were decided (per incident: ascending seq). */
  messages: PlannedMessage[];
}

function infoOf(rule: AlertRule, e: ReturnType<typeof committedView>): AlertMessageInfo {
  return {
    rule: rule.cap,
    rule_name: rule.name,
    label: e.label,
    score: e.score,
    zones: e.zones,
    site_id: e.site_id,
    camera_id: e.camera_id,
    device_id: e.device_id,
    track_id: e.track_id,
    occurred_at: e.occurred_at,
    snapshot: e.snapshot
      ? { media_id: e.snapshot.media_id, sha256: e.snapshot.sha256, bytes: e.snapshot.size_bytes }
      : null,
  };
}

/** Rows of the batch that can open an incident of their tenant's rules, by track: they need the END lookup. */
export function tracksNeedingEnd(
  rows: readonly NewEvent[],
  rulesByTenant: ReadonlyMap<string, readonly AlertRule[]>,
  incidents: readonly Pick<AlertIncident, 'rule_id' | 'device_id' | 'camera_id' | 'track_id'>[],
  at: Date,
): Array<Track & { since: Date }> {
  const have = new Set(incidents.map((i) => incidentKey(i.rule_id, i)));
  const out = new Map<string, Track & { since: Date }>();
  for (const row of rows) {
    if (row.phase === 'end') continue; // an END never opens an incident
    const rules = rulesByTenant.get(row.tenant_id);
    if (!rules) continue;
    const e = committedView(row, at);
    // Only a rule this event matches and whose incident is not there yet can open one (decide).
    if (!rules.some((r) => !have.has(incidentKey(r.id, row)) && matchesRule(r.match, e))) continue;
    const track = {
      tenant_id: row.tenant_id,
      device_id: row.device_id,
      camera_id: row.camera_id,
      track_id: row.track_id,
    };
    const k = trackLockKey(track);
    const seen = out.get(k);
    if (!seen || row.occurred_at.getTime() < seen.since.getTime())
      out.set(k, { ...track, since: row.occurred_at });
  }
  return [...out.values()];
}

/**
 * The decisions of one batch, event by event in the order they happened (an END in the same batch as the START
 * comes after it), each seeing what the ones before did: exactly what deciding each event against the rows as
 * the previous one left them would do. `incidents`: the locked rows of the batch's tracks and rules; `ends`:
 * the committed ENDs of the tracks that may open an incident (tracksNeedingEnd), at or after its `since`.
 */
export function planBatch(p: {
  ordered: readonly NewEvent[];
  rulesByTenant: ReadonlyMap<string, readonly AlertRule[]>;
  incidents: readonly AlertIncident[];
  ends: readonly TrackEnd[];
  at: Date;
  endGraceMs: number;
  senderDomain: string;
  newId: () => string;
}): BatchPlan {
  const { at } = p;
  const byKey = new Map<string, AlertIncident>();
  for (const i of p.incidents) byKey.set(incidentKey(i.rule_id, i), { ...i });
  const inserted = new Set<string>();
  const changed = new Set<string>();
  const endsByTrack = new Map<string, TrackEnd[]>();
  for (const end of p.ends) {
    const k = trackLockKey(end);
    endsByTrack.set(k, [...(endsByTrack.get(k) ?? []), end]);
  }
  // The first committed END of the track at or after t (what `select ... order by occurred_at limit 1` gave).
  const endOfTrack = (track: Track, t: Date): TrackEnd | undefined => {
    let first: TrackEnd | undefined;
    for (const end of endsByTrack.get(trackLockKey(track)) ?? [])
      if (end.occurred_at.getTime() >= t.getTime() && (!first || end.occurred_at < first.occurred_at))
        first = end;
    return first;
  };
  const messages: PlannedMessage[] = [];
  for (const row of p.ordered) {
    const rules = p.rulesByTenant.get(row.tenant_id);
    if (!rules) continue;
    const e = committedView(row, at);
    const t = new Date(e.occurred_at);
    for (const rule of rules) {
      const key = incidentKey(rule.id, e);
      const incident = byKey.get(key);
      const touch = (): void => {
        if (!inserted.has(key)) changed.add(key);
      };
      // After its track's recorded end: nothing of this track is news any more.
      if (incident?.end_at && t.getTime() > incident.end_at.getTime()) continue;
      if (e.phase === 'end') {
        // The END closes nothing here: another ingest process may still be committing earlier events of the
        // track (their Update goes first). The end sweeper closes it once due (migration 0032).
        if (!incident || (incident.state !== 'pending' && incident.state !== 'alerted')) continue;
        if (incident.end_at && incident.end_at.getTime() <= t.getTime()) continue;
        incident.end_at = t;
        incident.end_event_id = e.event_id;
        incident.end_due_at ??= new Date(at.getTime() + p.endGraceMs);
        incident.updated_at = at;
        touch();
        continue;
      }
      const d = decide(rule.match, incident, e);
      // 'cancel' is an END's: handled above (the end sweeper sends the Cancel).
      if (d.kind === 'none' || d.kind === 'cancel') continue;
      if (d.kind === 'end') {
        incident!.state = 'ended';
        incident!.updated_at = at;
        incident!.last_event_id = e.event_id;
        touch();
        continue;
      }
      // The incident's window and fingerprint after this event (an older event leaves the fingerprint).
      const w = incident ? windowOf(incident, e) : undefined;
      const fingerprint = !incident || w!.newest ? fingerprintOf(e) : incident.fingerprint;
      const firstSeen = w?.first ?? new Date(e.occurred_at);
      const lastSeen = w?.last ?? new Date(e.occurred_at);
      if (d.kind === 'seen') {
        Object.assign(incident!, {
          first_seen_at: firstSeen,
          last_seen_at: lastSeen,
          fingerprint,
          updated_at: at,
        });
        touch();
        continue;
      }
      let current: AlertIncident;
      if (!incident) {
        // The track's END may already be committed (by another ingest process, ahead of this event): the new
        // incident starts with its end recorded, so the sweeper closes it.
        const ended = endOfTrack(e, t);
        current = {
          id: p.newId(),
          tenant_id: row.tenant_id,
          rule_id: rule.id,
          site_id: e.site_id,
          device_id: e.device_id,
          camera_id: e.camera_id,
          track_id: e.track_id,
          state: 'pending',
          first_seen_at: firstSeen,
          last_seen_at: lastSeen,
          last_event_id: e.event_id,
          fingerprint,
          seq: 0,
          created_at: at,
          updated_at: at,
          cancelled_by: null,
          end_at: ended?.occurred_at ?? null,
          end_event_id: ended?.event_id ?? null,
          end_due_at: ended ? new Date(at.getTime() + p.endGraceMs) : null,
        };
        byKey.set(key, current);
        inserted.add(key);
        if (d.kind === 'pending') continue;
      } else current = incident;
      const msgType = d.kind === 'alert' ? 'Alert' : 'Update';
      Object.assign(current, {
        state: 'alerted',
        seq: current.seq + 1,
        first_seen_at: firstSeen,
        last_seen_at: lastSeen,
        fingerprint,
        last_event_id: e.event_id,
        updated_at: at,
      });
      touch();
      messages.push({
        incident: { id: current.id, tenant_id: current.tenant_id },
        seq: current.seq,
        msgType,
        eventId: e.event_id,
        info: infoOf(rule, e),
        targetIds: rule.target_ids,
        sender: senderOf(row.tenant_id, p.senderDomain),
        sent: at,
      });
    }
  }
  return {
    inserts: [...inserted].map((k) => byKey.get(k)!),
    updates: [...changed].map((k) => byKey.get(k)!),
    messages,
  };
}

/**
 * How the end sweeper closes one due incident (read and locked by the caller): an alerted one gets its Cancel,
 * carrying what its last message said at the time the track ended; a pending one is closed silently; one
 * already closed (an operator's cancel) only loses its due time. `last`: the info of its newest message.
 */
export function planClose(
  incident: AlertIncident,
  last: AlertMessageInfo | undefined,
  rule: Pick<AlertRule, 'target_ids'> | undefined,
  at: Date,
  senderDomain: string,
): { incident: AlertIncident; message: PlannedMessage | undefined } {
  const done: AlertIncident = {
    ...incident,
    end_due_at: null,
    updated_at: at,
    last_event_id: incident.end_event_id ?? incident.last_event_id,
  };
  if (incident.state !== 'alerted')
    return {
      incident: incident.state === 'pending' ? { ...done, state: 'ended' } : done,
      message: undefined,
    };
  const closed: AlertIncident = { ...done, state: 'ended', seq: incident.seq + 1 };
  if (!last || !rule) return { incident: closed, message: undefined };
  return {
    incident: closed,
    message: {
      incident: { id: incident.id, tenant_id: incident.tenant_id },
      seq: closed.seq,
      msgType: 'Cancel',
      eventId: incident.end_event_id ?? incident.last_event_id,
      info: { ...last, occurred_at: (incident.end_at ?? at).toISOString(), reason: 'track ended' },
      targetIds: rule.target_ids,
      sender: senderOf(incident.tenant_id, senderDomain),
      sent: at,
    },
  };
}
