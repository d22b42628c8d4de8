// The alert commit hook and the end sweeper, set-based, on real PostgreSQL with an injected clock: a batch of
// many tracks decided in one go (incidents, Alert and Update with their references, ENDs recorded), an END
// committed in an earlier batch found by the incident opened after it, and the sweeper closing N incidents in one
// transaction per pass of END_SWEEP_BATCH, leaving the incidents of a track whose lock is busy to a later pass,
// and two sweepers (two processes) closing each incident once.
import { useDatabase } from '@vigil/testkit';
import { sql, type Kysely } from 'kysely';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlertEndSweeper, END_SWEEP_BATCH } from '../src/alerts/end-sweeper.js';
import { AlertOutbox } from '../src/alerts/outbox.js';
import { trackLockKey } from '../src/alerts/plan.js';
import { AlertStore } from '../src/alerts/store.js';
import { EventStore, utcDay, type NewEvent } from '../src/events/store.js';
import { createDb } from '../src/index.js';
import { migrateToLatest } from '../src/storage/migrate.js';
import type { Database } from '../src/storage/tables.js';
import { END_GRACE_MS as GRACE, INTRUSION, T0, eventRows } from './support/alert-events.js';

const log = pino({ level: 'silent' });
const event = eventRows();
// The same device and track ids in both tenants: nothing may cross.
const row = (tenant: string, track: string, phase: string, ms: number, zones = ['door']): NewEvent =>
  event(track, phase, ms, { tenant_id: tenant, zones });

const track = (tenant: string, id: string) => ({
  tenant_id: tenant,
  device_id: 'gw-1',
  camera_id: 'gate',
  track_id: id,
});

describe('alert hook and end sweeper, set-based (PostgreSQL, injected clock)', () => {
  const dbUrl = useDatabase();
  let db: Kysely<Database>;
  let other: Kysely<Database>;
  let events: EventStore;
  let hook: AlertOutbox;
  let now = new Date(T0 + 10_000);
  const clock = () => now;
  const sweeper = (d: Kysely<Database>) =>
    new AlertEndSweeper(d, 'vigil.test', 500, log, new Registry(), clock);
  const commit = async (rows: NewEvent[]) => events.insertBatchIds(rows, await hook.prepare(rows));
  const incident = (tenant: string, id: string) =>
    db
      .selectFrom('alert_incidents')
      .selectAll()
      .where('tenant_id', '=', tenant)
      .where('track_id', '=', id)
      .executeTakeFirstOrThrow();
  const messages = (incidentId: string) =>
    db
      .selectFrom('alert_messages')
      .select(['seq', 'msg_type', 'identifier', 'references_id', 'event_id', 'info'])
      .where('incident_id', '=', incidentId)
      .orderBy('seq')
      .execute();
  const count = async (q: string) =>
    Number((await sql<{ n: string }>`select count(*) as n from ${sql.raw(q)}`.execute(db)).rows[0]!.n);

  beforeAll(async () => {
    db = createDb(dbUrl(), 4);
    other = createDb(dbUrl(), 2);
    await migrateToLatest(db as Kysely<unknown>);
    events = new EventStore(db);
    await events.ensurePartition(utcDay(new Date(T0)));
    const store = new AlertStore(db, clock);
    for (const [tenant, match] of [
      ['acme', {}],
      ['globex', { min_dwell_seconds: 60 }], // stays pending: closed silently
    ] as const) {
      const { target } = await store.createTarget({
        tenantId: tenant,
        name: 'feed',
        url: null,
        auth: 'feed',
        delivery: 'pull',
        createdBy: 'test',
      });
      await store.createRule({
        tenantId: tenant,
        name: 'all',
        match,
        cap: INTRUSION,
        targetIds: [target.id],
        createdBy: 'test',
      });
    }
    hook = new AlertOutbox(store, 'vigil.test', log, new Registry(), clock, () => undefined, GRACE);
  });
  afterAll(async () => {
    await other?.destroy();
    await db?.destroy();
  });

  const TRACKS = 120;

  it('one batch of many tracks: an incident each, Alert then Update referencing it, the END recorded', async () => {
    // An END committed alone first (another process, ahead of its START): it opens nothing.
    await commit([row('acme', 'late', 'end', 20_000, [])]);
    expect(await count('alert_incidents')).toBe(0);
    const batch: NewEvent[] = [];
    for (let i = 0; i < TRACKS; i++)
      batch.push(
        row('acme', `t-${i}`, 'start', i * 10),
        row('acme', `t-${i}`, 'zone_enter', i * 10 + 1000, ['door', 'hall']),
        row('acme', `t-${i}`, 'end', i * 10 + 2000, []),
      );
    batch.push(row('acme', 'late', 'start', 19_000), row('globex', 't-0', 'start', 0));
    batch.push(row('globex', 't-0', 'end', 500, []));
    // Shuffled: the hook decides in event time.
    batch.sort(() => Math.random() - 0.5);
    expect(await commit(batch)).toHaveLength(batch.length);

    expect(await count('alert_incidents')).toBe(TRACKS + 2);
    const t7 = await incident('acme', 't-7');
    expect(t7).toMatchObject({
      state: 'alerted',
      seq: 2,
      end_at: new Date(T0 + 2070),
      end_due_at: new Date(now.getTime() + GRACE),
    });
    const m7 = await messages(t7.id);
    expect(m7.map((m) => [m.seq, m.msg_type])).toEqual([
      [1, 'Alert'],
      [2, 'Update'],
    ]);
    expect(m7[0]!.references_id).toBeNull();
    expect(m7[1]!.references_id).toContain(`,${m7[0]!.identifier},`);
    expect(m7[1]!.info.zones).toEqual(['door', 'hall']);
    // The END committed in the earlier batch: the incident opened after it starts with its end recorded.
    expect(await incident('acme', 'late')).toMatchObject({ state: 'alerted', end_at: new Date(T0 + 20_000) });
    expect(await incident('globex', 't-0')).toMatchObject({
      state: 'pending',
      seq: 0,
      end_at: new Date(T0 + 500),
    });
    expect(await count('alert_messages')).toBe(TRACKS * 2 + 1);
    expect(await count(`webhook_outbox where subject = 'vigil.jobs.alerts.deliver'`)).toBe(TRACKS * 2 + 1);

    // The same events again (a redelivery) and nothing else: nothing decided twice.
    expect(await commit(batch.slice(0, 10))).toEqual([]);
    expect(await count('alert_messages')).toBe(TRACKS * 2 + 1);
  });

  it('the sweeper closes the due incidents END_SWEEP_BATCH per transaction: Cancels referencing the Update', async () => {
    const s = sweeper(db);
    expect(await s.sweep()).toEqual({ due: 0, closed: 0, busy: 0 }); // the grace is not over
    now = new Date(now.getTime() + GRACE);
    expect(await s.sweep()).toEqual({ due: END_SWEEP_BATCH, closed: END_SWEEP_BATCH, busy: 0 });
    const rest = TRACKS + 2 - END_SWEEP_BATCH;
    expect(await s.sweep()).toEqual({ due: rest, closed: rest, busy: 0 });
    expect(await s.sweep()).toEqual({ due: 0, closed: 0, busy: 0 });

    expect(await count(`alert_incidents where state <> 'ended' or end_due_at is not null`)).toBe(0);
    const t7 = await incident('acme', 't-7');
    expect(t7).toMatchObject({ seq: 3, last_event_id: t7.end_event_id });
    const m7 = await messages(t7.id);
    expect(m7.map((m) => m.msg_type)).toEqual(['Alert', 'Update', 'Cancel']);
    expect(m7[2]!.references_id).toContain(`,${m7[1]!.identifier},`);
    expect(m7[2]!.event_id).toBe(t7.end_event_id);
    expect(m7[2]!.info).toMatchObject({
      zones: ['door', 'hall'],
      occurred_at: new Date(T0 + 2070).toISOString(),
    });
    const late = await incident('acme', 'late');
    expect((await messages(late.id)).map((m) => m.msg_type)).toEqual(['Alert', 'Cancel']);
    // The pending one (dwell never reached) closed silently.
    const gx = await incident('globex', 't-0');
    expect(gx).toMatchObject({ state: 'ended', seq: 0 });
    expect(await messages(gx.id)).toEqual([]);
    expect(await count(`alert_messages where msg_type = 'Cancel'`)).toBe(TRACKS + 1);
    expect(await count(`webhook_outbox where subject = 'vigil.jobs.alerts.deliver'`)).toBe(TRACKS * 3 + 2);
  });

  it('an incident whose track lock is busy is left due; the next pass closes it', async () => {
    await commit([
      row('acme', 'busy', 'start', 30_000),
      row('acme', 'busy', 'end', 31_000),
      row('acme', 'free', 'start', 30_000),
      row('acme', 'free', 'end', 31_000),
    ]);
    now = new Date(now.getTime() + GRACE);
    // Another transaction (an ingest batch committing an event of the track) holds the track's lock.
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let locked!: () => void;
    const holding = new Promise<void>((r) => (locked = r));
    const holder = other.transaction().execute(async (tx) => {
      await sql`select pg_advisory_xact_lock(hashtextextended(${trackLockKey(track('acme', 'busy'))}, 0))`.execute(
        tx,
      );
      locked();
      await released;
    });
    await holding;
    const s = sweeper(db);
    expect(await s.sweep()).toEqual({ due: 2, closed: 1, busy: 1 });
    expect(await incident('acme', 'free')).toMatchObject({ state: 'ended', end_due_at: null });
    const left = await incident('acme', 'busy');
    expect(left.state).toBe('alerted');
    expect(left.end_due_at).toBeInstanceOf(Date); // still due
    expect(await s.sweep()).toEqual({ due: 1, closed: 0, busy: 1 }); // still busy: nothing waits on it
    release();
    await holder;
    expect(await s.sweep()).toEqual({ due: 1, closed: 1, busy: 0 });
    const busy = await incident('acme', 'busy');
    expect(busy).toMatchObject({ state: 'ended', seq: 2 });
    expect((await messages(busy.id)).map((m) => m.msg_type)).toEqual(['Alert', 'Cancel']);
  });

  it('two sweepers (two processes) at once close each incident once', async () => {
    const batch: NewEvent[] = [];
    for (let i = 0; i < 150; i++)
      batch.push(
        row('acme', `two-${i}`, 'start', 40_000 + i),
        row('acme', `two-${i}`, 'end', 41_000 + i, []),
      );
    await commit(batch);
    now = new Date(now.getTime() + GRACE);
    const [a, b] = [sweeper(db), sweeper(other)];
    for (let pass = 0; pass < 20; pass++) {
      const [x, y] = await Promise.all([a.sweep(), b.sweep()]);
      if (x.due === 0 && y.due === 0) break;
    }
    expect(await count(`alert_incidents where track_id like 'two-%' and state = 'ended'`)).toBe(150);
    const { rows } = await sql<{ n: number }>`
      select count(*)::int as n from alert_messages m join alert_incidents i on i.id = m.incident_id
       where i.track_id like 'two-%' group by i.id`.execute(db);
    expect(rows).toHaveLength(150);
    expect(rows.every((r) => r.n === 2)).toBe(true); // Alert and one Cancel each
  });
});
