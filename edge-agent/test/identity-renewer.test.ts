import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  DEFAULT_RENEW_POLICY,
  IdentityError,
  IdentityRenewer,
  IdentityStore,
  renewalDueAt,
  retryPlan,
  type DeviceIdentity,
  type IdentityClient,
  type RenewPolicy,
} from '../src/identity/index.js';
import { issueIdentity, tempDir } from './helpers/identity-fixtures.js';

const DAY = 86_400_000;
const T0 = new Date('2031-03-01T00:00:00Z');
const at = (ms: number) => new Date(T0.getTime() + ms);

describe('renewal schedule (pure)', () => {
  it('is due at notBefore + fraction x lifetime', () => {
    expect(renewalDueAt(T0, at(30 * DAY), 2 / 3)).toEqual(at(20 * DAY));
    expect(renewalDueAt(T0, at(30 * DAY), 0.5)).toEqual(at(15 * DAY));
    expect(renewalDueAt(T0, at(90 * DAY), 0.66).getTime()).toBe(T0.getTime() + 0.66 * 90 * DAY);
  });

  const policy: RenewPolicy = { ...DEFAULT_RENEW_POLICY, initialMs: 1_000, maxMs: 60_000, jitter: 0.5 };
  const notAfter = at(10 * DAY);
  const delayOf = (failures: number, retryable = true, now = T0, random = () => 1) => {
    const plan = retryPlan(now, notAfter, failures, retryable, policy, random);
    if (!('at' in plan)) throw new Error(`gave up: ${plan.giveUp}`);
    return plan.at.getTime() - now.getTime();
  };

  it('backs off exponentially with jitter, capped', () => {
    expect([1, 2, 3, 4].map((f) => delayOf(f))).toEqual([1_000, 2_000, 4_000, 8_000]);
    expect(delayOf(20)).toBe(60_000);
    // Jitter takes up to half of the delay away ("equal jitter"), never adds.
    expect(delayOf(3, true, T0, () => 0)).toBe(2_000);
  });

  it('waits the maximum after an error only a person can fix', () => {
    expect(delayOf(1, false)).toBe(60_000);
  });

  it('uses the last chances before expiry and gives up once the certificate expired', () => {
    // 50 s left: half the remaining time instead of the capped 60 s, but never sooner than initialMs.
    expect(delayOf(20, true, new Date(notAfter.getTime() - 50_000))).toBe(25_000);
    expect(delayOf(20, true, new Date(notAfter.getTime() - 1_500))).toBe(1_000);
    expect(retryPlan(new Date(notAfter.getTime() - 800), notAfter, 3, true, policy)).toEqual({
      giveUp: 'expired',
    });
    expect(retryPlan(notAfter, notAfter, 1, true, policy)).toEqual({ giveUp: 'expired' });
  });

  it('bounds the attempts per certificate', () => {
    expect(retryPlan(T0, notAfter, policy.maxAttempts, true, policy)).toEqual({ giveUp: 'attempts' });
    expect('at' in retryPlan(T0, notAfter, policy.maxAttempts - 1, true, policy)).toBe(true);
  });
});

describe('IdentityRenewer', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: IdentityStore;
  let registry: Registry;
  const logger = pino({ level: 'silent' });

  beforeEach(() => {
    vi.useFakeTimers({ now: Date.now(), toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    tmp = tempDir('identity-renewer');
    store = new IdentityStore(join(tmp.dir, 'identity'));
    registry = new Registry();
  });
  afterEach(() => {
    vi.useRealTimers();
    tmp.cleanup();
  });

  /** An identity issued `ageDays` ago, valid 30 days: due for renewal after 20 days. */
  function stored(ageDays: number): DeviceIdentity {
    const issued = issueIdentity({ now: new Date(Date.now() - ageDays * DAY) });
    return store.save(issued.info, issued.material);
  }

  /** A cloud that issues a fresh 30-day identity for the renewing device, after `failures` errors. */
  function fakeCloud(failures: IdentityError[] = []): IdentityClient & { calls: number } {
    const cloud = {
      calls: 0,
      renew: (identity: DeviceIdentity) => {
        cloud.calls++;
        const err = failures.shift();
        if (err) return Promise.reject(err);
        const issued = issueIdentity();
        return Promise.resolve({
          ...issued,
          info: { ...issued.info, enrolledAt: identity.enrolledAt, renewedAt: new Date() },
        });
      },
    };
    return cloud;
  }

  const metric = async (name: string) =>
    (await registry.getSingleMetricAsString(name)).split('\n').slice(2).join('\n');

  it('renews when due, retries a transient failure, stores the result and reports it', async () => {
    const identity = stored(25); // overdue by 5 days
    const cloud = fakeCloud([new IdentityError('CLOUD_UNAVAILABLE', 'down')]);
    const renewed: DeviceIdentity[] = [];
    const renewer = new IdentityRenewer({
      store,
      identity,
      registry,
      logger,
      client: cloud,
      random: () => 1,
      onRenewed: (id) => void renewed.push(id),
    });
    renewer.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(cloud.calls).toBe(1);
    expect(renewer.status()).toMatchObject({ state: 'scheduled', failures: 1 });
    expect(renewer.status().nextAt!.getTime() - Date.now()).toBe(DEFAULT_RENEW_POLICY.initialMs);
    expect(await metric('vigil_agent_identity_renewals_total')).toBe(
      'vigil_agent_identity_renewals_total{result="failure"} 1',
    );

    await vi.advanceTimersByTimeAsync(DEFAULT_RENEW_POLICY.initialMs);
    expect(cloud.calls).toBe(2);
    expect(renewed).toHaveLength(1);
    const current = store.load()!;
    expect(renewed[0]!.material.certPem).toBe(current.material.certPem);
    expect(current.material.certPem).not.toBe(identity.material.certPem);
    expect(renewer.identity.notAfter).toEqual(current.notAfter);
    // Next renewal: 2/3 into the new certificate's lifetime, i.e. about 20 days from now.
    const next = renewer.status().nextAt!.getTime() - Date.now();
    expect(next / DAY).toBeGreaterThan(19.9);
    expect(next / DAY).toBeLessThan(20.1);
    expect(await metric('vigil_agent_identity_renewals_total')).toContain('{result="success"} 1');
    const expiry = Number((await metric('vigil_agent_identity_cert_expiry_seconds')).split(' ')[1]);
    expect(expiry / 86_400).toBeCloseTo(30, 1);
    await renewer.stop();
  });

  it('sleeps until the due time in slices (no setTimeout overflow) and then renews', async () => {
    const identity = stored(0); // due in ~20 days: longer than setTimeout can wait in one go
    const cloud = fakeCloud();
    const renewer = new IdentityRenewer({ store, identity, registry, logger, client: cloud });
    renewer.start();
    await vi.advanceTimersByTimeAsync(19 * DAY);
    expect(cloud.calls).toBe(0);
    await vi.advanceTimersByTimeAsync(1.1 * DAY);
    expect(cloud.calls).toBe(1);
    await renewer.stop();
  });

  it('backs off to the maximum on a refusal (revoked) and counts it as rejected', async () => {
    const identity = stored(21);
    const cloud = fakeCloud([new IdentityError('DEVICE_REVOKED', 'revoked')]);
    const renewer = new IdentityRenewer({ store, identity, registry, logger, client: cloud });
    renewer.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(renewer.status().nextAt!.getTime() - Date.now()).toBe(DEFAULT_RENEW_POLICY.maxMs);
    expect(await metric('vigil_agent_identity_renewals_total')).toContain('{result="rejected"} 1');
    expect(store.load()!.material.certPem).toBe(identity.material.certPem);
    await renewer.stop();
  });

  it('gives up on an expired certificate without calling the cloud', async () => {
    const identity = stored(31);
    const cloud = fakeCloud();
    const renewer = new IdentityRenewer({ store, identity, registry, logger, client: cloud });
    renewer.start();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(cloud.calls).toBe(0);
    expect(renewer.status().state).toBe('gave_up');
    expect(Number((await metric('vigil_agent_identity_cert_expiry_seconds')).split(' ')[1])).toBeLessThan(0);
  });

  it('stop() cancels a renewal in flight and stores nothing', async () => {
    const identity = stored(25);
    let signal: AbortSignal | undefined;
    const client: IdentityClient = {
      renew: (_id, opts) =>
        new Promise((_resolve, reject) => {
          signal = opts?.signal;
          signal?.addEventListener('abort', () =>
            reject(new IdentityError('CLOUD_UNAVAILABLE', 'cancelled')),
          );
        }),
    };
    const renewer = new IdentityRenewer({ store, identity, registry, logger, client });
    renewer.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(renewer.status().state).toBe('renewing');
    await renewer.stop();
    expect(signal?.aborted).toBe(true);
    expect(renewer.status().state).toBe('stopped');
    expect(store.load()!.material.certPem).toBe(identity.material.certPem);
  });
});
