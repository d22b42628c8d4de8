import type BetterSqlite3 from 'better-sqlite3';

/*
 * Outbox schema, versioned with `PRAGMA user_version` (the outbox owns its database file). Migration i takes the
 * file from version i to i + 1; each runs in its own IMMEDIATE transaction together with the version bump, so a
 * crash mid-migration leaves the previous version intact.
 *
 * Why it looks like this:
 * - `events.id` is the edge-assigned UUIDv7 in canonical lowercase text: BINARY collation orders it by creation
 *   time, it is the JetStream msgID and the cloud's conflict key, so the same value is the idempotency key at
 *   every hop. TEXT (36 bytes) rather than a 16-byte BLOB keeps it readable in `sqlite3` during an incident; the
 *   difference is noise next to the payload.
 * - A rowid table, not WITHOUT ROWID: rows carry proto payloads of hundreds of bytes up to `maxPayloadBytes`, and
 *   WITHOUT ROWID tables are only a win for rows well under ~1/20 of a page.
 * - Large blobs are the LAST column of each table: SQLite decodes a record left to right, and a column stored
 *   after a blob that spilled into overflow pages would make every read of it walk the overflow chain.
 * - `events_drain (priority, id)`: drain order (priority 0 first, oldest first) and eviction (oldest of one
 *   priority class) are both index range scans with no sort.
 * - `events_created (created_at)`: TTL expiry and `oldestCreatedAt` without a table scan. TTL counts from when
 *   the event entered the outbox (the injected clock), not from the id's timestamp, which the caller supplies.
 * - `sent_at` (NULL = pending, otherwise in flight since that ms) and `attempts` are the in-flight bookkeeping.
 * - Media in its own table (one row per event, keyed by the event id) rather than a column of `events`: the drain
 *   and eviction scans and the in-flight updates never touch the snapshot pages; a later policy can drop the
 *   media of an event and keep the event ("drop frames before events"); and media can be shipped on its own path
 *   (object store) without rewriting the events table. The cost is one more insert and delete per event with
 *   media, done in the same transaction. The outbox deletes media explicitly (media first, then the event), so it
 *   does not depend on `PRAGMA foreign_keys`; the REFERENCES clause documents the relation and cascades too when
 *   a caller has foreign keys on.
 * - STRICT tables: a wrong type is an error at insert time, not a silently coerced value.
 */
/*
 * EXPAND-ONLY (vigil-updater rolls agents back and forth over the same outbox file): a migration may only
 * CREATE TABLE, CREATE INDEX, or ALTER TABLE ... ADD COLUMN that is nullable or has a DEFAULT. Never drop,
 * rename or retype, never rewrite rows. Then an older agent, after a rollback, reads and writes a file a newer
 * one migrated (its statements name their columns, new columns fill themselves), and the newer one, upgraded
 * again, finds rows the older one wrote without its new columns' values (it must accept their defaults).
 * edge-agent/test/buffer-outbox.test.ts checks every migration against this rule.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE events (
    id         TEXT    NOT NULL PRIMARY KEY,
    priority   INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 3),
    kind       TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    bytes      INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    sent_at    INTEGER,
    payload    BLOB    NOT NULL
  ) STRICT;
  CREATE INDEX events_drain ON events (priority, id);
  CREATE INDEX events_created ON events (created_at);
  CREATE TABLE media (
    event_id     TEXT    NOT NULL PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE,
    content_type TEXT    NOT NULL,
    bytes        INTEGER NOT NULL,
    data         BLOB    NOT NULL
  ) STRICT;
  `,
];

export const OUTBOX_SCHEMA_VERSION = MIGRATIONS.length;
/** For the expand-only check in the tests. */
export const OUTBOX_MIGRATIONS = MIGRATIONS;

/**
 * Brings the outbox schema of `db` up to {@link OUTBOX_SCHEMA_VERSION}; a no-op when it is current. A file of a
 * newer schema (this agent is the release an update rolled back to) is used as it is: migrations are
 * expand-only, so the tables and columns this version knows are all there.
 */
export function migrateOutbox(db: BetterSqlite3.Database): void {
  const current = Number(db.pragma('user_version', { simple: true }));
  for (let v = current; v < MIGRATIONS.length; v++) {
    const sql = MIGRATIONS[v] ?? '';
    db.transaction(() => {
      db.exec(sql);
      db.pragma(`user_version = ${v + 1}`);
    }).immediate();
  }
}
