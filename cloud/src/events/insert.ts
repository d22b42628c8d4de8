import { sql, type Kysely } from 'kysely';
import type { Database } from '../storage/tables.js';
import type { NewEvent } from './store.js';

/**
 * The columns ingest writes, each with the SQL type of its array parameter and how a row's value becomes an
 * element of it. `received_at` is left to its default (now(): the start of the transaction).
 */
const COLUMNS: ReadonlyArray<readonly [name: string, type: string, value: (r: NewEvent) => unknown]> = [
  ['event_id', 'uuid', (r) => r.event_id],
  ['occurred_at', 'timestamptz', (r) => r.occurred_at],
  ['tenant_id', 'text', (r) => r.tenant_id],
  ['site_id', 'text', (r) => r.site_id],
  ['device_id', 'text', (r) => r.device_id],
  ['camera_id', 'text', (r) => r.camera_id],
  ['track_id', 'text', (r) => r.track_id],
  ['phase', 'text', (r) => r.phase],
  ['label', 'text', (r) => r.label],
  ['score', 'real', (r) => r.score],
  ['box_x', 'real', (r) => r.box_x],
  ['box_y', 'real', (r) => r.box_y],
  ['box_w', 'real', (r) => r.box_w],
  ['box_h', 'real', (r) => r.box_h],
  // A text[] per row cannot be an element of an array parameter (PostgreSQL arrays are rectangular and unnest
  // flattens them): each row's zones travel as one array literal, cast back per row.
  ['zones', 'text', (r) => textArrayLiteral(r.zones ?? [])],
  ['trigger_zone', 'text', (r) => r.trigger_zone ?? null],
  ['model_name', 'text', (r) => r.model_name ?? null],
  ['model_sha256', 'text', (r) => r.model_sha256 ?? null],
  ['snapshot_media_id', 'text', (r) => r.snapshot_media_id ?? null],
  ['snapshot_sha256', 'text', (r) => r.snapshot_sha256 ?? null],
  ['snapshot_bytes', 'integer', (r) => r.snapshot_bytes ?? null],
  ['priority', 'smallint', (r) => r.priority ?? 0],
  ['attributes', 'text', (r) => r.attributes ?? '{}'],
  ['payload', 'bytea', (r) => r.payload],
  [
    'stream_seq',
    'bigint',
    (r) => (r.stream_seq === null || r.stream_seq === undefined ? null : String(r.stream_seq)),
  ],
];

/** Per-row casts back from the transport type (zones: array literal -> text[], attributes: text -> jsonb). */
const CAST: Readonly<Record<string, string>> = { zones: '::text[]', attributes: '::jsonb' };

const COLUMN_LIST = sql.raw(COLUMNS.map(([name]) => name).join(', '));
const SELECT_LIST = sql.raw(COLUMNS.map(([name]) => `u.${name}${CAST[name] ?? ''}`).join(', '));

/** `{"a","b"}`: every element quoted, `"` and `\` escaped (PostgreSQL array input syntax). */
export function textArrayLiteral(values: readonly string[]): string {
  return `{${values.map((v) => `"${v.replace(/["\\]/g, (c) => `\\${c}`)}"`).join(',')}}`;
}

/**
 * One `INSERT INTO events ... SELECT FROM unnest($1::uuid[], ...)` for any number of rows: 25 parameters, one
 * plan shape. Returns the keys of the rows inserted now.
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
  const arrays = COLUMNS.map(([, type, value]) => sql`${rows.map(value)}::${sql.raw(type)}[]`);
  const names = sql.raw(COLUMNS.map(([name]) => name).join(', '));
  const insert = sql`insert into events (${COLUMN_LIST})
    select ${SELECT_LIST} from unnest(${sql.join(arrays)}) as u(${names})`;
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
