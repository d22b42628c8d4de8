import { sql, type Insertable, type Kysely, type Transaction } from 'kysely';
import type { Database, EventsTable } from '../storage/tables.js';
import { insertUnnest, isUniqueViolation } from './insert.js';

/** One row for `events`, as ingest builds it from a validated DetectionEvent. */
export type NewEvent = Insertable<EventsTable> & {
  event_id: string;
  occurred_at: Date;
  tenant_id: string;
  device_id: string;
};

/**
 * Work that must commit together with a batch of events (the webhook outbox, integrations/outbox.ts): `write`
 * runs inside the insert's transaction with the rows inserted now (not the duplicates ON CONFLICT skipped),
 * `committed` after COMMIT.
 */
export interface CommitWriter {
  write(tx: Transaction<Database>, fresh: readonly NewEvent[]): Promise<void>;
  committed(): void;
}

/**
 * Makes the CommitWriter of one batch, before its transaction (reads belong outside it); undefined: none.
 * `before` (ingest): settles when the batch fetched before this one is done (committed, or failed), for a
 * writer whose decisions depend on the order of events (alerts/outbox.ts); it never rejects.
 */
export interface CommitHook {
  prepare(rows: readonly NewEvent[], before?: Promise<void>): Promise<CommitWriter | undefined>;
}

/** Partition of a UTC day `YYYY-MM-DD` is named events_YYYYMMDD. */
const PARTITION_NAME = /^events_(\d{4})(\d{2})(\d{2})$/;

/** The UTC day (`YYYY-MM-DD`) that holds `at`, i.e. the partition an event with that occurred_at goes to. */
export function utcDay(at: Date): string {
  return at.toISOString().slice(0, 10);
}

/** Writes and reads of the `events` table that ingest needs. Adapters get a built Kysely, not a URL. */
export class EventStore {
  constructor(private readonly db: Kysely<Database>) {}

  /**
   * Inserts `rows` in one transaction (one multi-row INSERT ... ON CONFLICT DO NOTHING) and commits.
   * Returns the number of rows actually inserted; the others were already stored (same event id and
   * occurred_at). When this resolves, every row is durably committed: inserted now or before.
   */
  async insertBatch(rows: readonly NewEvent[]): Promise<number> {
    return (await this.insertBatchIds(rows)).length;
  }

  /**
   * {@link insertBatch}, returning the ids of the rows inserted now (not those stored before). `writer`, if
   * given, writes in the same transaction what must commit with exactly those rows.
   *
   * One statement whatever the batch size: every column travels as one array parameter and `unnest` turns them
   * back into rows (`INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING`). A multi-row VALUES list of
   * 500 rows x 25 columns cost PostgreSQL 12,500 parameters to bind and a plan per batch (cloud/bench/
   * ingest.bench.ts). Without a writer the INSERT runs on its own (autocommit: atomic, one round trip instead
   * of BEGIN, INSERT, COMMIT). The INSERT is tried without ON CONFLICT first (insert.ts: optimistic).
   */
  async insertBatchIds(rows: readonly NewEvent[], writer?: CommitWriter): Promise<string[]> {
    if (rows.length === 0) return [];
    try {
      return await this.insertOnce(rows, writer, true);
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      // Some row is stored already (a redelivery): nothing was written; again, skipping the stored rows.
      return this.insertOnce(rows, writer, false);
    }
  }

  private async insertOnce(
    rows: readonly NewEvent[],
    writer: CommitWriter | undefined,
    optimistic: boolean,
  ): Promise<string[]> {
    if (!writer) return (await insertUnnest(this.db, rows, optimistic)).map((r) => r.event_id);
    const ids = await this.db.transaction().execute(async (tx) => {
      const inserted = await insertUnnest(tx, rows, optimistic);
      const keys = new Set(inserted.map((r) => `${r.event_id} ${r.occurred_at.getTime()}`));
      await writer.write(
        tx,
        rows.filter((r) => keys.has(`${r.event_id} ${r.occurred_at.getTime()}`)),
      );
      return inserted.map((r) => r.event_id);
    });
    writer.committed();
    return ids;
  }

  /** Creates the partition for one UTC day if missing (idempotent, safe to race; see 0002_events). */
  async ensurePartition(day: string): Promise<void> {
    await sql`select vigil_ensure_event_partition(${day}::date)`.execute(this.db);
  }

  /**
   * Drops the partition of one UTC day with every event in it; returns how many rows it held, or null when it
   * was not there (already dropped). Retention only: the day must be long past.
   */
  async dropPartition(day: string): Promise<number | null> {
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day);
    if (!m) throw new Error(`dropPartition: not a day: ${JSON.stringify(day)}`);
    const name = `events_${m[1]}${m[2]}${m[3]}`;
    return this.db.transaction().execute(async (tx) => {
      const exists = await sql<{
        n: string;
      }>`select count(*) as n from pg_class c join pg_namespace s on s.oid = c.relnamespace
        where c.relname = ${name} and s.nspname = current_schema()`.execute(tx);
      if (Number(exists.rows[0]?.n ?? 0) === 0) return null;
      const count = await sql<{ n: string }>`select count(*) as n from ${sql.table(name)}`.execute(tx);
      await sql`drop table if exists ${sql.table(name)}`.execute(tx);
      return Number(count.rows[0]?.n ?? 0);
    });
  }

  /** The UTC days (`YYYY-MM-DD`) that have a partition today. */
  async partitionDays(): Promise<string[]> {
    const { rows } = await sql<{ name: string }>`
      select c.relname as name
        from pg_inherits i
        join pg_class c on c.oid = i.inhrelid
        join pg_class p on p.oid = i.inhparent
        join pg_namespace n on n.oid = p.relnamespace
       where p.relname = 'events' and n.nspname = current_schema()`.execute(this.db);
    return rows.flatMap(({ name }) => {
      const m = PARTITION_NAME.exec(name);
      return m ? [`${m[1]}-${m[2]}-${m[3]}`] : [];
    });
  }

  /**
   * Which of `ids` are committed for this tenant and device. `from`/`to` bound occurred_at so that the
   * query touches only the partitions those ids can live in.
   */
  async committedIds(
    tenantId: string,
    deviceId: string,
    ids: readonly string[],
    from: Date,
    to: Date,
  ): Promise<string[]> {
    if (ids.length === 0) return [];
    const { rows } = await sql<{ id: string }>`
      select event_id::text as id from events
       where tenant_id = ${tenantId} and device_id = ${deviceId}
         and event_id = any(${[...ids]}::uuid[])
         and occurred_at >= ${from} and occurred_at < ${to}`.execute(this.db);
    return rows.map((r) => r.id);
  }
}
