/*
 * Agent-version rollouts (issue 14 point 4). The desired agent version travels in the signed device config
 * (`agent: { version, channel, rolloutId }`, DeviceConfig.agent), so delivery, signatures, acks, waves, gates
 * and rollbacks are the config rollout's own; only two things differ, and they live here:
 *
 * - What "took" means. Applying the config only makes the agent ask its updater (vigil-updater) for the
 *   version. A device took the rollout when its heartbeat says the target version runs and the updater
 *   committed it (or is idle on it: installed at that version, nothing pending). It failed when the updater
 *   reports rolled_back/failed for the target (the device's reason is kept), after the wave was issued.
 * - What a rollback restores: the config the device ran (its last known good, as for configs) with `agent`
 *   naming the version the device ran when its wave was issued (its last known good agent version).
 *
 * Pure functions, except `findReleaseTarget` (reads the release repository's newest targets metadata).
 */
import { compareSemver, SEMVER_RE } from '@vigil/proto';
import type { ConfigBody } from '../config-ota/body.js';
import { targetCustomSchema, type TargetCustom } from '../releases/layout.js';
import type { FsReleaseRepository } from '../releases/repository.js';
import type { ReportedState, RestoreState } from './planner.js';

export interface AgentTarget {
  version: string;
  channel: string;
}

/** A device's agent as its last heartbeat told (devices.agent_version and the update_* columns). */
export interface AgentSignal {
  agent_version: string | null;
  update_state: string | null;
  update_current: string | null;
  update_target: string | null;
  update_reason: string | null;
  update_at: Date | null;
}

/** Updater states that end an attempt at `target` without it running. */
const FAILED_STATES = new Set(['rolled_back', 'failed']);

/**
 * The published release of `version` in `channel`, from the newest targets metadata the cloud serves; null
 * when there is none (never published, another channel, or no repository yet).
 */
export async function findReleaseTarget(
  repo: FsReleaseRepository,
  target: AgentTarget,
): Promise<{ name: string; custom: TargetCustom } | { name: null; available: string[] }> {
  const n = await repo.latestVersion('targets');
  const bytes = n > 0 ? await repo.readMetadata(`${n}.targets.json`) : null;
  const available: string[] = [];
  if (!bytes) return { name: null, available };
  // The cloud verified this file when it was published (releases/service.ts putTargets): only read here.
  const doc = JSON.parse(bytes.toString('utf8')) as {
    signed?: { targets?: Record<string, { custom?: unknown }> };
  };
  for (const [name, t] of Object.entries(doc.signed?.targets ?? {})) {
    const custom = targetCustomSchema.safeParse(t.custom);
    if (!custom.success || custom.data.channel !== target.channel) continue;
    if (custom.data.version === target.version) return { name, custom: custom.data };
    available.push(custom.data.version);
  }
  return { name: null, available: available.sort(compareSemver).slice(-10) };
}

/**
 * Why a device cannot be upgraded to a release whose minimum version to upgrade from is `minVersion`, or null
 * when it can. A device whose version is unknown (no heartbeat yet) or not a semantic version is refused: the
 * minimum cannot be checked.
 */
export function upgradeRefusal(agentVersion: string | null, minVersion: string): string | null {
  if (agentVersion === null || agentVersion === '')
    return 'its agent version is unknown (no heartbeat yet): the minimum version to upgrade from cannot be checked';
  if (!SEMVER_RE.test(agentVersion))
    return `its agent version "${agentVersion.slice(0, 64)}" is not a semantic version`;
  if (compareSemver(agentVersion, minVersion) < 0)
    return `it runs ${agentVersion}, older than ${minVersion}, the minimum version this release upgrades from`;
  return null;
}

/** The config body that asks a device for `version`: the body it runs, with the agent section set. */
export function withAgent(base: ConfigBody, target: AgentTarget, rolloutId: string): ConfigBody {
  return { ...base, agent: { version: target.version, channel: target.channel, rolloutId } };
}

/** The device runs `version` and its updater has nothing pending for another one. */
export function runsVersion(s: AgentSignal | undefined, version: string): boolean {
  if (!s || s.agent_version !== version) return false;
  if (s.update_state === 'committed') return s.update_current === null || s.update_current === version;
  // Installed at that version (no update ever) or idle after one: it runs it and nothing is pending.
  return s.update_state === 'idle' || s.update_state === null;
}

/**
 * The updater reported giving up on `version`, in a status written at or after `since` (a status from an
 * earlier attempt does not count against this rollout).
 */
export function gaveUpOn(s: AgentSignal | undefined, version: string, since: Date | null): boolean {
  if (!s || s.update_target !== version || !FAILED_STATES.has(s.update_state ?? '')) return false;
  return since === null || (s.update_at !== null && s.update_at.getTime() >= since.getTime());
}

/** What a device reported about the rollout's agent version, and the device's reason when it failed. */
export function agentState(
  s: AgentSignal | undefined,
  target: string,
  issuedAt: Date | null,
): { state: ReportedState; detail?: string | undefined } {
  if (runsVersion(s, target)) return { state: 'applied' };
  if (gaveUpOn(s, target, issuedAt))
    return {
      state: s!.update_state === 'failed' ? 'failed' : 'rolled_back',
      detail: s!.update_reason ?? undefined,
    };
  return { state: 'pending' };
}

/**
 * Where a device is in an agent rollout's rollback: the config part says `restored` once the device applied the
 * restore config; the device is restored only when it also runs the agent version it ran before.
 */
export function agentRestore(
  configRestore: RestoreState,
  s: AgentSignal | undefined,
  previous: string | null,
  rolledBackAt: Date | null,
): RestoreState {
  if (configRestore !== 'restored' || previous === null) return configRestore;
  if (runsVersion(s, previous) || s?.agent_version === previous) return 'restored';
  if (gaveUpOn(s, previous, rolledBackAt)) return 'restore_failed';
  return 'issued';
}
