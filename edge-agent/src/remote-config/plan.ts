/**
 * The plan from the running config to a target one: pure, so that what an apply will touch can be tested
 * without running anything. Only cameras whose own config changed (or whose model is reloaded, or all
 * detecting cameras when the privacy policy changes: they hold the face model) restart; models are compared
 * by everything that makes a loaded session reusable.
 */
import type { AgentConfig, CameraConfig, ModelConfig } from '../config/schema.js';

export type RuntimeParts = Pick<
  AgentConfig,
  'cameras' | 'models' | 'privacy' | 'buffer' | 'snapshots' | 'retention'
>;

export interface ConfigPlan {
  cameras: {
    add: CameraConfig[];
    remove: string[];
    /** Running before and after, but changed (or its model/privacy changed): stop, then start anew. */
    restart: CameraConfig[];
    keep: string[];
  };
  models: { load: ModelConfig[]; unload: string[]; keep: string[] };
  bufferChanged: boolean;
  /** Edge media retention (applies at once, no restart). */
  retentionChanged: boolean;
  privacyChanged: boolean;
  snapshotsChanged: boolean;
  /** True when nothing at all changes. */
  empty: boolean;
}

/** JSON with sorted keys: equal configs compare equal whatever order their keys were written in. */
export function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, val: unknown) =>
    val && typeof val === 'object' && !Array.isArray(val)
      ? Object.fromEntries(
          Object.entries(val as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)),
        )
      : val,
  );
}

const running = (cams: readonly CameraConfig[]): Map<string, CameraConfig> =>
  new Map(cams.filter((c) => c.enabled).map((c) => [c.id, c]));

export function planConfig(from: Readonly<RuntimeParts>, to: Readonly<RuntimeParts>): ConfigPlan {
  const fromModels = new Map(from.models.map((m) => [m.name, m]));
  const toModels = new Map(to.models.map((m) => [m.name, m]));
  const models: ConfigPlan['models'] = { load: [], unload: [], keep: [] };
  for (const [name, m] of toModels) {
    const old = fromModels.get(name);
    if (old && canonical(old) === canonical(m)) models.keep.push(name);
    else models.load.push(m);
  }
  for (const name of fromModels.keys()) if (!toModels.has(name)) models.unload.push(name);
  const reloaded = new Set(models.load.map((m) => m.name));

  const privacyChanged = canonical(from.privacy) !== canonical(to.privacy);
  const snapshotsChanged = canonical(from.snapshots) !== canonical(to.snapshots);
  const faceModelReloaded = to.privacy.faceModel !== undefined && reloaded.has(to.privacy.faceModel);
  const pipelinesAffected = privacyChanged || snapshotsChanged || faceModelReloaded;

  const a = running(from.cameras);
  const b = running(to.cameras);
  const cameras: ConfigPlan['cameras'] = { add: [], remove: [], restart: [], keep: [] };
  for (const [id, cam] of b) {
    const old = a.get(id);
    if (!old) cameras.add.push(cam);
    else if (
      canonical(old) !== canonical(cam) ||
      (cam.detect && (reloaded.has(cam.detect.model) || pipelinesAffected))
    )
      cameras.restart.push(cam);
    else cameras.keep.push(id);
  }
  for (const id of a.keys()) if (!b.has(id)) cameras.remove.push(id);

  const bufferChanged = canonical(from.buffer) !== canonical(to.buffer);
  const retentionChanged = canonical(from.retention) !== canonical(to.retention);
  return {
    cameras,
    models,
    bufferChanged,
    retentionChanged,
    privacyChanged,
    snapshotsChanged,
    empty:
      cameras.add.length + cameras.remove.length + cameras.restart.length === 0 &&
      models.load.length + models.unload.length === 0 &&
      !bufferChanged &&
      !retentionChanged &&
      !privacyChanged &&
      !snapshotsChanged,
  };
}
