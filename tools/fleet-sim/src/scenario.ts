import { loadavg } from 'node:os';
import type { SimFleet } from './fleet.js';

export interface RolloutView {
  id: string;
  state: string;
  current_wave: number;
  abort_reason: string | null;
  totals: Record<string, number>;
  waves: Array<{
    wave: number;
    label: string;
    devices: number;
    applied: number;
    failed: number;
    pending: number;
  }>;
}

/** One device of a rollout as GET /v1/rollouts/{id}/devices answers it: its status and what it runs now. */
export interface RolloutDeviceView {
  device_id: string;
  wave: number | null;
  status: string;
  reason: string | null;
  issued_version: string | null;
  rollback_version: string | null;
  restored_from_version: string | null;
  restore_source: string | null;
  desired_version: string;
  applied_version: string | null;
  last_known_good_version: string | null;
  runs_last_known_good: boolean;
  config_state: string;
  health: string;
}

/** The cloud REST API as an admin of one tenant. */
export interface ApiClient {
  request(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }>;
}

export function apiClient(baseUrl: string, token: () => Promise<string>): ApiClient {
  return {
    async request(method, path, body) {
      const res = await fetch(`${baseUrl}${path}`, {
        method,
        headers: { authorization: `Bearer ${await token()}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      return { status: res.status, json: text ? (JSON.parse(text) as unknown) : null };
    },
  };
}

export interface RolloutSpecInput {
  canary: number;
  waves: number[];
  gate_window_seconds: number;
  soak_seconds?: number;
  gates?: Record<string, unknown>;
  abort?: Record<string, unknown>;
}

export async function createRollout(
  api: ApiClient,
  attributes: Record<string, string>,
  spec: RolloutSpecInput,
): Promise<RolloutView> {
  const res = await api.request('POST', '/v1/rollouts', {
    target: { scope: 'tenant' },
    body: { attributes },
    spec,
  });
  if (res.status !== 201)
    throw new Error(`creating the rollout failed: ${res.status} ${JSON.stringify(res.json)}`);
  return res.json as RolloutView;
}

export async function getRollout(api: ApiClient, id: string): Promise<RolloutView> {
  const res = await api.request('GET', `/v1/rollouts/${id}`);
  if (res.status !== 200) throw new Error(`GET rollout failed: ${res.status}`);
  return res.json as RolloutView;
}

/** Every device of a rollout (all pages), in rollout order. */
export async function getRolloutDevices(api: ApiClient, id: string): Promise<RolloutDeviceView[]> {
  const out: RolloutDeviceView[] = [];
  for (let after = -1; ;) {
    const res = await api.request('GET', `/v1/rollouts/${id}/devices?limit=500&after=${after}`);
    if (res.status !== 200) throw new Error(`GET rollout devices failed: ${res.status}`);
    const page = res.json as { items: RolloutDeviceView[]; next_after: number | null };
    out.push(...page.items);
    if (page.next_after === null) return out;
    after = page.next_after;
  }
}

/** Polls the rollout until its state is one of `states`; returns its view. */
export async function untilRolloutState(
  api: ApiClient,
  id: string,
  states: readonly string[],
  timeoutMs: number,
): Promise<RolloutView> {
  let view: RolloutView | undefined;
  await until(
    async () => {
      view = await getRollout(api, id);
      return states.includes(view.state);
    },
    timeoutMs,
    200,
  ).catch((err: unknown) => {
    throw new Error(`rollout ${id} is ${view?.state ?? '?'}, not ${states.join('|')}`, { cause: err });
  });
  return view!;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls until `done` holds (checked every `everyMs`); returns the elapsed ms. */
export async function until(
  done: () => boolean | Promise<boolean>,
  timeoutMs: number,
  everyMs = 50,
): Promise<number> {
  const t0 = Date.now();
  while (!(await done())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms`);
    await sleep(everyMs);
  }
  return Date.now() - t0;
}

export interface ScenarioResult {
  devices: number;
  good: {
    rollout: string;
    state: string;
    ms_to_50pct_applied: number;
    ms_to_95pct_applied: number;
    /** Until every device runs it (null: not within the timeout); the 95 % gate may complete the rollout first. */
    ms_to_100pct_applied: number | null;
    ms_to_completed: number;
  };
  bad: {
    rollout: string;
    state: string;
    abort_reason: string | null;
    ms_to_abort: number;
    ms_to_rollback_complete: number;
    devices_took_bad: number;
    devices_rolled_back_and_applied: number;
    devices_still_on_bad: number;
    devices_never_issued_touched: number;
  };
  load: { loadavg_1m: number; loadavg_5m: number; rss_mb: number };
}

/**
 * A good rollout (to every device), then a bad one (its config drops the devices' fps to 20 %) that must trip
 * the fps gate, abort and roll back every device that took it.
 */
export async function runScenario(
  api: ApiClient,
  fleet: SimFleet,
  opts: {
    spec: RolloutSpecInput;
    timeoutMs: number;
    /** Called when each rollout is created (for progress lines). */
    onRollout?: (kind: 'good' | 'bad', view: RolloutView) => void;
  },
): Promise<ScenarioResult> {
  const n = fleet.agents.length;
  // Good rollout
  const t0 = Date.now();
  const good = await createRollout(api, { 'sim.rev': 'good' }, opts.spec);
  opts.onRollout?.('good', good);
  // One watcher times 50 %, 95 % and 100 % of the devices running it (one clock, so they stay in order; the
  // rollout completes at its gate, 95 %, possibly before the last devices apply).
  const tp = Date.now();
  const reached: { p50?: number; p95?: number; p100?: number } = {};
  const all = until(() => {
    const k = fleet.running('sim.rev', 'good').length;
    const t = Date.now() - tp;
    if (reached.p50 === undefined && k >= Math.ceil(n * 0.5)) reached.p50 = t;
    if (reached.p95 === undefined && k >= Math.ceil(n * 0.95)) reached.p95 = t;
    if (k === n) reached.p100 = t;
    return k === n;
  }, opts.timeoutMs).then(
    () => reached.p100 ?? null,
    () => null,
  );
  await until(() => reached.p95 !== undefined, opts.timeoutMs);
  const ms50 = reached.p50!;
  const ms95 = reached.p95!;
  let goodView = good;
  await until(
    async () => {
      goodView = await getRollout(api, good.id);
      return ['completed', 'aborted', 'rolled_back'].includes(goodView.state);
    },
    opts.timeoutMs,
    250,
  );
  const msCompleted = Date.now() - t0;
  // Let the last stragglers apply before the bad one (not for long when it did not complete).
  const ms100 =
    goodView.state === 'completed' ? await all : await Promise.race([all, sleep(30_000).then(() => null)]);

  // Bad rollout
  const goodVersions = new Map(fleet.agents.map((a) => [a.id, a.appliedVersion]));
  const t1 = Date.now();
  const bad = await createRollout(
    api,
    { 'sim.rev': 'bad', 'sim.fps_factor': '0.2' },
    {
      ...opts.spec,
      gates: { ...(opts.spec.gates ?? {}), min_fps_ratio: 0.5 },
    },
  );
  opts.onRollout?.('bad', bad);
  let badView = bad;
  let msAbort = -1;
  await until(
    async () => {
      badView = await getRollout(api, bad.id);
      if (msAbort < 0 && ['aborted', 'rolling_back', 'rolled_back'].includes(badView.state))
        msAbort = Date.now() - t1;
      return ['completed', 'rolled_back'].includes(badView.state);
    },
    opts.timeoutMs,
    100,
  );
  const tookBad = fleet.agents.filter((a) => a.history.some((h) => h.attributes['sim.rev'] === 'bad'));
  // Rolled back: every device that took it runs the good body again, under a newer version.
  await until(
    () =>
      tookBad.every((a) => a.attributes['sim.rev'] === 'good' && a.appliedVersion > goodVersions.get(a.id)!),
    opts.timeoutMs,
  ).catch(() => undefined);
  const msRollback = Date.now() - t1;
  const back = tookBad.filter(
    (a) => a.attributes['sim.rev'] === 'good' && a.appliedVersion > goodVersions.get(a.id)!,
  ).length;
  const untouched = fleet.agents.filter((a) => !tookBad.includes(a));
  const touched = untouched.filter((a) => a.appliedVersion !== goodVersions.get(a.id)).length;
  const [l1, l5] = loadavg();
  return {
    devices: n,
    good: {
      rollout: good.id,
      state: goodView.state,
      ms_to_50pct_applied: ms50,
      ms_to_95pct_applied: ms95,
      ms_to_100pct_applied: ms100,
      ms_to_completed: msCompleted,
    },
    bad: {
      rollout: bad.id,
      state: badView.state,
      abort_reason: badView.abort_reason,
      ms_to_abort: msAbort,
      ms_to_rollback_complete: msRollback,
      devices_took_bad: tookBad.length,
      devices_rolled_back_and_applied: back,
      devices_still_on_bad: fleet.running('sim.rev', 'bad').length,
      devices_never_issued_touched: touched,
    },
    load: {
      loadavg_1m: l1 ?? 0,
      loadavg_5m: l5 ?? 0,
      rss_mb: Math.round(process.memoryUsage().rss / 1e6),
    },
  };
}
