/*
 * An agent-version rollout over the simulated fleet (issue 14 point 4): created with `vigil rollout create
 * --agent-version` (the CLI is handed in, so this module needs no CLI of its own), timed on the devices' side
 * (when each one runs the version, committed) and on the cloud's (when the rollout ends).
 */
import type { SimFleet } from './fleet.js';
import { getRollout, type ApiClient, type RolloutView } from './scenario.js';

export type RunCli = (args: string[]) => Promise<{ code: number; out: string }>;

export interface AgentRolloutOptions {
  version: string;
  channel?: string | undefined;
  /** `vigil rollout create` options after --agent-version/--channel (canary, waves, window, gates...). */
  createArgs: string[];
  timeoutMs: number;
}

export interface AgentRolloutResult {
  rollout: string;
  state: string;
  abort_reason: string | null;
  devices: number;
  /** Devices that run the version (committed), and that rolled it back, at the end. */
  on_version: number;
  rolled_back: number;
  /** From the CLI call to 95 % and 100 % of the fleet running the version (null: not reached). */
  t95_ms: number | null;
  t100_ms: number | null;
  /** From the CLI call to the rollout's end (completed or rolled_back), per the API. */
  ended_ms: number | null;
  totals: RolloutView['totals'];
}

export async function runAgentRollout(
  cli: RunCli,
  api: ApiClient,
  fleet: SimFleet,
  o: AgentRolloutOptions,
): Promise<AgentRolloutResult> {
  const n = fleet.agents.length;
  const t0 = Date.now();
  const created = await cli([
    'rollout',
    'create',
    '--agent-version',
    o.version,
    '--channel',
    o.channel ?? 'stable',
    ...o.createArgs,
    '--json',
  ]);
  if (created.code !== 0) throw new Error(`vigil rollout create failed (${created.code}): ${created.out}`);
  const id = (JSON.parse(created.out) as { id: string }).id;
  let t95: number | null = null;
  let t100: number | null = null;
  let ended: number | null = null;
  let view: RolloutView = await getRollout(api, id);
  const on = (): number =>
    fleet.agents.filter((a) => a.agentVersion === o.version && a.update?.state === 'committed').length;
  while (Date.now() - t0 < o.timeoutMs) {
    const k = on();
    const now = Date.now() - t0;
    if (t95 === null && k >= Math.ceil(0.95 * n)) t95 = now;
    if (t100 === null && k === n) t100 = now;
    view = await getRollout(api, id);
    if (ended === null && (view.state === 'completed' || view.state === 'rolled_back'))
      ended = Date.now() - t0;
    if (ended !== null && (t100 !== null || view.state === 'rolled_back')) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  return {
    rollout: id,
    state: view.state,
    abort_reason: view.abort_reason,
    devices: n,
    on_version: on(),
    rolled_back: fleet.agents.filter(
      (a) => a.update?.target === o.version && a.update.state === 'rolled_back',
    ).length,
    t95_ms: t95,
    t100_ms: t100,
    ended_ms: ended,
    totals: view.totals,
  };
}
