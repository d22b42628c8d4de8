import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { isUuidV7 } from '../lib/uuidv7.js';
import { migrateOutbox } from './schema.js';

/*
 * Store-and-forward outbox (DESIGN.md, principle 1 and "Edge data path: buffer"). Every event the agent produces
 * is appended here first; the uplink drains it in priority order and deletes a row only on the cloud's commit
 * receipt (`ack`). better-sqlite3 is synchronous: when `append` returns `{ accepted: true }` the transaction has
 * committed, so the row survives a crash of this process (`kill -9`) always, and a power loss according to the
 * `synchronous` mode of the connection (see `openOutbox`).
 *
 * Bounds (principle 4): `maxEvents`, `maxBytes` (payload + media bytes, not file size), `maxPayloadBytes` per
 * entry, `ttlMs`; when full, the `eviction` policy decides, and every rejection and eviction is counted by reason
 * in `stats()`. The counters live in memory since the Outbox was opened (they restart from 0 with the process,
 * like any Prometheus counter); depth and bytes are counted once at open and then maintained incrementally, and
 * only after a transaction commits, so a failed write never skews them.
 *
 * One Outbox per database file per process: the in-memory depth/bytes assume nobody else writes the file.
 */

export type Priority = 0 | 1 | 2 | 3;
export const PRIORITIES: readonly Priority[] = [0, 1, 2, 3];

export interface OutboxMedia {
  contentType: string;
  data: Uint8Array;
}

export interface AppendEntry {
  /** Canonical lowercase UUIDv7 assigned at the edge; the idempotency key at every hop. */
  id: string;
  /** 0 = highest … 3 = lowest. */
  priority: Priority;
  kind: string;
  subject: string;
  /** Encoded protobuf. */
  payload: Uint8Array;
  media?: OutboxMedia;
}

export interface OutboxEntry {
  id: string;
  priority: Priority;
  kind: string;
  subject: string;
  payload: Uint8Array;
  media?: OutboxMedia;
  /** payload + media bytes: the unit of `maxBytes`. */
  bytes: number;
  /** When the entry entered the outbox (ms, injected clock). */
  createdAt: number;
  /** How many times `markSent` has been called for it. */
  attempts: number;
  /** Set while the entry is in flight: the `atMs` of the last `markSent`. */
  sentAt?: number;
}

/** Why an entry was not stored. `disk_full`: SQLite reported SQLITE_FULL (disk or `max_page_count`). */
export type RejectReason = 'full' | 'too_large' | 'invalid' | 'disk_full';
/** Why a stored entry was dropped without an ack: the size bounds (`capacity`) or its age (`ttl`). */
export type EvictReason = 'capacity' | 'ttl';

/**
 * `accepted: true` means the entry is committed in the outbox. A repeated id is a no-op reported with
 * `duplicate: true` and is still `accepted`: the event it names is durably stored (the first copy wins).
 */
export type AppendResult = { accepted: true; duplicate: boolean } | { accepted: false; reason: RejectReason };

export type EvictionPolicy = 'reject-new' | 'drop-oldest-lowest-priority';

export interface OutboxLimits {
  /** Sum of payload + media bytes over all stored entries. */
  maxBytes: number;
  maxEvents: number;
  /** Per entry, payload + media; larger entries are rejected with `too_large`. */
  maxPayloadBytes: number;
  /** Entries older than this (since append) are dropped by `expire`, and before any capacity decision. */
  ttlMs: number;
  /**
   * When an entry does not fit: `reject-new` refuses it (`full`); `drop-oldest-lowest-priority` evicts the oldest
   * entries of the lowest priority class first, never an entry of higher priority than the incoming one (if only
   * such entries would make room, the new entry is refused with `full` and nothing is evicted).
   */
  eviction: EvictionPolicy;
}

export const DEFAULT_OUTBOX_LIMITS: Readonly<OutboxLimits> = Object.freeze({
  maxBytes: 256 * 1024 * 1024,
  maxEvents: 1_000_000,
  maxPayloadBytes: 1024 * 1024,
  ttlMs: 7 * 24 * 60 * 60 * 1000,
  eviction: 'drop-oldest-lowest-priority',
});

export interface OutboxOptions extends Partial<OutboxLimits> {
  /** Clock for `createdAt`, `markSent` and `expire` defaults. */
  now?: () => number;
  /**
   * Clear the in-flight marks left by a previous process at construction (default true): whatever was in flight
   * when the agent stopped has to be sent again (the cloud deduplicates on the id).
   */
  releaseInFlightOnOpen?: boolean;
  /** `close()` also closes the Database (default false: whoever built the client closes it). */
  closeDatabase?: boolean;
}

export interface OutboxStats {
  depth: number;
  bytes: number;
  byPriority: Record<number, number>;
  bytesByPriority: Record<number, number>;
  /** Since open, by reason: `capacity`, `ttl`. */
  evicted: Record<string, number>;
  /** Capacity and TTL evictions since open, by priority of the evicted entry. */
  evictedByPriority: Record<number, number>;
  /** Since open, by reason: `full`, `too_large`, `invalid`, `disk_full`. */
  rejected: Record<string, number>;
  /** Appends of an id that was already stored (no-ops), since open. */
  duplicates: number;
  oldestCreatedAt?: number;
}

export interface NextBatchOptions {
  /** Skip entries marked in flight by `markSent` (default false: the next entries in drain order, all of them). */
  excludeInFlight?: boolean;
  /** Stop before the batch's payload + media bytes would exceed this; the first entry is always returned. */
  maxBytes?: number;
}

/** Largest `appendMany` batch and `nextBatch` limit: one transaction must stay short (the event loop waits). */
export const MAX_BATCH = 10_000;
const DELETE_CHUNK = 500;

interface Counters {
  depth: number;
  bytes: number;
  count: [number, number, number, number];
  bytesBy: [number, number, number, number];
  evicted: Record<EvictReason, number>;
  evictedBy: [number, number, number, number];
  rejected: Record<RejectReason, number>;
  duplicates: number;
}

interface EventRow {
  id: string;
  priority: number;
  kind: string;
  subject: string;
  bytes: number;
  created_at: number;
  attempts: number;
  sent_at: number | null;
  payload: Buffer;
  content_type: string | null;
  media: Buffer | null;
}

const SELECT_ENTRY = `
  SELECT e.id, e.priority, e.kind, e.subject, e.bytes, e.created_at, e.attempts, e.sent_at, e.payload,
         m.content_type, m.data AS media
  FROM events e LEFT JOIN media m ON m.event_id = e.id`;

function cloneCounters(c: Counters): Counters {
  return {
    depth: c.depth,
    bytes: c.bytes,
    count: [...c.count],
    bytesBy: [...c.bytesBy],
    evicted: { ...c.evicted },
    evictedBy: [...c.evictedBy],
    rejected: { ...c.rejected },
    duplicates: c.duplicates,
  };
}

function isPriority(p: unknown): p is Priority {
  return p === 0 || p === 1 || p === 2 || p === 3;
}

function asPriority(p: number): Priority {
  if (!isPriority(p)) throw new Error(`outbox: corrupt priority ${p}`);
  return p;
}

function isSqliteFull(err: unknown): boolean {
  return err instanceof Database.SqliteError && err.code === 'SQLITE_FULL';
}

function entryBytes(e: AppendEntry): number {
  return e.payload.byteLength + (e.media ? e.media.data.byteLength : 0);
}

function positiveInt(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v <= 0)
    throw new RangeError(`outbox: ${name} must be a positive integer: ${v}`);
  return v;
}

/** better-sqlite3 binds Buffers; wrap a Uint8Array view without copying. */
function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/** What the connection promises for an accepted append, read back from SQLite at construction. */
export interface OutboxDurability {
  journalMode: string;
  /** `FULL`/`EXTRA`: survives power loss; `NORMAL` (WAL): survives a process crash; `OFF`: neither is promised. */
  synchronous: 'OFF' | 'NORMAL' | 'FULL' | 'EXTRA';
}

const SYNCHRONOUS_NAMES = ['OFF', 'NORMAL', 'FULL', 'EXTRA'] as const;

export class Outbox {
  /** Replaced whole by setLimits() (remote config); never mutated in place. */
  limits: Readonly<OutboxLimits>;
  /**
   * Read back, not assumed: better-sqlite3 (SQLITE_DEFAULT_WAL_SYNCHRONOUS=1) gives a connection that opens an
   * existing WAL file `synchronous=NORMAL` unless the caller sets it; `openOutbox` always sets it.
   */
  readonly durability: Readonly<OutboxDurability>;
  private readonly now: () => number;
  private readonly closeDatabase: boolean;
  private counters: Counters;
  private closed = false;

  private readonly tx: Database.Transaction<(fn: () => unknown) => unknown>;
  private readonly stmt: {
    exists: Database.Statement<[string], { one: number }>;
    insertEvent: Database.Statement<[string, number, string, string, number, number, Buffer]>;
    insertMedia: Database.Statement<[string, string, number, Buffer]>;
    deleteMedia: Database.Statement<[string]>;
    deleteEvent: Database.Statement<[string], { priority: number; bytes: number }>;
    oldestOfPriority: Database.Statement<[number, number], { id: string }>;
    expired: Database.Statement<[number, number], { id: string }>;
    batch: Database.Statement<[number], EventRow>;
    batchPending: Database.Statement<[number], EventRow>;
    pendingIds: Database.Statement<[number], string>;
    markSent: Database.Statement<[number, string]>;
    release: Database.Statement<[string]>;
    releaseAll: Database.Statement<[]>;
    oldest: Database.Statement<[], number | null>;
  };

  constructor(
    private readonly db: Database.Database,
    opts: OutboxOptions = {},
  ) {
    const limits = { ...DEFAULT_OUTBOX_LIMITS, ...stripUndefined(opts) };
    positiveInt('maxBytes', limits.maxBytes);
    positiveInt('maxEvents', limits.maxEvents);
    positiveInt('maxPayloadBytes', limits.maxPayloadBytes);
    if (!(limits.ttlMs > 0))
      throw new RangeError(`outbox: ttlMs must be > 0 (Infinity disables TTL): ${limits.ttlMs}`);
    if (limits.eviction !== 'reject-new' && limits.eviction !== 'drop-oldest-lowest-priority')
      throw new RangeError(`outbox: unknown eviction policy ${String(limits.eviction)}`);
    this.limits = Object.freeze({
      maxBytes: limits.maxBytes,
      maxEvents: limits.maxEvents,
      maxPayloadBytes: limits.maxPayloadBytes,
      ttlMs: limits.ttlMs,
      eviction: limits.eviction,
    });
    this.now = opts.now ?? Date.now;
    this.closeDatabase = opts.closeDatabase ?? false;

    migrateOutbox(db);
    this.durability = Object.freeze({
      journalMode: String(db.pragma('journal_mode', { simple: true })).toLowerCase(),
      synchronous: SYNCHRONOUS_NAMES[Number(db.pragma('synchronous', { simple: true }))] ?? 'FULL',
    });

    this.tx = db.transaction((fn: () => unknown) => fn());
    this.stmt = {
      exists: db.prepare('SELECT 1 AS one FROM events WHERE id = ?'),
      insertEvent: db.prepare(
        'INSERT INTO events (id, priority, kind, subject, bytes, created_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?) ' +
          'ON CONFLICT (id) DO NOTHING',
      ),
      insertMedia: db.prepare('INSERT INTO media (event_id, content_type, bytes, data) VALUES (?, ?, ?, ?)'),
      deleteMedia: db.prepare('DELETE FROM media WHERE event_id = ?'),
      deleteEvent: db.prepare('DELETE FROM events WHERE id = ? RETURNING priority, bytes'),
      oldestOfPriority: db.prepare('SELECT id FROM events WHERE priority = ? ORDER BY id LIMIT ?'),
      expired: db.prepare('SELECT id FROM events WHERE created_at < ? ORDER BY created_at LIMIT ?'),
      batch: db.prepare(`${SELECT_ENTRY} ORDER BY e.priority, e.id LIMIT ?`),
      batchPending: db.prepare(`${SELECT_ENTRY} WHERE e.sent_at IS NULL ORDER BY e.priority, e.id LIMIT ?`),
      pendingIds: db.prepare<[number], string>('SELECT id FROM events ORDER BY priority, id LIMIT ?').pluck(),
      markSent: db.prepare('UPDATE events SET sent_at = ?, attempts = attempts + 1 WHERE id = ?'),
      release: db.prepare('UPDATE events SET sent_at = NULL WHERE id = ? AND sent_at IS NOT NULL'),
      releaseAll: db.prepare('UPDATE events SET sent_at = NULL WHERE sent_at IS NOT NULL'),
      oldest: db.prepare<[], number | null>('SELECT MIN(created_at) FROM events').pluck(),
    };

    if (opts.releaseInFlightOnOpen ?? true) this.stmt.releaseAll.run();

    const counters: Counters = {
      depth: 0,
      bytes: 0,
      count: [0, 0, 0, 0],
      bytesBy: [0, 0, 0, 0],
      evicted: { capacity: 0, ttl: 0 },
      evictedBy: [0, 0, 0, 0],
      rejected: { full: 0, too_large: 0, invalid: 0, disk_full: 0 },
      duplicates: 0,
    };
    const groups = db
      .prepare<[], { priority: number; n: number; b: number }>(
        'SELECT priority, COUNT(*) AS n, COALESCE(SUM(bytes), 0) AS b FROM events GROUP BY priority',
      )
      .all();
    for (const g of groups) {
      const p = asPriority(g.priority);
      counters.count[p] = g.n;
      counters.bytesBy[p] = g.b;
      counters.depth += g.n;
      counters.bytes += g.b;
    }
    this.counters = counters;
  }

  /**
   * Stores one entry in its own transaction. Returns after the commit: `{ accepted: true }` is the point after
   * which the event may be acknowledged upstream. Throws only on unexpected SQLite errors (I/O, corruption);
   * bounds, bad input and a full disk are counted rejections.
   */
  /** New bounds (a remote config changed them); they apply from the next append/expiry on. */
  setLimits(next: Partial<Pick<OutboxLimits, 'maxBytes' | 'maxEvents' | 'ttlMs'>>): void {
    const limits = { ...this.limits, ...stripUndefined(next) };
    positiveInt('maxBytes', limits.maxBytes);
    positiveInt('maxEvents', limits.maxEvents);
    if (!(limits.ttlMs > 0)) throw new RangeError(`outbox: ttlMs must be > 0: ${limits.ttlMs}`);
    this.limits = Object.freeze(limits);
  }

  append(entry: AppendEntry): AppendResult {
    this.assertOpen();
    const invalid = this.check(entry);
    if (invalid) {
      this.counters.rejected[invalid]++;
      return { accepted: false, reason: invalid };
    }
    try {
      return this.mutate((c) => this.appendIn(c, entry, this.now()));
    } catch (err) {
      if (!isSqliteFull(err)) throw err;
      this.counters.rejected.disk_full++;
      return { accepted: false, reason: 'disk_full' };
    }
  }

  /**
   * Stores many entries in ONE transaction (one fsync: group commit), each with its own result, in order. If the
   * transaction fails with SQLITE_FULL nothing is stored and every entry is reported `disk_full`.
   */
  appendMany(entries: readonly AppendEntry[]): AppendResult[] {
    this.assertOpen();
    if (entries.length > MAX_BATCH)
      throw new RangeError(`outbox: appendMany of ${entries.length} > ${MAX_BATCH}`);
    if (entries.length === 0) return [];
    try {
      return this.mutate((c) => {
        const createdAt = this.now();
        return entries.map((entry): AppendResult => {
          const invalid = this.check(entry);
          if (invalid) {
            c.rejected[invalid]++;
            return { accepted: false, reason: invalid };
          }
          return this.appendIn(c, entry, createdAt);
        });
      });
    } catch (err) {
      if (!isSqliteFull(err)) throw err;
      this.counters.rejected.disk_full += entries.length;
      return entries.map(() => ({ accepted: false, reason: 'disk_full' }));
    }
  }

  /** The next entries in drain order: priority 0 first, oldest (smallest UUIDv7) first within a priority. */
  nextBatch(limit: number, opts: NextBatchOptions = {}): OutboxEntry[] {
    this.assertOpen();
    const n = Math.min(MAX_BATCH, Math.max(0, Math.floor(limit)));
    if (n === 0) return [];
    const maxBytes = opts.maxBytes ?? Infinity;
    const stmt = opts.excludeInFlight ? this.stmt.batchPending : this.stmt.batch;
    const out: OutboxEntry[] = [];
    let bytes = 0;
    for (const row of stmt.iterate(n)) {
      if (out.length > 0 && bytes + row.bytes > maxBytes) break; // leaving the loop closes the iterator
      bytes += row.bytes;
      const entry: OutboxEntry = {
        id: row.id,
        priority: asPriority(row.priority),
        kind: row.kind,
        subject: row.subject,
        payload: row.payload,
        bytes: row.bytes,
        createdAt: row.created_at,
        attempts: row.attempts,
      };
      if (row.media !== null && row.content_type !== null)
        entry.media = { contentType: row.content_type, data: row.media };
      if (row.sent_at !== null) entry.sentAt = row.sent_at;
      out.push(entry);
    }
    return out;
  }

  /** Marks entries in flight (sent, no receipt yet) and counts an attempt. Returns how many rows were marked. */
  markSent(ids: readonly string[], atMs: number = this.now()): number {
    this.assertOpen();
    if (ids.length === 0) return 0;
    return this.tx.immediate(() => {
      let n = 0;
      for (const id of ids) n += this.stmt.markSent.run(atMs, id).changes;
      return n;
    }) as number;
  }

  /** Clears in-flight marks (all of them without `ids`, e.g. after a disconnect). Returns how many changed. */
  releaseInFlight(ids?: readonly string[]): number {
    this.assertOpen();
    if (ids === undefined) return this.stmt.releaseAll.run().changes;
    if (ids.length === 0) return 0;
    return this.tx.immediate(() => {
      let n = 0;
      for (const id of ids) n += this.stmt.release.run(id).changes;
      return n;
    }) as number;
  }

  /**
   * Deletes entries for good. Call only with the ids of the cloud's commit receipt (a JetStream PubAck is not
   * proof of durability). Unknown ids are ignored (a receipt may repeat). Returns how many were deleted.
   */
  ack(ids: readonly string[]): number {
    this.assertOpen();
    if (ids.length === 0) return 0;
    return this.mutate((c) => {
      let n = 0;
      for (const id of ids) if (this.deleteIn(c, id) !== undefined) n++;
      return n;
    });
  }

  /** Ids in drain order, in flight or not. */
  pendingIds(limit: number): string[] {
    this.assertOpen();
    const n = Math.min(MAX_BATCH, Math.max(0, Math.floor(limit)));
    return n === 0 ? [] : this.stmt.pendingIds.all(n);
  }

  /**
   * Drops entries that entered the outbox more than `ttlMs` before `nowMs` (counted as evictions, reason `ttl`),
   * in transactions of at most 500 rows so that a long backlog does not stall the event loop in one go.
   */
  expire(nowMs: number = this.now()): number {
    this.assertOpen();
    if (!Number.isFinite(this.limits.ttlMs)) return 0;
    const cutoff = nowMs - this.limits.ttlMs;
    let total = 0;
    for (;;) {
      const n = this.mutate((c) => this.expireIn(c, cutoff, DELETE_CHUNK));
      total += n;
      if (n < DELETE_CHUNK) return total;
    }
  }

  /**
   * Media retention at the edge: drops the snapshots of entries older than `maxAgeMs` (by when they entered
   * the outbox), then the oldest snapshots until all held snapshots fit in `maxBytes`. The events stay and are
   * delivered without their image (the uplink then sends the event alone). Chunked like `expire`.
   */
  dropMedia(
    policy: { maxAgeMs: number; maxBytes: number },
    nowMs: number = this.now(),
  ): { age: number; size: number } {
    this.assertOpen();
    const cutoff = nowMs - policy.maxAgeMs;
    const out = { age: 0, size: 0 };
    const old = this.db.prepare<[number, number], { id: string; priority: number; bytes: number }>(
      'SELECT e.id, e.priority, m.bytes FROM media m JOIN events e ON e.id = m.event_id ' +
        'WHERE e.created_at < ? ORDER BY e.created_at, e.id LIMIT ?',
    );
    const oldest = this.db.prepare<[number], { id: string; priority: number; bytes: number }>(
      'SELECT e.id, e.priority, m.bytes FROM media m JOIN events e ON e.id = m.event_id ' +
        'ORDER BY e.created_at, e.id LIMIT ?',
    );
    const held = this.db.prepare<[], number>('SELECT COALESCE(SUM(bytes), 0) FROM media').pluck();
    const shrink = this.db.prepare<[number, string]>('UPDATE events SET bytes = bytes - ? WHERE id = ?');
    const drop = (c: Counters, row: { id: string; priority: number; bytes: number }): void => {
      this.stmt.deleteMedia.run(row.id);
      shrink.run(row.bytes, row.id);
      const p = asPriority(row.priority);
      c.bytes -= row.bytes;
      c.bytesBy[p] -= row.bytes;
    };
    for (;;) {
      const rows = this.mutate((c) => {
        const batch = old.all(cutoff, DELETE_CHUNK);
        for (const r of batch) drop(c, r);
        return batch.length;
      });
      out.age += rows;
      if (rows < DELETE_CHUNK) break;
    }
    for (let total = held.get() ?? 0; total > policy.maxBytes;) {
      const n = this.mutate((c) => {
        let k = 0;
        for (const r of oldest.all(DELETE_CHUNK)) {
          if (total <= policy.maxBytes) break;
          drop(c, r);
          total -= r.bytes;
          k++;
        }
        return k;
      });
      out.size += n;
      if (n === 0) break;
    }
    return out;
  }

  stats(): OutboxStats {
    this.assertOpen();
    const c = this.counters;
    const s: OutboxStats = {
      depth: c.depth,
      bytes: c.bytes,
      byPriority: { ...c.count },
      bytesByPriority: { ...c.bytesBy },
      evicted: { ...c.evicted },
      evictedByPriority: { ...c.evictedBy },
      rejected: { ...c.rejected },
      duplicates: c.duplicates,
    };
    if (c.depth > 0) {
      const oldest = this.stmt.oldest.get();
      if (typeof oldest === 'number') s.oldestCreatedAt = oldest;
    }
    return s;
  }

  /** Idempotent. Closes the Database only when this Outbox owns it (`openOutbox`, or `closeDatabase: true`). */
  /**
   * Whether the outbox can take a write now: a write lock taken and released at once (a read-only or
   * vanished file fails here, before an append would). For /healthz; cheap, no page is written.
   */
  probeWritable(): { ok: boolean; detail: string } {
    if (this.closed) return { ok: false, detail: 'outbox closed' };
    if (this.db.inTransaction) return { ok: true, detail: 'writable (in a transaction)' };
    try {
      this.db.exec('BEGIN IMMEDIATE');
      this.db.exec('ROLLBACK');
      return { ok: true, detail: 'writable' };
    } catch (err) {
      return { ok: false, detail: `not writable: ${(err as Error).message}` };
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.closeDatabase && this.db.open) this.db.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('outbox: closed');
  }

  // ---- internals: everything below runs inside a write transaction, on a copy of the counters ----

  /** Runs `fn` in an IMMEDIATE transaction on a copy of the counters; the copy replaces them only on commit. */
  private mutate<T>(fn: (c: Counters) => T): T {
    const c = cloneCounters(this.counters);
    const result = this.tx.immediate(() => fn(c)) as T;
    this.counters = c;
    return result;
  }

  private check(entry: AppendEntry): RejectReason | undefined {
    const e = entry as Partial<AppendEntry> | null | undefined;
    if (
      !e ||
      typeof e.id !== 'string' ||
      !isUuidV7(e.id) ||
      !isPriority(e.priority) ||
      typeof e.kind !== 'string' ||
      e.kind === '' ||
      typeof e.subject !== 'string' ||
      e.subject === '' ||
      !(e.payload instanceof Uint8Array) ||
      (e.media !== undefined &&
        (typeof e.media.contentType !== 'string' || !(e.media.data instanceof Uint8Array)))
    )
      return 'invalid';
    const size = entryBytes(entry);
    if (size > this.limits.maxPayloadBytes || size > this.limits.maxBytes) return 'too_large';
    return undefined;
  }

  private fits(c: Counters, size: number): boolean {
    return c.depth + 1 <= this.limits.maxEvents && c.bytes + size <= this.limits.maxBytes;
  }

  private appendIn(c: Counters, entry: AppendEntry, createdAt: number): AppendResult {
    const size = entryBytes(entry);
    if (!this.fits(c, size)) {
      // Slow path: a duplicate must not evict anything, so look for it before making room.
      if (this.stmt.exists.get(entry.id)) {
        c.duplicates++;
        return { accepted: true, duplicate: true };
      }
      if (Number.isFinite(this.limits.ttlMs)) this.expireIn(c, createdAt - this.limits.ttlMs, Infinity);
      if (!this.fits(c, size) && !this.evictFor(c, entry.priority, size)) {
        c.rejected.full++;
        return { accepted: false, reason: 'full' };
      }
    }
    // Fast path: the insert itself detects the duplicate (ON CONFLICT DO NOTHING), one B-tree probe less.
    const inserted = this.stmt.insertEvent.run(
      entry.id,
      entry.priority,
      entry.kind,
      entry.subject,
      size,
      createdAt,
      asBuffer(entry.payload),
    ).changes;
    if (inserted === 0) {
      c.duplicates++;
      return { accepted: true, duplicate: true };
    }
    if (entry.media)
      this.stmt.insertMedia.run(
        entry.id,
        entry.media.contentType,
        entry.media.data.byteLength,
        asBuffer(entry.media.data),
      );
    c.depth++;
    c.bytes += size;
    c.count[entry.priority]++;
    c.bytesBy[entry.priority] += size;
    return { accepted: true, duplicate: false };
  }

  /**
   * drop-oldest-lowest-priority: makes room for an entry of `priority` and `size` by evicting the oldest entries
   * of priority 3, then 2, … down to `priority` itself, never above it. Checks first that it can succeed, so a
   * refusal evicts nothing. Returns whether the entry now fits.
   */
  private evictFor(c: Counters, priority: Priority, size: number): boolean {
    if (this.limits.eviction !== 'drop-oldest-lowest-priority') return false;
    let keptCount = 0;
    let keptBytes = 0;
    for (let q = 0; q < priority; q++) {
      keptCount += c.count[q as Priority];
      keptBytes += c.bytesBy[q as Priority];
    }
    if (keptCount + 1 > this.limits.maxEvents || keptBytes + size > this.limits.maxBytes) return false;

    for (let q = 3; q >= priority && !this.fits(c, size); q--) {
      while (!this.fits(c, size) && c.count[q as Priority] > 0) {
        const rows = this.stmt.oldestOfPriority.all(q, 16);
        if (rows.length === 0) break; // counters out of step with the file: never loop forever
        for (const row of rows) {
          if (this.deleteIn(c, row.id) !== undefined) {
            c.evicted.capacity++;
            c.evictedBy[q as Priority]++;
          }
          if (this.fits(c, size)) break;
        }
      }
    }
    return this.fits(c, size);
  }

  private expireIn(c: Counters, cutoff: number, max: number): number {
    let n = 0;
    while (n < max) {
      const rows = this.stmt.expired.all(cutoff, Math.min(DELETE_CHUNK, max - n));
      for (const row of rows) {
        const p = this.deleteIn(c, row.id);
        if (p !== undefined) {
          c.evicted.ttl++;
          c.evictedBy[p]++;
          n++;
        }
      }
      if (rows.length < DELETE_CHUNK) break;
    }
    return n;
  }

  /** Deletes one entry (media first) and updates `c`; returns its priority, or undefined if it was not there. */
  private deleteIn(c: Counters, id: string): Priority | undefined {
    this.stmt.deleteMedia.run(id);
    const row = this.stmt.deleteEvent.get(id);
    if (!row) return undefined;
    const p = asPriority(row.priority);
    c.depth--;
    c.bytes -= row.bytes;
    c.count[p]--;
    c.bytesBy[p] -= row.bytes;
    return p;
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export type SynchronousMode = 'FULL' | 'NORMAL';

export interface OpenOutboxOptions extends Omit<OutboxOptions, 'closeDatabase'> {
  /**
   * SQLite `synchronous` in WAL mode.
   * - `FULL` (default): the WAL is fsynced at every commit; an accepted append survives a power loss.
   * - `NORMAL`: the WAL is fsynced only at checkpoints; an accepted append survives a crash or `kill -9` of the
   *   agent (the data is in the OS page cache), but a power loss or kernel panic can roll back the last
   *   transactions committed before it. It never corrupts the database. Faster on slow flash.
   */
  synchronous?: SynchronousMode;
  /** How long a statement waits for a lock held by another connection (default 5000 ms). */
  busyTimeoutMs?: number;
  /** Truncate the WAL back to this size after a checkpoint (default 16 MiB). */
  journalSizeLimitBytes?: number;
}

/**
 * Opens (creating the file and its directory if needed) a WAL-mode database for the outbox, with the
 * `synchronous` mode and busy timeout set, brings the schema up to date and returns an Outbox that owns it.
 */
export function openOutbox(path: string, opts: OpenOutboxOptions = {}): Outbox {
  const synchronous = opts.synchronous ?? 'FULL';
  if (synchronous !== 'FULL' && synchronous !== 'NORMAL')
    throw new RangeError(`outbox: synchronous must be FULL or NORMAL: ${String(synchronous)}`);
  const busyTimeoutMs = Math.max(0, Math.floor(opts.busyTimeoutMs ?? 5000));
  const journalSizeLimit = Math.max(0, Math.floor(opts.journalSizeLimitBytes ?? 16 * 1024 * 1024));

  if (path !== ':memory:' && !path.startsWith('file:')) mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path, { timeout: busyTimeoutMs });
  try {
    const mode = String(db.pragma('journal_mode = WAL', { simple: true })).toLowerCase();
    if (mode !== 'wal' && path !== ':memory:')
      throw new Error(`outbox: could not switch ${path} to WAL (journal_mode is ${mode})`);
    db.pragma(`synchronous = ${synchronous}`);
    db.pragma(`busy_timeout = ${busyTimeoutMs}`);
    db.pragma(`journal_size_limit = ${journalSizeLimit}`);
    return new Outbox(db, { ...opts, closeDatabase: true });
  } catch (err) {
    db.close();
    throw err;
  }
}
