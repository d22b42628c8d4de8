import type { Kysely } from 'kysely';

// Two more rollout gate signals (issue #7), from the agents' heartbeats:
//
// - devices.mean_inference_ms: mean over the last heartbeat's cameras (those that ran inference) of each
//   camera's median detect latency in the interval; null when no camera ran inference.
// - devices.events_per_minute: events per minute over the last heartbeat's interval, summed over its cameras.
// - rollout_devices.baseline_inference_ms: the device's mean_inference_ms when its wave was issued (the
//   pre-rollout baseline of the inference-latency gate, as baseline_fps is for the fps gate).
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('devices')
    .addColumn('mean_inference_ms', 'real')
    .addColumn('events_per_minute', 'real')
    .execute();
  await db.schema.alterTable('rollout_devices').addColumn('baseline_inference_ms', 'real').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('rollout_devices').dropColumn('baseline_inference_ms').execute();
  await db.schema
    .alterTable('devices')
    .dropColumn('mean_inference_ms')
    .dropColumn('events_per_minute')
    .execute();
}
