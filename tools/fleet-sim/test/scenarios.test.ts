// Rollout scenarios with fleet-sim (issue #13): devices that fail to apply, health that turns bad after a
// delay, an event rate that collapses, a device offline mid-wave, and two rollouts in a row where the first
// aborted. The real cloud and 10 simulated agents that behave as the edge agent does; each scenario checks the
// final per-device state through the API (GET /v1/rollouts/{id}/devices) and in PostgreSQL.
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import '@vigil/testkit';
import {
  apiClient,
  createRollout,
  enrollDevices,
  getRollout,
  getRolloutDevices,
  SimFleet,
  startSimStack,
  until,
  untilRolloutState,
  type ApiClient,
  type RolloutSpecInput,
  type SimAgent,
  type SimStack,
} from '../src/index.js';

const N = 10;
const BASE: RolloutSpecInput = {
  canary: 2,
  waves: [50, 100],
  gate_window_seconds: 8,
  soak_seconds: 0,
  gates: { applied_ratio: 1 },
  abort: { failure_ratio: 0.2, min_reported: 2 },
};

interface DeviceRow {
  device_id: string;
  desired: string;
  applied: string | null;
  reported: string | null;
  state: string;
  good: string | null;
  applied_rev: string | null;
  good_rev: string | null;
}

describe('rollout scenarios with fleet-sim', () => {
  let stack: SimStack;
  let fleet: SimFleet;
  let admin: ApiClient;
  let logs = '';

  beforeAll(async () => {
    stack = await startSimStack({
      pgAdminUrl: inject('pgAdminUrl'),
      logger: pino({ level: 'info' }, { write: (l: string) => void (logs = (logs + l).slice(-200_000)) }),
    });
    const installer = apiClient(stack.apiUrl, () => stack.token('acme', ['installer']));
    const devices = await enrollDevices({
      grpcAddress: stack.grpcAddress,
      caPem: stack.caPem,
      deviceIds: Array.from({ length: N }, (_, i) => `sim-${String(i).padStart(4, '0')}`),
      token: async () => {
        const res = await installer.request('POST', '/v1/enrollment-tokens', {
          site_id: 'hq',
          ttl_seconds: 600,
        });
        return (res.json as { token: string }).token;
      },
    });
    fleet = new SimFleet(devices, stack.caPem, {
      heartbeatMs: 500,
      pollMs: 1000,
      applyMinMs: 50,
      applyMaxMs: 200,
    });
    await fleet.connect([stack.natsUrl]);
    admin = apiClient(stack.apiUrl, () => stack.token('acme', ['admin']));
    // A known good baseline: every device applies `base` and it completes.
    const base = await createRollout(admin, { 'sim.rev': 'base' }, BASE);
    await untilRolloutState(admin, base.id, ['completed'], 30_000);
    await until(async () => (await pgDevices()).every((d) => d.good_rev === 'base'), 20_000, 200);
  }, 90_000);
  afterAll(async () => {
    await fleet?.close();
    await stack?.stop();
  });

  /** Each device's desired, reported, applied and last known good version, and the revs of their bodies. */
  async function pgDevices(): Promise<DeviceRow[]> {
    const rows = await stack.cloud.db
      .selectFrom('device_config_state as s')
      .leftJoin('device_configs as a', (j) =>
        j
          .onRef('a.tenant_id', '=', 's.tenant_id')
          .onRef('a.device_id', '=', 's.device_id')
          .onRef('a.version', '=', 's.applied_version'),
      )
      .leftJoin('device_configs as g', (j) =>
        j
          .onRef('g.tenant_id', '=', 's.tenant_id')
          .onRef('g.device_id', '=', 's.device_id')
          .onRef('g.version', '=', 's.good_version'),
      )
      .select([
        's.device_id',
        's.desired_version',
        's.applied_version',
        's.reported_version',
        's.state',
        's.good_version',
        'a.body as applied_body',
        'g.body as good_body',
      ])
      .where('s.tenant_id', '=', 'acme')
      .orderBy('s.device_id')
      .execute();
    const rev = (b: Record<string, unknown> | null): string | null =>
      ((b?.attributes as Record<string, string> | undefined) ?? {})['sim.rev'] ?? null;
    return rows.map((r) => ({
      device_id: r.device_id,
      desired: String(r.desired_version),
      applied: r.applied_version === null ? null : String(r.applied_version),
      reported: r.reported_version === null ? null : String(r.reported_version),
      state: r.state,
      good: r.good_version === null ? null : String(r.good_version),
      applied_rev: rev(r.applied_body),
      good_rev: rev(r.good_body),
    }));
  }

  const agent = (id: string): SimAgent => fleet.byId(id)!;

  /** After a rollback: every device the rollout issued to runs its last known good body (API and PostgreSQL). */
  async function expectRestored(id: string, before: DeviceRow[]): Promise<void> {
    const api = await getRolloutDevices(admin, id);
    const issued = api.filter((d) => d.wave !== null);
    // wait for the restored configs' healthy reports (the API reads them live)
    await until(
      async () =>
        (await getRolloutDevices(admin, id))
          .filter((d) => d.wave !== null)
          .every((d) => d.status === 'rolled_back' && d.runs_last_known_good),
      20_000,
      200,
    );
    const now = await getRolloutDevices(admin, id);
    for (const d of now.filter((x) => x.wave !== null)) {
      expect(d, d.device_id).toMatchObject({ status: 'rolled_back', config_state: 'applied', health: 'ok' });
      expect(d.applied_version, d.device_id).toBe(d.rollback_version);
      expect(d.desired_version, d.device_id).toBe(d.rollback_version);
    }
    const pgNow = new Map((await pgDevices()).map((d) => [d.device_id, d]));
    for (const b of before) {
      const d = pgNow.get(b.device_id)!;
      if (issued.some((x) => x.device_id === b.device_id)) {
        // the body it runs is its last known good from before the rollout
        expect(d.applied_rev, b.device_id).toBe(b.good_rev);
        expect(agent(b.device_id).attributes['sim.rev'], b.device_id).toBe(b.good_rev);
      } else {
        // never issued: untouched
        expect(d.applied, b.device_id).toBe(b.applied);
        expect(d.desired, b.device_id).toBe(b.desired);
      }
    }
  }

  const onFailure = (err: unknown): never => {
    console.error(logs.slice(-20_000));
    throw err;
  };

  it('some devices fail to apply: the rollout completes and reports them failed, on their known good config', async () => {
    const failing = [fleet.agents[1]!.id, fleet.agents[6]!.id];
    const r = await createRollout(
      admin,
      { 'sim.rev': 's1', 'sim.fail': 'refuse', 'sim.only': failing.join(',') },
      {
        ...BASE,
        canary: 4,
        waves: [100],
        gates: { applied_ratio: 0.5 },
        abort: { failure_ratio: 1, min_reported: 2 },
      },
    );
    await untilRolloutState(admin, r.id, ['completed'], 30_000).catch(onFailure);
    // Several polls later the failing devices still report the failed version (as the agent does).
    const seen = new Map(failing.map((id) => [id, agent(id).statuses.length]));
    await until(() => failing.every((id) => agent(id).statuses.length >= seen.get(id)! + 3), 15_000);
    const pg = new Map((await pgDevices()).map((d) => [d.device_id, d]));
    const api = new Map((await getRolloutDevices(admin, r.id)).map((d) => [d.device_id, d]));
    for (const id of failing) {
      const d = api.get(id)!;
      expect(pg.get(id)).toMatchObject({ state: 'failed', reported: d.issued_version, applied_rev: 'base' });
      expect(d).toMatchObject({
        status: 'failed',
        // The device's own reason follows the state (what fleet-sim's refusal says).
        reason: expect.stringMatching(/^failed: invalid config/) as unknown,
        config_state: 'failed',
        desired_version: d.issued_version,
        runs_last_known_good: true,
      });
      expect(d.applied_version).toBe(d.last_known_good_version);
    }
    // The others run it, and it became their last known good (the rollout completed).
    await until(
      async () =>
        (await getRolloutDevices(admin, r.id))
          .filter((d) => !failing.includes(d.device_id))
          .every((d) => d.last_known_good_version === d.issued_version),
      15_000,
      200,
    );
    for (const d of (await getRolloutDevices(admin, r.id)).filter((x) => !failing.includes(x.device_id)))
      expect(d, d.device_id).toMatchObject({
        status: 'applied',
        config_state: 'applied',
        runs_last_known_good: true,
      });
    expect((await pgDevices()).filter((d) => d.applied_rev === 's1')).toHaveLength(N - failing.length);
  }, 60_000);

  it('health turns bad after a delay: the canary fails during its soak and is rolled back', async () => {
    const before = await pgDevices();
    const r = await createRollout(
      admin,
      { 'sim.rev': 's2', 'sim.health_after_ms': '1500' },
      { ...BASE, soak_seconds: 10, gate_window_seconds: 15 },
    );
    const done = await untilRolloutState(admin, r.id, ['rolled_back', 'completed'], 40_000).catch(onFailure);
    expect(done.state).toBe('rolled_back');
    expect(done.current_wave).toBe(0);
    const devices = await getRolloutDevices(admin, r.id);
    expect(devices.filter((d) => d.wave !== null)).toHaveLength(2);
    const reasons = await stack.cloud.db
      .selectFrom('rollout_devices')
      .select('reason')
      .where('rollout_id', '=', r.id)
      .where('wave', '=', 0)
      .execute();
    expect(reasons.map((x) => x.reason)).toContain('health_failing');
    await expectRestored(r.id, before);
  }, 60_000);

  it('the event rate collapses: with soak 0 the rollout never passes its canary', async () => {
    const before = await pgDevices();
    const r = await createRollout(
      admin,
      { 'sim.rev': 's3', 'sim.events_factor': '0' },
      { ...BASE, gates: { applied_ratio: 1, event_rate: { min: 1 } } },
    );
    const done = await untilRolloutState(admin, r.id, ['rolled_back', 'completed'], 30_000).catch(onFailure);
    expect(done.state).toBe('rolled_back');
    expect(done.current_wave).toBe(0);
    const devices = await getRolloutDevices(admin, r.id);
    expect(devices.filter((d) => d.wave !== null)).toHaveLength(2);
    expect(devices.filter((d) => d.reason === 'event_rate_low').length).toBeGreaterThanOrEqual(2);
    // Only the canary ever ran it.
    expect(fleet.agents.filter((a) => a.history.some((h) => h.attributes['sim.rev'] === 's3'))).toHaveLength(
      2,
    );
    await expectRestored(r.id, before);
    // Heartbeats keep their period (500 ms) through every apply so far: one sent right after an apply would
    // leave a gap of at most half the period on one side of it. (A repeating timer is re-armed from the event
    // loop's time, which a busy loop holds back, so a gap may be somewhat short of the period, never 250 ms.)
    for (const a of fleet.agents) {
      const gaps = a.heartbeats.slice(1).map((t, i) => t - a.heartbeats[i]!);
      expect(Math.min(...gaps), a.id).toBeGreaterThanOrEqual(300);
    }
  }, 60_000);

  it('a device goes offline mid-wave: the API says it still runs the bad config until it is back', async () => {
    const before = await pgDevices();
    let gone: SimAgent | undefined;
    // The first device to apply it loses its uplink at that moment (before any rollback can reach it).
    for (const a of fleet.agents) {
      const prev = a.onApplied;
      a.onApplied = (agent, version, state) => {
        prev?.(agent, version, state);
        if (!gone && agent.attributes['sim.rev'] === 's4') {
          gone = agent;
          void agent.offline();
        }
      };
    }
    const r = await createRollout(
      admin,
      { 'sim.rev': 's4', 'sim.fps_factor': '0.2' },
      { ...BASE, canary: 3, gates: { applied_ratio: 1, min_fps_ratio: 0.5 } },
    );
    const done = await untilRolloutState(admin, r.id, ['rolled_back', 'completed'], 40_000).catch(onFailure);
    expect(done.state).toBe('rolled_back');
    expect(gone).toBeDefined();
    const off = (await getRolloutDevices(admin, r.id)).find((d) => d.device_id === gone!.id)!;
    expect(off).toMatchObject({ status: 'rolling_back', runs_last_known_good: false });
    expect(off.applied_version).toBe(off.issued_version);
    expect(off.desired_version).toBe(off.rollback_version);
    expect((await getRollout(admin, r.id)).totals.rolling_back).toBe(1);
    await gone!.online();
    await expectRestored(r.id, before);
    expect((await getRollout(admin, r.id)).totals.rolling_back).toBe(0);
  }, 60_000);

  it('two rollouts in a row, the first aborted with FAILED devices: every device ends on its last known good', async () => {
    const before = await pgDevices();
    const refusing = [fleet.agents[2]!.id, fleet.agents[5]!.id, fleet.agents[8]!.id];
    const a = await createRollout(
      admin,
      { 'sim.rev': 'a5', 'sim.fail': 'refuse', 'sim.only': refusing.join(',') },
      {
        ...BASE,
        canary: N,
        waves: [100],
        gates: { applied_ratio: 0.9 },
        abort: { failure_ratio: 0.2, min_reported: 5 },
      },
    );
    const aDone = await untilRolloutState(admin, a.id, ['rolled_back', 'completed'], 30_000).catch(onFailure);
    expect(aDone.state).toBe('rolled_back');
    await expectRestored(a.id, before);
    // The refusing devices were rolled back too: their desired version is no longer the failed one.
    for (const d of (await getRolloutDevices(admin, a.id)).filter((x) => refusing.includes(x.device_id)))
      expect(d.desired_version).toBe(d.rollback_version);

    const mid = await pgDevices();
    const b = await createRollout(
      admin,
      { 'sim.rev': 'b5' },
      { ...BASE, canary: N, waves: [100], soak_seconds: 3600 },
    );
    await until(async () => (await getRollout(admin, b.id)).totals.applied === N, 30_000, 200).catch(
      onFailure,
    );
    expect((await admin.request('POST', `/v1/rollouts/${b.id}/abort`, { reason: 'scenario' })).status).toBe(
      200,
    );
    await untilRolloutState(admin, b.id, ['rolled_back'], 30_000).catch(onFailure);
    await expectRestored(b.id, mid);
    // ...which is what they ran before rollout A.
    const after = new Map((await pgDevices()).map((d) => [d.device_id, d]));
    for (const d of before) expect(after.get(d.device_id)!.applied_rev, d.device_id).toBe(d.good_rev);
  }, 90_000);
});
