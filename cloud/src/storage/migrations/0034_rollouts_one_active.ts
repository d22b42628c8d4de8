import { sql, type Kysely } from 'kysely';

// One active rollout per tenant, as a constraint (issue #17): the API used to check for an active rollout and then
// insert, so two API processes (or two requests on one) could both pass the check and start two rollouts that fight
// over the same devices' desired versions. A partial unique index makes the database refuse the second insert
// (unique_violation on `rollouts_one_active`), which the API answers with 409 rollout-state-conflict. The states
// listed are ACTIVE_STATES of rollouts/store.ts: an aborted rollout is still rolling its devices back.
//
// A database where the race already happened holds two active rollouts of one tenant, and the index cannot be
// built. Nothing is changed for the operator (ending a rollout by hand could leave devices half rolled back): the
// migration fails, naming the tenants and rollouts, and runs once one of each pair is aborted and rolled back.
export const ONE_ACTIVE_INDEX = 'rollouts_one_active';

export async function up(db: Kysely<unknown>): Promise<void> {
  const dup = await sql<{ tenant_id: string; ids: string }>`
    select tenant_id, string_agg(id, ', ' order by created_at) as ids from rollouts
    where state in ('pending', 'running', 'paused', 'aborted', 'rolling_back')
    group by tenant_id having count(*) > 1 order by tenant_id limit 20`.execute(db);
  if (dup.rows.length > 0)
    throw new Error(
      'more than one active rollout in a tenant; abort all but one (POST /v1/rollouts/{id}/abort), wait for ' +
        `their rollback to end, then migrate again: ${dup.rows.map((r) => `${r.tenant_id}: ${r.ids}`).join('; ')}`,
    );
  await sql`
    create unique index ${sql.raw(ONE_ACTIVE_INDEX)} on rollouts (tenant_id)
    where state in ('pending', 'running', 'paused', 'aborted', 'rolling_back')`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index if exists ${sql.raw(ONE_ACTIVE_INDEX)}`.execute(db);
}
