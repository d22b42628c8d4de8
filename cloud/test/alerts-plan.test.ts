// The alert commit hook and the end sweeper decide in memory (alerts/plan.ts) and write set-based: deciding a
// batch at once must be exactly deciding its events one at a time against the rows as the previous one left
// them (what the hook did before, one statement per event).
import { describe, expect, it } from 'vitest';
import type { NewEvent } from '../src/events/store.js';
import {
  planBatch,
  planClose,
  tracksNeedingEnd,
  type BatchPlan,
  type PlannedMessage,
  type TrackEnd,
} from '../src/alerts/plan.js';
import type { AlertIncident, AlertRule } from '../src/alerts/store.js';
import type { AlertRuleMatch } from '../src/storage/tables.js';
import { END_GRACE_MS as GRACE, INTRUSION, T0, countedEventId, eventRows } from './support/alert-events.js';

const at = new Date('2026-12-07T10:00:10Z');
const row = eventRows(countedEventId);

function rule(id: string, match: AlertRuleMatch = {}, tenant = 'acme'): AlertRule {
  return {
    id,
    tenant_id: tenant,
    name: id,
    match,
    cap: INTRUSION,
    target_ids: ['tg-1'],
    enabled: true,
  } as AlertRule;
}

const ends = (rows: readonly NewEvent[]): TrackEnd[] =>
  rows
    .filter((r) => r.phase === 'end')
    .map((r) => ({
      tenant_id: r.tenant_id,
      device_id: r.device_id,
      camera_id: r.camera_id,
      track_id: r.track_id,
      event_id: r.event_id,
      occurred_at: r.occurred_at,
    }));

const ids = () => {
  let i = 0;
  return () => `inc-${++i}`;
};

function plan(
  ordered: NewEvent[],
  rules: AlertRule[],
  incidents: AlertIncident[] = [],
  committedEnds: TrackEnd[] = [],
  newId = ids(),
  when = at,
): BatchPlan {
  const rulesByTenant = new Map<string, AlertRule[]>();
  for (const r of rules) rulesByTenant.set(r.tenant_id, [...(rulesByTenant.get(r.tenant_id) ?? []), r]);
  return planBatch({
    ordered,
    rulesByTenant,
    incidents,
    ends: committedEnds,
    at: when,
    endGraceMs: GRACE,
    senderDomain: 'vigil.test',
    newId,
  });
}

/** The hook as it was: each event decided alone, on the rows the events before it left (re-read). */
function oneByOne(ordered: NewEvent[], rules: AlertRule[], allEnds: TrackEnd[]) {
  const newId = ids();
  const rows = new Map<string, AlertIncident>();
  const messages: PlannedMessage[] = [];
  for (const r of ordered) {
    const p = plan([r], rules, [...rows.values()], allEnds, newId);
    for (const i of [...p.inserts, ...p.updates]) rows.set(i.id, i);
    messages.push(...p.messages);
  }
  return { rows, messages };
}

describe('alert batch plan (pure)', () => {
  it('START, ZONE_ENTER, END of a track in one batch: Alert then Update, the END recorded, not closed', () => {
    const batch = [
      row('t1', 'start', 0),
      row('t1', 'zone_enter', 1000, { zones: ['door', 'hall'] }),
      row('t1', 'end', 2000, { zones: [] }),
    ];
    const p = plan(batch, [rule('r1')], [], ends(batch));
    expect(p.updates).toEqual([]);
    expect(p.inserts).toHaveLength(1);
    expect(p.inserts[0]).toMatchObject({
      id: 'inc-1',
      state: 'alerted',
      seq: 2,
      // The END of the batch is found when the START opens the incident (the transaction sees its own rows).
      end_at: batch[2]!.occurred_at,
      end_event_id: batch[2]!.event_id,
      end_due_at: new Date(at.getTime() + GRACE),
      last_event_id: batch[1]!.event_id,
      first_seen_at: batch[0]!.occurred_at,
      last_seen_at: batch[1]!.occurred_at,
    });
    expect(p.messages.map((m) => [m.msgType, m.seq, m.eventId])).toEqual([
      ['Alert', 1, batch[0]!.event_id],
      ['Update', 2, batch[1]!.event_id],
    ]);
    expect(p.messages[1]!.info.zones).toEqual(['door', 'hall']);
  });

  it('an END committed earlier (another process) closes the incident opened after it; an older END does not', () => {
    const end = row('t2', 'end', 5000);
    const p = plan([row('t2', 'start', 0)], [rule('r1')], [], ends([end]));
    expect(p.inserts[0]).toMatchObject({
      end_at: end.occurred_at,
      end_due_at: new Date(at.getTime() + GRACE),
    });
    const old = row('t2', 'end', -5000);
    const q = plan([row('t2', 'start', 0)], [rule('r1')], [], ends([old]));
    expect(q.inserts[0]).toMatchObject({ end_at: null, end_due_at: null });
  });

  it('an existing incident: Update on change, the END recorded once (first due time kept), later events ignored', () => {
    const first = plan([row('t3', 'start', 0)], [rule('r1')]);
    const inc = first.inserts[0]!;
    const batch = [
      row('t3', 'zone_enter', 1000, { zones: ['hall'] }),
      row('t3', 'end', 2000),
      row('t3', 'update', 3000, { zones: ['yard'] }), // after the recorded end: not news
    ];
    const p = plan(batch, [rule('r1')], [{ ...inc }]);
    expect(p.inserts).toEqual([]);
    expect(p.updates).toHaveLength(1);
    expect(p.updates[0]).toMatchObject({ id: inc.id, seq: 2, end_at: batch[1]!.occurred_at });
    expect(p.messages.map((m) => m.msgType)).toEqual(['Update']);
    const later = new Date(at.getTime() + 1000);
    const again = plan([row('t3', 'end', 1500)], [rule('r1')], [p.updates[0]!], [], ids(), later);
    expect(again.updates[0]).toMatchObject({
      end_at: new Date(T0 + 1500),
      end_due_at: p.updates[0]!.end_due_at, // the grace runs from the first END recorded
    });
  });

  it('deciding a batch at once is deciding its events one at a time (tracks, rules, tenants, dwell, out of order)', () => {
    const rules = [
      rule('r-all'),
      rule('r-hall', { zones: ['hall'], min_dwell_seconds: 1 }),
      rule('r-gx', {}, 'globex'),
    ];
    const batch: NewEvent[] = [];
    for (let t = 0; t < 12; t++) {
      const track = `t-${t % 6}`; // two runs of each track id: the second after its END
      const base = t * 700;
      batch.push(
        row(track, 'start', base + 100, { zones: t % 2 ? ['door'] : ['hall'] }),
        row(track, 'zone_enter', base + 600, { zones: ['door', 'hall'] }),
        row(track, 'update', base + 300, { zones: ['hall'], label: t % 3 ? 'person' : 'car' }),
        row(track, 'end', base + 900 + (t % 4) * 500, { zones: [] }),
        row(track, 'update', base + 1200, { tenant_id: 'globex', zones: ['yard'] }),
      );
    }
    const ordered = [...batch].sort((a, b) => a.occurred_at.getTime() - b.occurred_at.getTime());
    const all = ends(ordered);
    const once = plan(ordered, rules, [], all);
    const single = oneByOne(ordered, rules, all);
    expect(once.messages).toEqual(single.messages);
    expect(once.inserts).toEqual([...single.rows.values()]);
    expect(once.messages.length).toBeGreaterThan(20);
    expect(new Set(once.messages.map((m) => m.msgType))).toEqual(new Set(['Alert', 'Update']));
  });

  it('only tracks that may open an incident look up their END, from their earliest such event', () => {
    const rules = new Map([['acme', [rule('r-person', { labels: ['person'] })]]]);
    const existing = plan([row('has', 'start', 0)], [rule('r-person', { labels: ['person'] })]).inserts;
    const rows = [
      row('has', 'update', 100), // has its incident
      row('new', 'update', 300),
      row('new', 'start', 200),
      row('car', 'start', 0, { label: 'car' }), // matches no rule
      row('gone', 'end', 0), // an END opens nothing
      row('other', 'start', 0, { tenant_id: 'initech' }), // no rules
    ];
    expect(tracksNeedingEnd(rows, rules, existing, at)).toEqual([
      { tenant_id: 'acme', device_id: 'gw-1', camera_id: 'gate', track_id: 'new', since: new Date(T0 + 200) },
    ]);
  });

  it('closing: an alerted incident gets its Cancel (seq + 1, at the END time), a pending one ends silently', () => {
    const p = plan([row('t5', 'start', 0)], [rule('r1')]);
    const end = row('t5', 'end', 4000);
    const alerted = { ...p.inserts[0]!, end_at: end.occurred_at, end_event_id: end.event_id, end_due_at: at };
    const last = p.messages[0]!.info;
    const c = planClose(alerted, last, { target_ids: ['tg-1'] }, at, 'vigil.test');
    expect(c.incident).toMatchObject({
      state: 'ended',
      seq: 2,
      end_due_at: null,
      last_event_id: end.event_id,
    });
    expect(c.message).toMatchObject({
      msgType: 'Cancel',
      seq: 2,
      eventId: end.event_id,
      sender: 'acme@vigil.test',
    });
    expect(c.message!.info).toEqual({
      ...last,
      occurred_at: end.occurred_at.toISOString(),
      reason: 'track ended',
    });
    expect(planClose(alerted, undefined, { target_ids: [] }, at, 'x').message).toBeUndefined();
    const pending = planClose({ ...alerted, state: 'pending', seq: 0 }, undefined, undefined, at, 'x');
    expect(pending).toMatchObject({
      incident: { state: 'ended', seq: 0, end_due_at: null },
      message: undefined,
    });
    const cancelled = planClose({ ...alerted, state: 'cancelled' }, last, undefined, at, 'x');
    expect(cancelled).toMatchObject({ incident: { state: 'cancelled', seq: 1, end_due_at: null } });
  });
});
