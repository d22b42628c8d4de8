// Staged rollouts end to end: the real cloud (gRPC enrollment, NATS in JWT mode with mutual TLS, PostgreSQL,
// the rollout executor) and 30 simulated agents with real enrolled credentials.
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import '@vigil/testkit';
import {
  apiClient,
  createRollout,
  enrollDevices,
  getRollout,
  runScenario,
  SimFleet,
  startSimStack,
  until,
  type ApiClient,
  type SimStack,
} from '../src/index.js';

const N = 30;
const SPEC = {
  canary: 3,
  waves: [20, 100],
  gate_window_seconds: 20,
  soak_seconds: 2,
  gates: { applied_ratio: 0.9 },
  abort: { failure_ratio: 0.2, min_reported: 3 },
};

describe('staged rollouts with fleet-sim', () => {
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
    fleet = new SimFleet(devices, stack.caPem, { heartbeatMs: 1000, pollMs: 5000 });
    await fleet.connect([stack.natsUrl]);
    admin = apiClient(stack.apiUrl, () => stack.token('acme', ['admin']));
  }, 180_000); // 30 enrollments and connections: slow on a loaded 2-core machine
  afterAll(async () => {
    await fleet?.close();
    await stack?.stop();
  });

  it('a good rollout completes; a bad one aborts after the canary and rolls back the devices it was issued to', async () => {
    try {
      const r = await runScenario(admin, fleet, { spec: SPEC, timeoutMs: 40_000 });
      expect(r.good.state).toBe('completed');
      expect(fleet.running('sim.rev', 'good')).toHaveLength(N);
      expect(r.bad.state).toBe('rolled_back');
      expect(r.bad.abort_reason).toMatch(/failure ratio|gate failed/);
      // The canary (3) and at most the first wave (20 % of 30 = 6) took it, never the whole fleet.
      expect(r.bad.devices_took_bad).toBeGreaterThanOrEqual(3);
      expect(r.bad.devices_took_bad).toBeLessThanOrEqual(6);
      expect(r.bad.devices_rolled_back_and_applied).toBe(r.bad.devices_took_bad);
      expect(r.bad.devices_still_on_bad).toBe(0);
      expect(r.bad.devices_never_issued_touched).toBe(0);
      // Every device it was issued to was rolled back (one issued just before the abort may not have taken
      // it yet), and the view says so once they run their restored config.
      await until(async () => {
        const v = await getRollout(admin, r.bad.rollout);
        return v.totals.rolled_back === N - (v.totals.not_issued ?? 0);
      }, 20_000);
      const view = await getRollout(admin, r.bad.rollout);
      expect(view.totals.rolled_back).toBeGreaterThanOrEqual(r.bad.devices_took_bad);
      expect(view.totals.not_issued).toBeLessThanOrEqual(N - r.bad.devices_took_bad);
    } catch (err) {
      console.error(logs.slice(-20_000));
      throw err;
    }
  }, 80_000);

  it('pause, resume and manual abort through the API', async () => {
    const r = await createRollout(admin, { 'sim.rev': 'manual' }, { ...SPEC, soak_seconds: 600 });
    await until(async () => (await getRollout(admin, r.id)).totals.applied === 3, 20_000, 200);
    const paused = await admin.request('POST', `/v1/rollouts/${r.id}/pause`, {});
    expect(paused.status).toBe(200);
    expect((paused.json as { state: string }).state).toBe('paused');
    expect((await admin.request('POST', `/v1/rollouts/${r.id}/pause`, {})).status).toBe(409);
    expect((await admin.request('POST', `/v1/rollouts/${r.id}/resume`, {})).status).toBe(200);
    // one active rollout per tenant
    expect(
      (await admin.request('POST', '/v1/rollouts', { target: { scope: 'tenant' }, body: { attributes: {} } }))
        .status,
    ).toBe(409);
    const aborted = await admin.request('POST', `/v1/rollouts/${r.id}/abort`, { reason: 'changed my mind' });
    expect(aborted.status).toBe(200);
    expect(aborted.json).toMatchObject({
      state: 'aborted',
      abort_reason: expect.stringMatching(/changed my mind/) as string,
    });
    await until(async () => (await getRollout(admin, r.id)).state === 'rolled_back', 20_000, 200);
    await until(() => fleet.running('sim.rev', 'manual').length === 0, 20_000);
    expect(fleet.running('sim.rev', 'good')).toHaveLength(N);
    expect((await admin.request('POST', `/v1/rollouts/${r.id}/resume`, {})).status).toBe(409);
  }, 60_000);

  it('a config that triples inference latency trips the inference gate after the canary and rolls back', async () => {
    const before = new Map(fleet.agents.map((a) => [a.id, a.appliedVersion]));
    const r = await createRollout(
      admin,
      { 'sim.rev': 'slow', 'sim.inference_factor': '3' },
      { ...SPEC, gates: { ...SPEC.gates, max_inference_ratio: 2 } },
    );
    let view = r;
    await until(
      async () => {
        view = await getRollout(admin, r.id);
        return ['completed', 'rolled_back'].includes(view.state);
      },
      30_000,
      200,
    );
    expect(view.state).toBe('rolled_back');
    expect(view.abort_reason).toMatch(/failure ratio/);
    const took = fleet.agents.filter((a) => a.history.some((h) => h.attributes['sim.rev'] === 'slow'));
    expect(took.length).toBeGreaterThanOrEqual(3);
    expect(took.length).toBeLessThanOrEqual(6);
    await until(() => fleet.running('sim.rev', 'slow').length === 0, 20_000);
    expect(fleet.running('sim.rev', 'good')).toHaveLength(N);
    for (const a of took) expect(a.appliedVersion).toBeGreaterThan(before.get(a.id)!);
    const reasons = await stack.cloud.db
      .selectFrom('rollout_devices')
      .select('reason')
      .where('rollout_id', '=', r.id)
      .where('reason', 'is not', null)
      .execute();
    expect(reasons.map((x) => x.reason)).toContain('inference_latency_high');
  }, 60_000);

  it('validates requests, keeps tenants apart and authorizes by role', async () => {
    const list = await admin.request('GET', '/v1/rollouts');
    expect(list.status).toBe(200);
    const ids = (list.json as { items: Array<{ id: string }> }).items.map((i) => i.id);
    expect(ids.length).toBeGreaterThanOrEqual(1);
    const id = ids[0]!;
    const other = apiClient(stack.apiUrl, () => stack.token('globex', ['admin']));
    expect((await other.request('GET', `/v1/rollouts/${id}`)).status).toBe(404);
    expect((await other.request('POST', `/v1/rollouts/${id}/abort`, {})).status).toBe(404);
    expect((await other.request('GET', '/v1/rollouts')).json).toEqual({ items: [] });
    // globex has no device: nothing to roll out to
    expect(
      (await other.request('POST', '/v1/rollouts', { target: { scope: 'tenant' }, body: { attributes: {} } }))
        .status,
    ).toBe(400);
    const viewer = apiClient(stack.apiUrl, () => stack.token('acme', ['viewer']));
    expect((await viewer.request('GET', `/v1/rollouts/${id}`)).status).toBe(200);
    expect((await viewer.request('POST', `/v1/rollouts/${id}/pause`, {})).status).toBe(403);
    const bad = async (body: unknown): Promise<number> =>
      (await admin.request('POST', '/v1/rollouts', body)).status;
    expect(await bad({ target: { scope: 'tenant' } })).toBe(400); // neither body nor effective document
    expect(await bad({ target: { scope: 'tenant' }, body: {}, use_effective_document: true })).toBe(400);
    expect(await bad({ target: { scope: 'site' }, body: {} })).toBe(400); // a site needs its id
    expect(await bad({ target: { scope: 'tenant' }, body: {}, spec: { waves: [50, 20, 100] } })).toBe(400);
    expect(await bad({ target: { scope: 'tenant' }, body: {}, spec: { waves: [10, 50] } })).toBe(400);
    expect(await bad({ target: { scope: 'tenant' }, body: { nope: 1 } })).toBe(400);
    expect((await admin.request('GET', '/v1/rollouts/not-a-uuid')).status).toBe(400);
    expect((await admin.request('GET', '/v1/rollouts/0190f5c2-8a3e-7b1c-9d2e-4f5a6b7c8d9e')).status).toBe(
      404,
    );
  });
});
