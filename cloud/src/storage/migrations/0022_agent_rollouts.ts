import { type Kysely } from 'kysely';

// Agent-version rollouts (issue 14 point 4; rollouts/agent.ts). A device's heartbeat now carries its updater's
// state (Heartbeat.update): the registry keeps the last one beside agent_version. A rollout may target an agent
// version (agent_version and agent_channel set) instead of a config body; each of its devices remembers the
// agent version it ran when its wave was issued, which a rollback asks it to return to. Additive only.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('devices')
    .addColumn('update_state', 'text')
    .addColumn('update_current', 'text')
    .addColumn('update_previous', 'text')
    .addColumn('update_target', 'text')
    .addColumn('update_reason', 'text')
    .addColumn('update_at', 'timestamptz')
    .execute();
  await db.schema
    .alterTable('rollouts')
    .addColumn('agent_version', 'text')
    .addColumn('agent_channel', 'text')
    .execute();
  await db.schema.alterTable('rollout_devices').addColumn('previous_agent_version', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('rollout_devices').dropColumn('previous_agent_version').execute();
  await db.schema.alterTable('rollouts').dropColumn('agent_version').dropColumn('agent_channel').execute();
  await db.schema
    .alterTable('devices')
    .dropColumn('update_state')
    .dropColumn('update_current')
    .dropColumn('update_previous')
    .dropColumn('update_target')
    .dropColumn('update_reason')
    .dropColumn('update_at')
    .execute();
}
