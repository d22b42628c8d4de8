import { sql, type Kysely, type KyselyPlugin } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useDatabase } from '@vigil/testkit';
import { EventReader, readPartitionSpan, type EventFilter } from '../src/api/event-store.js';
import { createDb, migrateToLatest } from '../src/index.js';
import type { Database } from '../src/storage/tables.js';
import { uuidV7 } from './api-fixtures.js';

// The events list walks daily windows newest first (api/event-windows.ts). Against a real PostgreSQL: paging
// through everything, with filters, page sizes and clocks, gives exactly what one naive query gives (same rows,
// same order, no duplicate, no gap), over empty days, days without a partition, midnight edges and ties.

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 1);
const micro = (ms: number, us = 0): string =>
  new Date(ms).toISOString().replace('Z', `${String(us).padStart(3, '0')}Z`);

interface Row {
  event_id: string;
  tenant_id: string;
  site_id: string;
  device_id: string;
  camera_id: string;
  label: string;
  zones: string[];
  at: string;
}

let seed = 42;
const rnd = (): number => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed / 2 ** 32;
};
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;

// 2026-01-01 .. 2026-03-31: partitions for every day but a few (a gap with no partition at all), events on
// most days, none on a run of empty partitions, bursts of events at the same microsecond, events exactly at
// midnight and at the last microsecond of a day; another tenant with the same ids; future partitions, empty.
const DAYS = 90;
const noPartition = new Set([20, 21, 22, 50]);
const emptyDays = new Set([5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 33, 34, 89]);
const rows: Row[] = [];
for (let day = 0; day < DAYS; day++) {
  if (noPartition.has(day) || emptyDays.has(day)) continue;
  const n = day % 10 === 0 ? 40 : 1 + Math.floor(rnd() * 12);
  for (let k = 0; k < n; k++) {
    // The first event of a day exactly at midnight, the second at its last microsecond.
    const ms = T0 + day * DAY + (k === 0 ? 0 : k === 1 ? DAY - 1 : Math.floor(rnd() * DAY));
    const at = micro(ms, k === 0 ? 0 : k === 1 ? 999 : k % 1000);
    const burst = k % 9 === 2 ? 3 : 1; // the same instant, several ids: event_id breaks the tie
    for (let b = 0; b < burst; b++)
      for (const tenant of rnd() < 0.85 ? ['acme'] : ['acme', 'globex']) {
        const site = pick(['hq', 'lab', 'depot']);
        rows.push({
          event_id: uuidV7(ms),
          tenant_id: tenant,
          site_id: site,
          device_id: `${site}-gw-${1 + Math.floor(rnd() * 2)}`,
          camera_id: pick(['cam1', 'cam2']),
          label: pick(['person', 'person', 'car', 'dog']),
          zones: rnd() < 0.2 ? ['door'] : [],
          at,
        });
      }
  }
}

async function insert(db: Kysely<Database>, all: readonly Row[]): Promise<void> {
  for (let day = -3; day < DAYS + 5; day++) {
    if (noPartition.has(day)) continue;
    const name = new Date(T0 + day * DAY).toISOString().slice(0, 10);
    await sql`select vigil_ensure_event_partition(${name}::date)`.execute(db);
  }
  for (let i = 0; i < all.length; i += 500)
    await db
      .insertInto('events')
      .values(
        all.slice(i, i + 500).map((e, j) => ({
          event_id: e.event_id,
          occurred_at: sql<Date>`${e.at}::timestamptz`,
          tenant_id: e.tenant_id,
          site_id: e.site_id,
          device_id: e.device_id,
          camera_id: e.camera_id,
          track_id: `t${i + j}`,
          phase: 'start',
          label: e.label,
          score: 0.5,
          box_x: 0.1,
          box_y: 0.2,
          box_w: 0.3,
          box_h: 0.4,
          zones: e.zones,
          priority: 0,
          attributes: '{}',
          payload: Buffer.from([1]),
        })),
      )
      .execute();
}

type Filter = Omit<EventFilter, 'limit' | 'after'>;

/** The reference: one query over the whole table, no window, the API's order. */
async function naive(db: Kysely<Database>, tenant: string, f: Filter): Promise<string[]> {
  let q = db.selectFrom('events').select('event_id').where('tenant_id', '=', tenant);
  if (f.site !== undefined) q = q.where('site_id', '=', f.site);
  if (f.device !== undefined) q = q.where('device_id', '=', f.device);
  if (f.camera !== undefined) q = q.where('camera_id', '=', f.camera);
  if (f.label !== undefined) q = q.where('label', '=', f.label);
  if (f.zone !== undefined) q = q.where(sql<boolean>`zones @> array[${f.zone}]::text[]`);
  if (f.since !== undefined) q = q.where('occurred_at', '>=', f.since);
  if (f.until !== undefined) q = q.where('occurred_at', '<', f.until);
  const r = await q.orderBy('occurred_at', 'desc').orderBy('event_id', 'desc').execute();
  return r.map((x) => x.event_id);
}

/** Statements run through the returned db (the catalog read is a raw query, the windows are selects). */
function counting(db: Kysely<Database>): { db: Kysely<Database>; selects: () => number } {
  let n = 0;
  const plugin: KyselyPlugin = {
    transformQuery: (args) => {
      n++;
      return args.node;
    },
    transformResult: (args) => Promise.resolve(args.result),
  };
  return { db: db.withPlugin(plugin), selects: () => n };
}

describe('events list by daily windows (real PostgreSQL)', () => {
  const dbUrl = useDatabase();
  let db: Kysely<Database>;
  beforeAll(async () => {
    db = createDb(dbUrl());
    await migrateToLatest(db as Kysely<unknown>);
    await insert(db, rows);
  });
  afterAll(() => db.destroy());

  async function walk(reader: EventReader, tenant: string, f: Filter, limit: number): Promise<string[]> {
    const seen: string[] = [];
    let after: EventFilter['after'];
    for (let pages = 0; pages < 5000; pages++) {
      const page = await reader.list(tenant, { ...f, limit, after });
      expect(page.items.length).toBeLessThanOrEqual(limit);
      seen.push(...page.items.map((e) => e.event_id));
      if (page.next === null) return seen;
      expect(page.items).toHaveLength(limit);
      after = page.next;
    }
    throw new Error('too many pages');
  }

  const d = (s: string): Date => new Date(s);
  const filters: Array<[string, Filter]> = [
    ['none', {}],
    ['site', { site: 'lab' }],
    ['device', { device: 'hq-gw-2' }],
    ['camera', { camera: 'cam1' }],
    ['label', { label: 'dog' }],
    ['site and label', { site: 'depot', label: 'car' }],
    ['zone', { zone: 'door' }],
    ['since', { since: d('2026-02-10T07:00:00Z') }],
    ['until at midnight', { until: d('2026-03-01T00:00:00Z') }],
    ['since and until inside a day', { since: d('2026-02-10T03:00:00Z'), until: d('2026-02-10T20:00:00Z') }],
    ['since/until over the gap', { since: d('2026-01-20T00:00:00Z'), until: d('2026-01-25T00:00:00Z') }],
    ['nothing matches', { label: 'unicorn' }],
  ];
  const clocks: Array<[string, Date]> = [
    ['mid-data', d('2026-02-15T10:00:00Z')],
    ['after the data', d('2026-05-01T00:00:00Z')],
    ['before the data', d('2025-06-01T00:00:00Z')],
  ];

  it('the data set has what the walk must handle', () => {
    expect(rows.length).toBeGreaterThan(500);
    expect(rows.some((r) => r.at.endsWith('T00:00:00.000000Z'))).toBe(true);
    expect(rows.some((r) => r.at.endsWith('T23:59:59.999999Z'))).toBe(true);
    const ats = rows.filter((r) => r.tenant_id === 'acme').map((r) => r.at);
    expect(new Set(ats).size).toBeLessThan(ats.length);
  });

  it.each(filters)('pages through everything like one naive query: %s', async (_name, f) => {
    const expected = await naive(db, 'acme', f);
    if (f.label !== 'unicorn') expect(expected.length).toBeGreaterThan(5);
    for (const [clock, now] of clocks)
      for (const limit of expected.length > 150 ? [7, 500] : [1, 50]) {
        const reader = new EventReader(db, { now: () => now });
        const got = await walk(reader, 'acme', f, limit);
        expect(got, `${clock}, limit ${limit}`).toEqual(expected);
      }
  });

  it('never mixes tenants', async () => {
    const reader = new EventReader(db);
    const globex = await walk(reader, 'globex', {}, 50);
    expect(globex).toEqual(await naive(db, 'globex', {}));
    expect(globex.length).toBeGreaterThan(0);
    expect(await walk(reader, 'initech', {}, 50)).toEqual([]);
  });

  it('reads one statement when the newest day fills the page, pruned to that day’s partition', async () => {
    const c = counting(db);
    const reader = new EventReader(db, { readHeavy: (q) => q(c.db), now: () => d('2026-03-30T23:00:00Z') });
    // Day 30 (January 31) has 40 events.
    const page = await reader.list('acme', { until: d('2026-02-01T00:00:00Z'), limit: 10 });
    expect(page.items).toHaveLength(10);
    // The catalog read (then kept for a while) and one statement.
    expect(c.selects()).toBe(2);
    await reader.list('acme', { until: d('2026-02-01T00:00:00Z'), limit: 10, after: page.next ?? undefined });
    expect(c.selects()).toBe(3);

    const plan = async (f: Omit<EventFilter, 'limit'>, from: string, to: string | null) =>
      (
        await reader
          .listQuery(db, 'acme', { ...f, limit: 10 }, { from: d(from), to: to === null ? null : d(to) }, 11)
          .explain<{ 'QUERY PLAN': string }>()
      )
        .map((r) => r['QUERY PLAN'])
        .join('\n');
    const partitions = (p: string): string[] => [...new Set(p.match(/events_\d{8}/g))].sort();
    // A cursor page: the window is open above, the cursor's bound prunes at plan time (bound parameters).
    const cursor = {
      occurredAt: '2026-01-31T12:00:00.000000Z',
      eventId: '00000000-0000-7000-8000-000000000000',
    };
    const one = await plan({ site: 'hq', after: cursor }, '2026-01-31T00:00:00Z', null);
    expect(partitions(one)).toEqual(['events_20260131']);
    expect(one).not.toContain('Subplans Removed');
    const four = await plan({ site: 'hq' }, '2026-01-27T00:00:00Z', '2026-01-31T00:00:00Z');
    expect(partitions(four)).toEqual([
      'events_20260127',
      'events_20260128',
      'events_20260129',
      'events_20260130',
    ]);
  });

  it('walks an empty filter down to the oldest partition in a logarithmic number of statements', async () => {
    const c = counting(db);
    const reader = new EventReader(db, { readHeavy: (q) => q(c.db), now: () => d('2026-03-31T12:00:00Z') });
    expect((await reader.list('acme', { label: 'unicorn', limit: 50 })).items).toEqual([]);
    // 1 catalog read + March 31, then 1, 2, 4, 8, 16 and 32 days back, then all older (open below).
    expect(c.selects()).toBe(9);
  });

  it('reads the partition bounds from the catalog', async () => {
    expect(await readPartitionSpan(db)).toEqual({
      oldest: d('2025-12-29T00:00:00Z'),
      newest: d('2026-04-06T00:00:00Z'),
    });
  });
});
