import { sql, type Kysely } from 'kysely';

/*
 * Detection events, range-partitioned by day on occurred_at.
 *
 * Exactly-once: PostgreSQL requires the partition key in every unique constraint, so the key is
 * (event_id, occurred_at). That is as strong as a unique event_id because an event's bytes are immutable
 * from the moment the edge writes them to its outbox: every redelivery carries the same occurred_at, and
 * ingest refuses (dead-letters) an event whose occurred_at is far from the time inside its UUIDv7 id.
 *
 * Partitions are created ahead by the maintenance job and, for late or early events inside the accepted
 * window, on demand by ingest before its insert transaction. Events outside the window are dead-lettered
 * with the reason, never silently dropped (see ingest/validate.ts).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE events (
      event_id uuid NOT NULL,
      occurred_at timestamptz NOT NULL,
      tenant_id text NOT NULL,
      site_id text NOT NULL,
      device_id text NOT NULL,
      camera_id text NOT NULL,
      track_id text NOT NULL,
      phase text NOT NULL,
      label text NOT NULL,
      score real NOT NULL,
      box_x real NOT NULL,
      box_y real NOT NULL,
      box_w real NOT NULL,
      box_h real NOT NULL,
      zones text[] NOT NULL DEFAULT '{}',
      trigger_zone text,
      model_name text,
      model_sha256 text,
      snapshot_media_id text,
      snapshot_sha256 text,
      snapshot_bytes integer,
      priority smallint NOT NULL DEFAULT 0,
      attributes jsonb NOT NULL DEFAULT '{}',
      -- The event exactly as the device sent it, including fields this cloud version does not know.
      payload bytea NOT NULL,
      received_at timestamptz NOT NULL DEFAULT now(),
      stream_seq bigint,
      PRIMARY KEY (event_id, occurred_at)
    ) PARTITION BY RANGE (occurred_at)`.execute(db);
  // The API lists a tenant's events newest first, optionally by device, camera or label (cursor on
  // occurred_at, event_id). Indexes on the parent are created on every partition.
  await sql`CREATE INDEX events_tenant_time_idx ON events (tenant_id, occurred_at DESC, event_id DESC)`.execute(
    db,
  );
  await sql`CREATE INDEX events_device_time_idx ON events (tenant_id, device_id, occurred_at DESC, event_id DESC)`.execute(
    db,
  );
  await sql`CREATE INDEX events_camera_time_idx ON events (tenant_id, camera_id, occurred_at DESC, event_id DESC)`.execute(
    db,
  );
  await sql`CREATE INDEX events_label_time_idx ON events (tenant_id, label, occurred_at DESC, event_id DESC)`.execute(
    db,
  );

  // One partition per UTC day, named events_YYYYMMDD. Idempotent; safe to race (IF NOT EXISTS + retry on
  // duplicate_table from a concurrent creator).
  await sql`
    CREATE FUNCTION vigil_ensure_event_partition(day date) RETURNS text LANGUAGE plpgsql AS $$
    DECLARE
      name text := 'events_' || to_char(day, 'YYYYMMDD');
    BEGIN
      EXECUTE format(
        'CREATE TABLE IF NOT EXISTS %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
        name, (day::timestamp AT TIME ZONE 'UTC'), ((day + 1)::timestamp AT TIME ZONE 'UTC'));
      RETURN name;
    EXCEPTION WHEN duplicate_table THEN
      RETURN name;
    END $$`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP FUNCTION vigil_ensure_event_partition(date)`.execute(db);
  await sql`DROP TABLE events`.execute(db);
}
