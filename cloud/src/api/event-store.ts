import { sql, type Kysely, type Selectable } from 'kysely';
import { uuidV7Time } from '../lib/uuidv7.js';
import type { ReadHeavy } from '../storage/replica.js';
import type { Database, EventsTable } from '../storage/tables.js';
import { planWindows, type PartitionSpan, type TimeWindow } from './event-windows.js';

/** Position in the newest-first order: the last item of a page. Opaque to clients (see events-query.ts). */
export interface EventCursor {
  /** occurred_at exactly as PostgreSQL stores it (microseconds, UTC), e.g. 2026-11-27T10:00:00.123456Z. */
  occurredAt: string;
  eventId: string;
}

export interface EventFilter {
  site?: string | undefined;
  device?: string | undefined;
  camera?: string | undefined;
  label?: string | undefined;
  /** Events whose zones include this one (the console's filter; not an API parameter yet). */
  zone?: string | undefined;
  /**
   * Only events marked reviewed (true) or not (false) (event_reviews; the console's filter, not an API
   * parameter yet). A NOT EXISTS on the review's primary key per row walked, so the keyset order still holds.
   */
  reviewed?: boolean | undefined;
  /** Inclusive lower bound on occurred_at. */
  since?: Date | undefined;
  /** Exclusive upper bound on occurred_at. */
  until?: Date | undefined;
  after?: EventCursor | undefined;
  limit: number;
}

/** The JSON shape of an event in the API (snake_case like the rest of the wire). */
export interface EventView {
  event_id: string;
  tenant_id: string;
  site_id: string;
  device_id: string;
  camera_id: string;
  occurred_at: string;
  received_at: string;
  track_id: string;
  phase: string;
  label: string;
  score: number;
  box: { x: number; y: number; w: number; h: number };
  zones: string[];
  trigger_zone: string | null;
  model: { name: string; sha256: string | null } | null;
  snapshot: { media_id: string; sha256: string | null; size_bytes: number | null } | null;
  priority: number;
  attributes: Record<string, string>;
}

export interface EventPage {
  items: EventView[];
  /** Where the next page starts, or null when this page is the last. */
  next: EventCursor | null;
}

/**
 * ingest dead-letters an event whose occurred_at is further than 24 h (ingest/validate.ts
 * MAX_ID_TIME_SKEW_MS) from the time in its UUIDv7 id, so a lookup by a v7 id only needs the partitions
 * inside this window (one hour of margin on top).
 */
export const UUIDV7_OCCURRED_AT_WINDOW_MS = 25 * 60 * 60 * 1000;

// Everything but `payload` (the raw bytes: large, and not part of the API) and `stream_seq`.
const COLUMNS = [
  'event_id',
  'tenant_id',
  'site_id',
  'device_id',
  'camera_id',
  'occurred_at',
  'received_at',
  'track_id',
  'phase',
  'label',
  'score',
  'box_x',
  'box_y',
  'box_w',
  'box_h',
  'zones',
  'trigger_zone',
  'model_name',
  'model_sha256',
  'snapshot_media_id',
  'snapshot_sha256',
  'snapshot_bytes',
  'priority',
  'attributes',
] as const;

type EventRow = Pick<Selectable<EventsTable>, (typeof COLUMNS)[number]>;

// JS Dates hold milliseconds; PostgreSQL microseconds. The cursor must carry the exact value or a page
// boundary between two events in the same millisecond would skip or repeat one.
const exactTime = sql<string>`to_char(occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

export function toEventView(r: EventRow): EventView {
  return {
    event_id: r.event_id,
    tenant_id: r.tenant_id,
    site_id: r.site_id,
    device_id: r.device_id,
    camera_id: r.camera_id,
    occurred_at: r.occurred_at.toISOString(),
    received_at: r.received_at.toISOString(),
    track_id: r.track_id,
    phase: r.phase,
    label: r.label,
    score: r.score,
    box: { x: r.box_x, y: r.box_y, w: r.box_w, h: r.box_h },
    zones: r.zones,
    trigger_zone: r.trigger_zone,
    model: r.model_name === null ? null : { name: r.model_name, sha256: r.model_sha256 },
    snapshot:
      r.snapshot_media_id === null
        ? null
        : { media_id: r.snapshot_media_id, sha256: r.snapshot_sha256, size_bytes: r.snapshot_bytes },
    priority: r.priority,
    attributes: r.attributes,
  };
}

/**
 * How long the partition bounds read from the catalog are reused. They only steer the walk (event-windows.ts:
 * a partition created or dropped meanwhile changes no result), so this trades a catalog query per list for
 * a few wasted or larger windows after retention or a new day.
 */
export const PARTITION_SPAN_TTL_MS = 60_000;

export interface EventReaderOptions {
  /** Where lists run (a fresh replica: storage/replica.ts); default: the reader's db. */
  readHeavy?: ReadHeavy | undefined;
  /** The cloud clock. */
  now?: (() => Date) | undefined;
}

/**
 * Read side of the events table for the API. Every query is scoped to one tenant, and every list uses the
 * (tenant_id[, site_id | device_id | camera_id | label], occurred_at desc, event_id desc) indexes: keyset
 * pagination, never OFFSET. A list reads bounded time windows newest first (event-windows.ts) and stops when
 * the page is full, so that each statement prunes to the daily partitions of its window.
 */
export class EventReader {
  private readonly readHeavy: ReadHeavy;
  private readonly now: () => Date;
  private span: { value: Promise<PartitionSpan | null>; until: number } | undefined;

  constructor(
    private readonly db: Kysely<Database>,
    opts: EventReaderOptions = {},
  ) {
    this.readHeavy = opts.readHeavy ?? ((query) => query(db));
    this.now = opts.now ?? (() => new Date());
  }

  async list(tenant: string, f: EventFilter): Promise<EventPage> {
    // One extra row says whether another page exists, so the last page has next_cursor null.
    const want = f.limit + 1;
    const rows = await this.readHeavy(async (db) => {
      const windows = planWindows({
        // Seconds suffice (the walk starts in the cursor's day); JS Dates would not take microseconds anyway.
        upper: f.after === undefined ? f.until : new Date(`${f.after.occurredAt.slice(0, 19)}Z`),
        since: f.since,
        span: await this.partitionSpan(db),
        now: this.now(),
      });
      const found = [];
      for (const w of windows) {
        found.push(...(await this.listQuery(db, tenant, f, w, want - found.length).execute()));
        if (found.length >= want) break;
      }
      return found;
    });
    const page = rows.slice(0, f.limit);
    const last = page.at(-1);
    return {
      items: page.map(toEventView),
      next:
        rows.length > f.limit && last ? { occurredAt: last.occurred_at_exact, eventId: last.event_id } : null,
    };
  }

  /** The request's rows inside one window, newest first, at most `limit`. */
  listQuery(db: Kysely<Database>, tenant: string, f: EventFilter, w: TimeWindow, limit: number) {
    let q = db
      .selectFrom('events')
      .select(COLUMNS)
      .select(exactTime.as('occurred_at_exact'))
      .where('tenant_id', '=', tenant);
    if (f.site !== undefined) q = q.where('site_id', '=', f.site);
    if (f.device !== undefined) q = q.where('device_id', '=', f.device);
    if (f.camera !== undefined) q = q.where('camera_id', '=', f.camera);
    if (f.label !== undefined) q = q.where('label', '=', f.label);
    if (f.zone !== undefined) q = q.where(sql<boolean>`zones @> array[${f.zone}]::text[]`);
    if (f.reviewed !== undefined) {
      const reviewed = sql<boolean>`exists (select 1 from event_reviews r
        where r.tenant_id = events.tenant_id and r.event_id = events.event_id)`;
      q = q.where(f.reviewed ? reviewed : sql<boolean>`not ${reviewed}`);
    }
    if (f.since !== undefined) q = q.where('occurred_at', '>=', f.since);
    if (f.until !== undefined) q = q.where('occurred_at', '<', f.until);
    // Plain comparisons on occurred_at are what partition pruning understands (a row comparison is not).
    if (w.from !== null) q = q.where('occurred_at', '>=', w.from);
    if (w.to !== null) q = q.where('occurred_at', '<', w.to);
    if (f.after !== undefined) {
      const { occurredAt, eventId } = f.after;
      q = q
        .where(sql<boolean>`occurred_at <= ${occurredAt}::timestamptz`)
        .where(sql<boolean>`(occurred_at, event_id) < (${occurredAt}::timestamptz, ${eventId}::uuid)`);
    }
    return q.orderBy('occurred_at', 'desc').orderBy('event_id', 'desc').limit(limit);
  }

  /**
   * Bounds of the oldest and newest partitions of `events` (null: none, or one that is not a day range such as
   * a DEFAULT partition), from the catalog, reused for PARTITION_SPAN_TTL_MS.
   */
  partitionSpan(db: Kysely<Database>): Promise<PartitionSpan | null> {
    const now = this.now().getTime();
    if (this.span === undefined || now >= this.span.until) {
      const value = readPartitionSpan(db);
      this.span = { value, until: now + PARTITION_SPAN_TTL_MS };
      // A failed read is not kept: the next list asks again.
      value.catch(() => {
        if (this.span?.value === value) this.span = undefined;
      });
    }
    return this.span.value;
  }

  /** One event of `tenant`, or null. */
  async get(tenant: string, id: string): Promise<EventView | null> {
    const row = await this.getQuery(tenant, id).executeTakeFirst();
    return row ? toEventView(row) : null;
  }

  /**
   * The lookup by id. For a UUIDv7 id it also bounds occurred_at to the id's time +-25 h, so PostgreSQL
   * prunes to the two or three daily partitions of that window instead of probing every partition's index.
   */
  getQuery(tenant: string, id: string) {
    let q = this.db
      .selectFrom('events')
      .select(COLUMNS)
      .where('tenant_id', '=', tenant)
      .where('event_id', '=', id);
    const t = uuidV7Time(id);
    if (t !== undefined) {
      q = q
        .where('occurred_at', '>=', new Date(t - UUIDV7_OCCURRED_AT_WINDOW_MS))
        .where('occurred_at', '<=', new Date(t + UUIDV7_OCCURRED_AT_WINDOW_MS));
    }
    return q.limit(1);
  }
}

/**
 * The catalog's partition bounds of `events`, cast back to timestamptz in the same session that printed them
 * (so DateStyle and TimeZone cannot garble them).
 */
export async function readPartitionSpan(db: Kysely<Database>): Promise<PartitionSpan | null> {
  const { rows } = await sql<{ oldest: Date | null; newest: Date | null; odd: number; n: number }>`
    select min(b[1]::timestamptz) as oldest, max(b[2]::timestamptz) as newest,
           count(*) filter (where b is null or not isfinite(b[1]::timestamptz)
                                    or not isfinite(b[2]::timestamptz))::int as odd, count(*)::int as n
      from (select regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                '^FOR VALUES FROM [(]''([^'']+)''[)] TO [(]''([^'']+)''[)]$') as b
              from pg_inherits i join pg_class c on c.oid = i.inhrelid
             where i.inhparent = 'events'::regclass) p`.execute(db);
  const r = rows[0];
  if (!r || r.n === 0 || r.odd > 0 || r.oldest === null || r.newest === null) return null;
  return { oldest: r.oldest, newest: r.newest };
}
