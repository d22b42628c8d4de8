import { sql, type Kysely } from 'kysely';
import type { Database } from '../storage/tables.js';
import type { NewEvent } from './store.js';

/**
 * How a column's values become elements of its array literal: `plain` (numbers, Dates: nothing to quote),
 * `quoted` (strings: always double-quoted, `"` and `\` escaped), `bytes` (bytea hex input).
 */
type ElementKind = 'plain' | 'quoted' | 'bytes';

/** The payload travels apart from the array literals (see insertUnnest); the other columns do not. */
const PAYLOAD = 'payload';

/**
 * The columns ingest writes, each with the SQL type of its array parameter, how its elements are spelled and
 * how a row's value becomes one. `received_at` is left to its default (now(): the start of the transaction).
 */
const COLUMNS: ReadonlyArray<
  readonly [name: string, type: string, kind: ElementKind, value: (r: NewEvent) => unknown]
> = [
  ['event_id', 'uuid', 'quoted', (r) => r.event_id],
  ['occurred_at', 'timestamptz', 'plain', (r) => r.occurred_at],
  ['tenant_id', 'text', 'quoted', (r) => r.tenant_id],
  ['site_id', 'text', 'quoted', (r) => r.site_id],
  ['device_id', 'text', 'quoted', (r) => r.device_id],
  ['camera_id', 'text', 'quoted', (r) => r.camera_id],
  ['track_id', 'text', 'quoted', (r) => r.track_id],
  ['phase', 'text', 'quoted', (r) => r.phase],
  ['label', 'text', 'quoted', (r) => r.label],
  ['score', 'real', 'plain', (r) => r.score],
  ['box_x', 'real', 'plain', (r) => r.box_x],
  ['box_y', 'real', 'plain', (r) => r.box_y],
  ['box_w', 'real', 'plain', (r) => r.box_w],
  ['box_h', 'real', 'plain', (r) => r.box_h],
  // A text[] per row cannot be an element of an array parameter (PostgreSQL arrays are rectangular and unnest
  // flattens them): each row's zones travel as one array literal, cast back per row.
  ['zones', 'text', 'quoted', (r) => textArrayLiteral(r.zones ?? [])],
  ['trigger_zone', 'text', 'quoted', (r) => r.trigger_zone ?? null],
  ['model_name', 'text', 'quoted', (r) => r.model_name ?? null],
  ['model_sha256', 'text', 'quoted', (r) => r.model_sha256 ?? null],
  ['snapshot_media_id', 'text', 'quoted', (r) => r.snapshot_media_id ?? null],
  ['snapshot_sha256', 'text', 'quoted', (r) => r.snapshot_sha256 ?? null],
  ['snapshot_bytes', 'integer', 'plain', (r) => r.snapshot_bytes ?? null],
  ['priority', 'smallint', 'plain', (r) => r.priority ?? 0],
  ['attributes', 'text', 'quoted', (r) => r.attributes ?? '{}'],
  ['payload', 'bytea', 'bytes', (r) => r.payload],
  ['stream_seq', 'bigint', 'plain', (r) => r.stream_seq ?? null],
];

/** Per-row casts back from the transport type (zones: array literal -> text[], attributes: text -> jsonb). */
const CAST: Readonly<Record<string, string>> = { zones: '::text[]', attributes: '::jsonb' };

const COLUMN_LIST = sql.raw(COLUMNS.map(([name]) => name).join(', '));
/** The literal columns (all but the payload) and, at the end, each row's payload slice: 1-based start, length. */
const LITERAL_COLUMNS = COLUMNS.filter(([name]) => name !== PAYLOAD);
const UNNEST_LIST = sql.raw(
  [...LITERAL_COLUMNS.map(([name]) => name), 'payload_at', 'payload_len'].join(', '),
);
/** Same order as COLUMN_LIST; the payload cut from the batch's one bytea parameter (`b.payloads`). */
const SELECT_LIST = sql.raw(
  COLUMNS.map(([name]) =>
    name === PAYLOAD
      ? 'substring(b.payloads from u.payload_at for u.payload_len)'
      : `u.${name}${CAST[name] ?? ''}`,
  ).join(', '),
);

const NEEDS_ESCAPE = /["\\]/;
const ESCAPED = /["\\]/g;

/** One array element, double-quoted: `"` and `\` escaped (PostgreSQL array input syntax). */
function quote(v: string): string {
  return NEEDS_ESCAPE.test(v) ? `"${v.replace(ESCAPED, '\\$&')}"` : `"${v}"`;
}

/** `{"a","b"}`: every element quoted, `"` and `\` escaped (PostgreSQL array input syntax). */
export function textArrayLiteral(values: readonly string[]): string {
  return `{${values.map(quote).join(',')}}`;
}

/** An element of a `plain` column: numbers and Dates as they are; anything else quoted (never unescaped). */
function plain(v: unknown): string {
  if (typeof v === 'number') return String(v);
  if (v instanceof Date) return v.toISOString();
  return quote(String(v));
}

/**
 * The array literal of one column for `rows`, as ONE text parameter (cast to `type[]` in SQL). Built here
 * rather than by pg's generic array serializer (a regex escape and a type test per element, Dates in local
 * time): that was a quarter of the ingest loop's CPU per event (cloud/bench/ingest.bench.ts --cpu-prof).
 */
export function arrayLiteral(
  rows: readonly NewEvent[],
  kind: ElementKind,
  value: (r: NewEvent) => unknown,
): string {
  const parts = new Array<string>(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const v = value(rows[i]!);
    if (v === null || v === undefined) parts[i] = 'NULL';
    // The quoted columns are text in NewEvent (and the zones literal).
    else if (kind === 'quoted') parts[i] = quote(v as string);
    else if (kind === 'plain') parts[i] = plain(v);
    else {
      const b = v as Uint8Array;
      // bytea hex input `\x...`; the backslash doubled inside the quoted element.
      parts[i] = `"\\\\x${Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')}"`;
    }
  }
  return `{${parts.join(',')}}`;
}

/**
 * One `INSERT INTO events ... SELECT FROM unnest($2::uuid[], ...)` for any number of rows: 27 parameters, one
 * plan shape. Returns the keys of the rows inserted now.
 *
 * The payloads travel as ONE bytea parameter (the batch's payloads back to back; node-pg sends a Buffer in
 * binary) with each row's start and length in two int arrays: no hex spelling (twice the bytes, and the largest
 * part of building the literals: ~40 % of it, scratch measurement of a 500-row batch of the bench's events).
 *
 * Optimistic first (`optimistic`): a plain INSERT, no ON CONFLICT, no RETURNING. Nearly every batch is new
 * rows only, and the plain INSERT skips the arbiter-index probe and speculative insertion of ON CONFLICT for
 * each row and sends nothing back. If any row is already stored the statement fails as a whole (unique
 * violation, nothing written) and the caller runs it again with `optimistic: false`: ON CONFLICT DO NOTHING
 * RETURNING, which says exactly which rows are new. Exactly-once is the primary key's either way.
 */
export async function insertUnnest(
  db: Kysely<Database>,
  rows: readonly NewEvent[],
  optimistic: boolean,
): Promise<Array<{ event_id: string; occurred_at: Date }>> {
  const payloads = new Array<Uint8Array>(rows.length);
  const at = new Array<string>(rows.length);
  const len = new Array<string>(rows.length);
  let offset = 1;
  for (let i = 0; i < rows.length; i++) {
    const p = rows[i]!.payload;
    payloads[i] = p;
    at[i] = String(offset);
    len[i] = String(p.byteLength);
    offset += p.byteLength;
  }
  const bytes = Buffer.concat(payloads, offset - 1);
  const arrays = LITERAL_COLUMNS.map(
    ([, type, kind, value]) => sql`${arrayLiteral(rows, kind, value)}::${sql.raw(type)}[]`,
  );
  arrays.push(sql`${`{${at.join(',')}}`}::integer[]`, sql`${`{${len.join(',')}}`}::integer[]`);
  const insert = sql`insert into events (${COLUMN_LIST})
    select ${SELECT_LIST} from (select ${bytes}::bytea as payloads) as b,
      unnest(${sql.join(arrays)}) as u(${UNNEST_LIST})`;
  if (optimistic) {
    await insert.execute(db);
    return rows.map((r) => ({ event_id: r.event_id, occurred_at: r.occurred_at }));
  }
  const { rows: inserted } = await sql<{ event_id: string; occurred_at: Date }>`${insert}
    on conflict (event_id, occurred_at) do nothing
    returning event_id, occurred_at`.execute(db);
  return inserted;
}

/** PostgreSQL's unique_violation: an optimistic INSERT met a row that is stored already. */
export function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === '23505';
}
