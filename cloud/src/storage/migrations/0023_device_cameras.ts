import { sql, type Kysely } from 'kysely';

// The cameras of a device's last heartbeat (issue 15, the web console's fleet page): state, fps, inference latency
// and events per minute of each, as fleet/heartbeats.ts cameraSummaries() bounds them (at most 64 cameras, short
// strings). Written with the other heartbeat columns, never backwards (fleet/registry.ts recordHeartbeat).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE devices ADD COLUMN last_cameras jsonb`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE devices DROP COLUMN last_cameras`.execute(db);
}
