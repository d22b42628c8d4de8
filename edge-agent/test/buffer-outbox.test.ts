import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  openOutbox,
  Outbox,
  OUTBOX_MIGRATIONS,
  OUTBOX_SCHEMA_VERSION,
  type AppendEntry,
  type OpenOutboxOptions,
  type Priority,
} from '../src/buffer/index.js';
import { createUuidV7 } from '../src/lib/uuidv7.js';

let dir: string;
let clock: number;
const now = () => clock;
const open: { close(): void }[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vigil-outbox-'));
  clock = Date.UTC(2025, 5, 1);
});

afterEach(() => {
  for (const o of open.splice(0)) o.close();
  rmSync(dir, { recursive: true, force: true });
});

function outbox(opts: OpenOutboxOptions = {}, file = 'outbox.db'): Outbox {
  const o = openOutbox(join(dir, file), { now, ...opts });
  open.push(o);
  return o;
}

/** A second, read-side connection to look at the file the way an operator would. */
function peek(file = 'outbox.db'): Database.Database {
  const db = new Database(join(dir, file));
  open.push(db);
  return db;
}

const nextId = createUuidV7(() => clock);

function entry(priority: Priority, size = 100, media?: number): AppendEntry {
  const id = nextId();
  const e: AppendEntry = {
    id,
    priority,
    kind: 'track.start',
    subject: `vigil.v1.t1.d1.evt.cam${priority}`,
    payload: new Uint8Array(size).fill(priority + 1),
  };
  if (media !== undefined) e.media = { contentType: 'image/jpeg', data: new Uint8Array(media).fill(0xd8) };
  return e;
}

function ids(es: readonly { id: string }[]): string[] {
  return es.map((e) => e.id);
}

describe('Outbox: open and schema', () => {
  it('opens in WAL with synchronous FULL by default, NORMAL on request, and versions the schema', () => {
    const full = outbox();
    const db = peek();
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('user_version', { simple: true })).toBe(OUTBOX_SCHEMA_VERSION);
    expect(full.durability).toEqual({ journalMode: 'wal', synchronous: 'FULL' });
    // Trap: a plain connection opening an existing WAL file gets NORMAL (SQLITE_DEFAULT_WAL_SYNCHRONOUS=1) ...
    expect(db.pragma('synchronous', { simple: true })).toBe(1);
    full.close();
    // ... openOutbox sets FULL on every open, also of an existing WAL file.
    const again = outbox();
    expect(again.durability.synchronous).toBe('FULL');
    expect((again as unknown as { db: Database.Database }).db.pragma('synchronous', { simple: true })).toBe(
      2,
    );
    again.close();

    // synchronous is per connection: check the outbox's own connection.
    const conn = new Database(join(dir, 'own.db'));
    conn.pragma('journal_mode = WAL');
    conn.pragma('synchronous = NORMAL');
    const o = new Outbox(conn, { now });
    expect(o.durability).toEqual({ journalMode: 'wal', synchronous: 'NORMAL' });
    o.close();
    expect(conn.open).toBe(true); // it did not build the client, so it does not close it
    conn.close();

    const viaOpen = openOutbox(join(dir, 'normal.db'), { synchronous: 'NORMAL' });
    const raw = (viaOpen as unknown as { db: Database.Database }).db;
    expect(raw.pragma('synchronous', { simple: true })).toBe(1);
    viaOpen.close();
    expect(raw.open).toBe(false);
    const viaOpenFull = openOutbox(join(dir, 'full.db'));
    expect(
      (viaOpenFull as unknown as { db: Database.Database }).db.pragma('synchronous', { simple: true }),
    ).toBe(2);
    viaOpenFull.close();
  });

  it('opens a file a newer agent migrated (expand-only: an update rolled back keeps its outbox)', () => {
    const db = new Database(join(dir, 'future.db'));
    new Outbox(db).close();
    // What a later release's expand-only migration may do: a new table, a new column with a default.
    db.exec('CREATE TABLE future_side (id TEXT PRIMARY KEY) STRICT');
    db.exec('ALTER TABLE events ADD COLUMN future_flag INTEGER NOT NULL DEFAULT 0');
    db.pragma(`user_version = ${OUTBOX_SCHEMA_VERSION + 1}`);
    const o = new Outbox(db);
    const id = createUuidV7(now)();
    expect(o.append({ id, priority: 1, kind: 'event', subject: 's', payload: Buffer.from('x') })).toEqual({
      accepted: true,
      duplicate: false,
    });
    expect(o.pendingIds(10)).toEqual([id]);
    expect(o.probeWritable()).toEqual({ ok: true, detail: 'writable' });
    expect(db.pragma('user_version', { simple: true })).toBe(OUTBOX_SCHEMA_VERSION + 1);
    db.close();
  });

  it('every migration is expand-only (CREATE TABLE/INDEX, ADD COLUMN nullable or with a DEFAULT)', () => {
    for (const [i, sql] of OUTBOX_MIGRATIONS.entries()) {
      const statements = sql
        .split(';')
        .map((s) => s.replace(/\s+/g, ' ').trim())
        .filter(Boolean);
      for (const st of statements) {
        const ok =
          /^CREATE (?:TABLE|(?:UNIQUE )?INDEX) /i.test(st) ||
          (/^ALTER TABLE \w+ ADD COLUMN /i.test(st) && (!/NOT NULL/i.test(st) || /DEFAULT/i.test(st)));
        expect(ok, `migration ${i + 1}: ${st}`).toBe(true);
      }
    }
  });

  it('rejects nonsensical limits', () => {
    expect(() => outbox({ maxEvents: 0 })).toThrow(RangeError);
    expect(() => outbox({ maxBytes: 1.5 }, 'b.db')).toThrow(RangeError);
    expect(() => outbox({ ttlMs: 0 }, 'c.db')).toThrow(RangeError);
  });
});

describe('Outbox: append and drain', () => {
  it('drains priority 0 first, oldest first within a priority, with limit and maxBytes', () => {
    const o = outbox();
    const appended: AppendEntry[] = [];
    for (let i = 0; i < 20; i++) {
      clock += 1;
      const e = entry(([3, 1, 0, 2, 1] as const)[i % 5]!);
      appended.push(e);
      expect(o.append(e)).toEqual({ accepted: true, duplicate: false });
    }
    const expected = [...appended].sort((a, b) => a.priority - b.priority || (a.id < b.id ? -1 : 1));
    expect(ids(o.nextBatch(100))).toEqual(ids(expected));
    expect(ids(o.nextBatch(5))).toEqual(ids(expected.slice(0, 5)));
    expect(o.pendingIds(7)).toEqual(ids(expected.slice(0, 7)));
    // maxBytes: 100-byte entries, 350 bytes -> 3; a single entry larger than maxBytes still comes out alone.
    expect(o.nextBatch(100, { maxBytes: 350 })).toHaveLength(3);
    expect(o.nextBatch(100, { maxBytes: 1 })).toHaveLength(1);
    expect(o.nextBatch(0)).toEqual([]);

    const first = o.nextBatch(1)[0]!;
    expect(first).toMatchObject({
      priority: 0,
      kind: 'track.start',
      subject: 'vigil.v1.t1.d1.evt.cam0',
      bytes: 100,
      attempts: 0,
    });
    expect(first.createdAt).toBe(Date.UTC(2025, 5, 1) + appended.findIndex((a) => a.id === first.id) + 1);
    expect(Buffer.from(first.payload).equals(Buffer.from(expected[0]!.payload))).toBe(true);
    expect(first.media).toBeUndefined();
    expect(first.sentAt).toBeUndefined();
  });

  it('round-trips media and counts it in bytes', () => {
    const o = outbox();
    const e = entry(1, 300, 30_000);
    expect(o.append(e).accepted).toBe(true);
    const [got] = o.nextBatch(10);
    expect(got?.bytes).toBe(30_300);
    expect(got?.media?.contentType).toBe('image/jpeg');
    expect(Buffer.from(got!.media!.data).equals(Buffer.from(e.media!.data))).toBe(true);
    expect(o.stats()).toMatchObject({ depth: 1, bytes: 30_300, byPriority: { 0: 0, 1: 1, 2: 0, 3: 0 } });
    expect(peek().prepare('SELECT COUNT(*) AS n FROM media').get()).toEqual({ n: 1 });
  });

  it('is idempotent on the id (duplicate is a counted no-op, first copy wins), also inside appendMany', () => {
    const o = outbox();
    const e = entry(2);
    expect(o.append(e)).toEqual({ accepted: true, duplicate: false });
    expect(o.append({ ...e, payload: new Uint8Array(5000) })).toEqual({ accepted: true, duplicate: true });
    const f = entry(2);
    expect(o.appendMany([f, f, e])).toEqual([
      { accepted: true, duplicate: false },
      { accepted: true, duplicate: true },
      { accepted: true, duplicate: true },
    ]);
    expect(o.stats()).toMatchObject({ depth: 2, bytes: 200, duplicates: 3 });
    expect(o.nextBatch(10).map((x) => x.bytes)).toEqual([100, 100]);
  });

  it('appendMany stores a batch in one transaction with a result per entry', () => {
    const o = outbox({ maxEvents: 3, eviction: 'reject-new' });
    const batch = [entry(0), entry(1), { ...entry(1), id: 'nope' }, entry(2), entry(3)];
    expect(o.appendMany(batch)).toEqual([
      { accepted: true, duplicate: false },
      { accepted: true, duplicate: false },
      { accepted: false, reason: 'invalid' },
      { accepted: true, duplicate: false },
      { accepted: false, reason: 'full' },
    ]);
    expect(o.stats()).toMatchObject({
      depth: 3,
      rejected: { full: 1, invalid: 1, too_large: 0, disk_full: 0 },
    });
    expect(o.appendMany([])).toEqual([]);
  });

  it('ack deletes (event and media), ignores unknown ids, and stats follow', () => {
    const o = outbox();
    const es = [entry(0, 10), entry(1, 20, 1000), entry(1, 30), entry(3, 40)];
    o.appendMany(es);
    expect(o.stats()).toMatchObject({
      depth: 4,
      bytes: 1100,
      byPriority: { 0: 1, 1: 2, 2: 0, 3: 1 },
      bytesByPriority: { 0: 10, 1: 1050, 2: 0, 3: 40 },
      oldestCreatedAt: clock,
    });
    expect(o.ack([es[1]!.id, es[3]!.id, nextId()])).toBe(2);
    expect(o.ack([es[1]!.id])).toBe(0); // a repeated receipt
    expect(o.ack([])).toBe(0);
    expect(o.stats()).toMatchObject({ depth: 2, bytes: 40, byPriority: { 0: 1, 1: 1, 2: 0, 3: 0 } });
    expect(ids(o.nextBatch(10))).toEqual([es[0]!.id, es[2]!.id]);
    const db = peek();
    expect(db.prepare('SELECT COUNT(*) AS n FROM media').get()).toEqual({ n: 0 });
    expect(o.ack(ids(es))).toBe(2); // includes the priority-0 entry
    expect(o.stats()).toMatchObject({ depth: 0, bytes: 0 });
    expect(o.stats().oldestCreatedAt).toBeUndefined();
  });

  it('rejects invalid and too large entries, counted', () => {
    const o = outbox({ maxPayloadBytes: 1000 });
    expect(o.append(entry(0, 1000))).toEqual({ accepted: true, duplicate: false });
    expect(o.append(entry(0, 1001))).toEqual({ accepted: false, reason: 'too_large' });
    expect(o.append(entry(0, 500, 501))).toEqual({ accepted: false, reason: 'too_large' });
    expect(o.append({ ...entry(0), id: '0190a5a4-1b2c-4d5e-8f90-123456789abc' })).toEqual({
      accepted: false,
      reason: 'invalid',
    });
    expect(o.append({ ...entry(0), priority: 4 as Priority })).toEqual({
      accepted: false,
      reason: 'invalid',
    });
    expect(o.append({ ...entry(0), subject: '' })).toEqual({ accepted: false, reason: 'invalid' });
    expect(o.stats()).toMatchObject({ depth: 1, rejected: { too_large: 2, invalid: 3, full: 0 } });
  });
});

describe('Outbox: bounds and eviction', () => {
  it('reject-new refuses when maxEvents or maxBytes is reached, evicting nothing', () => {
    const o = outbox({ maxEvents: 3, maxBytes: 1000, eviction: 'reject-new' });
    for (const p of [3, 3, 2] as const) expect(o.append(entry(p)).accepted).toBe(true);
    expect(o.append(entry(0))).toEqual({ accepted: false, reason: 'full' });
    o.ack([o.pendingIds(1)[0]!]);
    expect(o.append(entry(0, 801))).toEqual({ accepted: false, reason: 'full' }); // 200 + 801 > 1000
    expect(o.append(entry(0, 800))).toEqual({ accepted: true, duplicate: false });
    expect(o.stats()).toMatchObject({
      depth: 3,
      bytes: 1000,
      rejected: { full: 2 },
      evicted: { capacity: 0, ttl: 0 },
    });
  });

  it('drop-oldest-lowest-priority evicts the oldest of the lowest class first, never a higher priority', () => {
    const o = outbox({ maxEvents: 5 });
    const p0 = entry(0);
    const p1 = entry(1);
    const p3a = entry(3);
    const p2 = entry(2);
    const p3b = entry(3);
    o.appendMany([p0, p1, p3a, p2, p3b]);

    // Incoming p2: the oldest p3 goes, then the other p3.
    const n1 = entry(2);
    expect(o.append(n1)).toEqual({ accepted: true, duplicate: false });
    expect(o.pendingIds(10)).toEqual([p0.id, p1.id, p2.id, n1.id, p3b.id]);
    const n2 = entry(2);
    o.append(n2);
    expect(o.pendingIds(10)).toEqual([p0.id, p1.id, p2.id, n1.id, n2.id]);
    // Incoming p2 with no p3 left: the oldest p2 (same class) goes.
    const n3 = entry(2);
    o.append(n3);
    expect(o.pendingIds(10)).toEqual([p0.id, p1.id, n1.id, n2.id, n3.id]);
    // Incoming p0: lowest class is p2, oldest first.
    const n4 = entry(0);
    o.append(n4);
    expect(o.pendingIds(10)).toEqual([p0.id, n4.id, p1.id, n2.id, n3.id]);
    expect(o.stats()).toMatchObject({
      depth: 5,
      byPriority: { 0: 2, 1: 1, 2: 2, 3: 0 },
      evicted: { capacity: 4, ttl: 0 },
      evictedByPriority: { 0: 0, 1: 0, 2: 2, 3: 2 },
      rejected: { full: 0 },
    });

    // Fill with p0 only: a p1 (or p3) never evicts a p0 and is refused; a p0 evicts the oldest p0.
    const zeros = [entry(0), entry(0), entry(0)];
    o.appendMany(zeros); // evicts n2, n3, then p1 (lowest first)
    expect(o.stats().byPriority).toEqual({ 0: 5, 1: 0, 2: 0, 3: 0 });
    const before = o.pendingIds(10);
    expect(o.append(entry(1))).toEqual({ accepted: false, reason: 'full' });
    expect(o.append(entry(3))).toEqual({ accepted: false, reason: 'full' });
    expect(o.pendingIds(10)).toEqual(before);
    const z = entry(0);
    expect(o.append(z).accepted).toBe(true);
    expect(o.pendingIds(10)).toEqual([...before.slice(1), z.id]);
    // A duplicate arriving while full is a no-op: it must not evict anything to make room for itself.
    expect(o.append(zeros[1]!)).toEqual({ accepted: true, duplicate: true });
    expect(o.pendingIds(10)).toEqual([...before.slice(1), z.id]);
    expect(o.stats()).toMatchObject({
      depth: 5,
      duplicates: 1,
      evicted: { capacity: 8 },
      evictedByPriority: { 0: 1, 1: 1, 2: 4, 3: 2 },
      rejected: { full: 2 },
    });
  });

  it('evicts as many lower-priority rows as the bytes need, or none when even all of them would not do', () => {
    const o = outbox({ maxBytes: 1000 });
    const high = entry(0, 400);
    const lows = [entry(3, 100), entry(3, 100), entry(3, 100), entry(2, 200)];
    o.appendMany([high, ...lows]); // 900 bytes
    // 700 bytes at p1: only the p0 row (400) would stay even if every p1..p3 row went, and 400 + 700 > 1000.
    expect(o.append(entry(1, 700))).toEqual({ accepted: false, reason: 'full' });
    expect(o.stats()).toMatchObject({ depth: 5, bytes: 900, evicted: { capacity: 0 } });
    // 350 bytes at p2: needs 250 freed -> three p3 rows (oldest first), the p2 row stays.
    const mid = entry(2, 350);
    expect(o.append(mid).accepted).toBe(true);
    expect(o.pendingIds(10)).toEqual([high.id, lows[3]!.id, mid.id]);
    expect(o.stats()).toMatchObject({ depth: 3, bytes: 950, evicted: { capacity: 3 } });
  });

  it('expires by TTL (counted), and drops expired rows before refusing or evicting on a full outbox', () => {
    const o = outbox({ ttlMs: 60_000, maxEvents: 3, eviction: 'reject-new' });
    const old = entry(0);
    o.append(old);
    clock += 30_000;
    const mid = entry(1);
    o.append(mid);
    clock += 30_000;
    expect(o.expire()).toBe(0); // exactly ttl old: not yet
    clock += 1;
    expect(o.expire()).toBe(1);
    expect(o.pendingIds(10)).toEqual([mid.id]);
    expect(o.stats()).toMatchObject({
      depth: 1,
      evicted: { ttl: 1, capacity: 0 },
      evictedByPriority: { 0: 1 },
    });

    o.append(entry(3));
    o.append(entry(3));
    clock += 30_000; // mid is now expired, but nobody called expire()
    expect(o.append(entry(2))).toEqual({ accepted: true, duplicate: false });
    expect(o.stats()).toMatchObject({ depth: 3, evicted: { ttl: 2 }, rejected: { full: 0 } });
    expect(o.expire(clock + 10 * 60_000)).toBe(3);
    expect(o.stats()).toMatchObject({ depth: 0, bytes: 0, evicted: { ttl: 5 } });

    const forever = outbox({ ttlMs: Infinity }, 'forever.db');
    forever.append(entry(0));
    expect(forever.expire(clock + 1e12)).toBe(0);
  });

  it('expires a large backlog in chunks', () => {
    const o = outbox({ ttlMs: 1000 });
    for (let i = 0; i < 3; i++) o.appendMany(Array.from({ length: 700 }, () => entry(3, 10)));
    expect(o.expire(clock + 1001)).toBe(2100);
    expect(o.stats()).toMatchObject({ depth: 0, evicted: { ttl: 2100 } });
  });

  it('reports disk_full (SQLITE_FULL) as a counted rejection and keeps its counters true', () => {
    const db = new Database(join(dir, 'small.db'));
    db.pragma('journal_mode = WAL');
    const o = new Outbox(db, { now, closeDatabase: true });
    open.push(o);
    db.pragma('max_page_count = 40');
    let single = 0;
    for (let i = 0; i < 200; i++) if (o.append(entry(1, 2000)).accepted) single++;
    const batch = o.appendMany([entry(0, 2000), entry(0, 2000)]);
    expect(batch).toEqual([
      { accepted: false, reason: 'disk_full' },
      { accepted: false, reason: 'disk_full' },
    ]);
    const s = o.stats();
    expect(single).toBeGreaterThan(0);
    expect(s.rejected.disk_full).toBe(200 - single + 2);
    expect(s.depth).toBe(single);
    expect(db.prepare('SELECT COUNT(*) AS n, SUM(bytes) AS b FROM events').get()).toEqual({
      n: single,
      b: s.bytes,
    });
    // Draining frees pages: appends work again.
    expect(o.ack(o.pendingIds(5))).toBe(5);
    expect(o.append(entry(1, 2000)).accepted).toBe(true);
  });
});

describe('Outbox: in flight and restart', () => {
  it('excludes in-flight entries on request, counts attempts, and releases them', () => {
    const o = outbox();
    const es = [entry(0), entry(1), entry(2)];
    o.appendMany(es);
    expect(o.markSent([es[0]!.id, es[1]!.id], clock + 5)).toBe(2);
    expect(ids(o.nextBatch(10, { excludeInFlight: true }))).toEqual([es[2]!.id]);
    const all = o.nextBatch(10);
    expect(ids(all)).toEqual(ids(es));
    expect(all[0]).toMatchObject({ attempts: 1, sentAt: clock + 5 });
    expect(all[2]?.sentAt).toBeUndefined();

    expect(o.releaseInFlight([es[1]!.id, es[2]!.id])).toBe(1); // es[2] was not in flight
    expect(ids(o.nextBatch(10, { excludeInFlight: true }))).toEqual([es[1]!.id, es[2]!.id]);
    o.markSent(ids(es));
    expect(o.nextBatch(10, { excludeInFlight: true })).toEqual([]);
    expect(o.releaseInFlight()).toBe(3); // after a disconnect
    expect(o.nextBatch(10, { excludeInFlight: true }).map((e) => e.attempts)).toEqual([2, 2, 1]);
    expect(o.markSent([])).toBe(0);
    expect(o.releaseInFlight([])).toBe(0);
  });

  it('reopen keeps pending rows, recomputes depth/bytes, releases stale in-flight marks', () => {
    const a = outbox({ eviction: 'reject-new', maxEvents: 100 });
    const es = [entry(0, 10), entry(2, 20, 500), entry(3, 30), entry(3, 40)];
    a.appendMany(es);
    a.ack([es[3]!.id]);
    a.markSent([es[0]!.id]);
    expect(a.append(entry(0, 2_000_000)).accepted).toBe(false); // a rejection: in-memory counter, not persisted
    a.close();

    const b = outbox({ eviction: 'reject-new', maxEvents: 100 });
    expect(b.stats()).toMatchObject({
      depth: 3,
      bytes: 560,
      byPriority: { 0: 1, 1: 0, 2: 1, 3: 1 },
      bytesByPriority: { 0: 10, 1: 0, 2: 520, 3: 30 },
      rejected: { too_large: 0 },
    });
    const batch = b.nextBatch(10, { excludeInFlight: true });
    expect(ids(batch)).toEqual(ids(es.slice(0, 3)));
    expect(batch[0]).toMatchObject({ attempts: 1 });
    expect(batch[0]?.sentAt).toBeUndefined();
    expect(batch[1]?.media?.data.byteLength).toBe(500);
    b.close();

    const c = outbox({ releaseInFlightOnOpen: false });
    c.markSent([es[2]!.id]);
    c.close();
    const d = outbox({ releaseInFlightOnOpen: false });
    expect(ids(d.nextBatch(10, { excludeInFlight: true }))).toEqual(ids(es.slice(0, 2)));
    d.close();
    d.close(); // idempotent
    expect(() => d.append(entry(0))).toThrow(/closed/);
  });
});
