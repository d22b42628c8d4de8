import { sql, type Kysely } from 'kysely';
import type { Database } from '../storage/tables.js';

/**
 * Asks for a re-issue pass of `tenantId`'s device configs (privacy/edge-sync.ts), in the caller's transaction (a
 * retention policy change's, so the pass and the change commit together): a pass under way restarts with the
 * newest policies (generation + 1, cursor and counters reset).
 */
export async function requestEdgeSync(
  db: Kysely<Database>,
  tenantId: string,
  actor: string,
  at: Date,
): Promise<void> {
  await sql`
    insert into edge_retention_syncs as s (tenant_id, generation, state, requested_by, requested_at, updated_at)
    values (${tenantId}, 1, 'pending', ${actor}, ${at}, ${at})
    on conflict (tenant_id) do update set
      generation = s.generation + 1, state = 'pending', cursor_device = null, devices_checked = 0,
      devices_reissued = 0, devices_failed = 0, batches = 0, requested_by = excluded.requested_by,
      requested_at = excluded.requested_at, started_at = null, finished_at = null,
      updated_at = excluded.updated_at`.execute(db);
}
