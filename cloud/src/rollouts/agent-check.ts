/*
 * The checks an agent-version rollout must pass before it is created (POST /v1/rollouts with `agent`): the
 * version is a published release of the channel in the cloud's release repository, every target device runs a
 * version that release may upgrade from (its `minVersion`), and every target device has a config to carry the
 * agent section (the one it runs, or its effective document: a remote config replaces the local cameras, so an
 * empty one would stop them). Each refusal is a problem+json 422 that names the devices.
 */
import { sql, type Kysely } from 'kysely';
import { ValidationError, type FieldIssue } from '../api/errors.js';
import type { ConfigIssuer } from '../config-ota/issuer.js';
import type { Releases } from '../releases/routes.js';
import type { Database } from '../storage/tables.js';
import { findReleaseTarget, upgradeRefusal, type AgentTarget } from './agent.js';

/** Devices named in one refusal, at most (the count says how many there were). */
const MAX_NAMED = 20;

export class AgentRolloutRefusedError extends ValidationError {
  constructor(issues: readonly FieldIssue[], message: string) {
    super(issues, message, 'AGENT_ROLLOUT_REFUSED');
  }
}

export interface AgentCheckDeps {
  db: Kysely<Database>;
  releases?: Releases | undefined;
  configs?: Pick<ConfigIssuer, 'knownConfigs' | 'effectiveConfigBody'> | undefined;
}

export async function checkAgentRollout(
  deps: AgentCheckDeps,
  tenantId: string,
  scope: 'tenant' | 'site',
  scopeId: string,
  agent: AgentTarget,
): Promise<void> {
  if (!deps.releases || !deps.configs)
    throw new AgentRolloutRefusedError(
      [{ path: 'agent', message: 'this cloud has no release repository (releases.dir)' }],
      'Agent-version rollouts need the release repository.',
    );
  const found = await findReleaseTarget(deps.releases.repo, agent);
  if (found.name === null)
    throw new AgentRolloutRefusedError(
      [
        {
          path: 'agent.version',
          message:
            `${agent.version} is not a published release of channel ${agent.channel}` +
            (found.available.length > 0
              ? ` (published there: ${found.available.join(', ')})`
              : ' (nothing is published there)'),
        },
      ],
      `Agent ${agent.version} is not published in channel ${agent.channel}: publish it first (vigil release publish).`,
    );
  const site = scope === 'site' ? sql`and site_id = ${scopeId}` : sql``;
  const devices = (
    await sql<{ id: string; agent_version: string | null }>`
      select id, agent_version from devices
      where tenant_id = ${tenantId} and revoked_at is null and enrolled_at is not null ${site}
      order by id`.execute(deps.db)
  ).rows;
  const tooOld: FieldIssue[] = [];
  for (const d of devices) {
    const why = upgradeRefusal(d.agent_version, found.custom.minVersion);
    if (why !== null) tooOld.push({ path: `devices.${d.id}`, message: why });
  }
  if (tooOld.length > 0)
    throw new AgentRolloutRefusedError(
      named(tooOld),
      `${tooOld.length} of ${devices.length} target devices cannot upgrade to ${agent.version} directly ` +
        `(it upgrades from ${found.custom.minVersion} or later): upgrade them to an intermediate release first, ` +
        'or target a site without them.',
    );
  const ids = devices.map((d) => d.id);
  const { applied } = await deps.configs.knownConfigs(tenantId, ids);
  const bare: FieldIssue[] = [];
  for (const id of ids)
    if (!applied.has(id) && (await deps.configs.effectiveConfigBody(tenantId, id)) === null)
      bare.push({
        path: `devices.${id}`,
        message:
          'it runs only its local config and has no config document: nothing to carry the agent version',
      });
  if (bare.length > 0)
    throw new AgentRolloutRefusedError(
      named(bare),
      `${bare.length} target devices have no remote config to carry the agent version: give their tenant, ` +
        'site or device a config document first.',
    );
}

function named(issues: FieldIssue[]): FieldIssue[] {
  if (issues.length <= MAX_NAMED) return issues;
  return [
    ...issues.slice(0, MAX_NAMED),
    { path: 'devices', message: `and ${issues.length - MAX_NAMED} more devices` },
  ];
}
