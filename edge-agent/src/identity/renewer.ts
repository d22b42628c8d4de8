import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { backoffDelay } from '../lib/backoff.js';
import { grpcIdentityClient, type IdentityClient } from './client.js';
import { IdentityError } from './errors.js';
import type { DeviceIdentity, IdentityStore } from './store.js';

export interface RenewPolicy {
  /** Renew when this fraction of the certificate's lifetime has passed (0.5..0.9). */
  atFraction: number;
  /** Retry backoff after a retryable failure: initialMs doubling up to maxMs, with jitter. */
  initialMs: number;
  maxMs: number;
  jitter: number;
  /** Attempts per renewal window (one certificate): past it the renewer stops until the agent restarts. */
  maxAttempts: number;
}

export const DEFAULT_RENEW_POLICY: RenewPolicy = {
  atFraction: 2 / 3,
  initialMs: 30_000,
  maxMs: 3_600_000,
  jitter: 0.5,
  maxAttempts: 200,
};

/** setTimeout overflows past ~24.8 days; sleeping in slices also re-reads the clock (suspend, NTP steps). */
const MAX_SLEEP_MS = 3_600_000;

/** When a certificate valid from `from` (notBefore, or when it was obtained if later) to notAfter is due. */
export function renewalDueAt(notBefore: Date, notAfter: Date, atFraction: number): Date {
  const lifetime = notAfter.getTime() - notBefore.getTime();
  return new Date(notBefore.getTime() + Math.max(0, lifetime) * atFraction);
}

export type RetryPlan = { at: Date } | { giveUp: 'expired' | 'attempts' };

/**
 * When to try again after `failures` (>= 1) failed attempts on a certificate that expires at notAfter.
 * Retryable errors back off exponentially; others (revoked, rejected) wait the maximum, since only a person
 * can fix them and hammering the cloud does not help. The wait never reaches past expiry: close to it, the
 * attempts come at half the remaining time (never sooner than initialMs), so the last chances are used.
 * Renewing with an expired certificate cannot work (Renew needs it for mutual TLS): then it gives up.
 */
export function retryPlan(
  now: Date,
  notAfter: Date,
  failures: number,
  retryable: boolean,
  policy: RenewPolicy,
  random: () => number = Math.random,
): RetryPlan {
  if (failures >= policy.maxAttempts) return { giveUp: 'attempts' };
  const remaining = notAfter.getTime() - now.getTime();
  if (remaining <= 0) return { giveUp: 'expired' };
  const wanted = retryable ? backoffDelay(failures - 1, policy, random) : policy.maxMs;
  const delay = Math.min(wanted, Math.max(policy.initialMs, remaining / 2));
  if (delay >= remaining) return { giveUp: 'expired' };
  return { at: new Date(now.getTime() + delay) };
}

export interface IdentityRenewerOptions {
  store: IdentityStore;
  identity: DeviceIdentity;
  registry: Registry;
  logger: Logger;
  client?: IdentityClient;
  /** Overrides the DeviceService endpoint stored with the identity. */
  endpoint?: string;
  policy?: Partial<RenewPolicy>;
  deadlineMs?: number;
  now?: () => Date;
  random?: () => number;
  /** Called after a renewed identity is stored (the agent reconnects NATS with it). */
  onRenewed?: (identity: DeviceIdentity) => void | Promise<void>;
}

export type RenewerState = 'idle' | 'scheduled' | 'renewing' | 'gave_up' | 'stopped';

/** Keeps the device certificate and NATS credentials fresh: Renew before expiry, store, tell the agent. */
export class IdentityRenewer {
  private current: DeviceIdentity;
  private readonly policy: RenewPolicy;
  private readonly now: () => Date;
  private readonly renewals: Counter<'result'>;
  private state: RenewerState = 'idle';
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private nextAt: Date | undefined;
  private inFlight: Promise<void> | undefined;
  private abort: AbortController | undefined;

  constructor(private readonly opts: IdentityRenewerOptions) {
    this.current = opts.identity;
    this.policy = { ...DEFAULT_RENEW_POLICY, ...opts.policy };
    this.now = opts.now ?? (() => new Date());
    const registers = [opts.registry];
    this.renewals = new Counter({
      name: 'vigil_agent_identity_renewals_total',
      help: 'Certificate renewal attempts by result: success, failure (will retry), rejected (needs a person)',
      labelNames: ['result'],
      registers,
    });
    const secondsLeft = (): number => (this.current.notAfter.getTime() - this.now().getTime()) / 1000;
    new Gauge({
      name: 'vigil_agent_identity_cert_expiry_seconds',
      help: 'Seconds until the device certificate expires (negative once expired)',
      registers,
      collect() {
        this.set(secondsLeft());
      },
    });
  }

  get identity(): DeviceIdentity {
    return this.current;
  }

  status(): { state: RenewerState; nextAt: Date | undefined; failures: number; notAfter: Date } {
    return {
      state: this.state,
      nextAt: this.nextAt,
      failures: this.failures,
      notAfter: this.current.notAfter,
    };
  }

  start(): void {
    if (this.state !== 'idle') return;
    this.scheduleDue();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.state = 'stopped';
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.abort?.abort();
    await this.inFlight;
  }

  private scheduleDue(): void {
    const c = this.current;
    if (c.notAfter.getTime() <= this.now().getTime()) return this.giveUp('expired');
    this.failures = 0;
    // The fleet CA backdates notBefore (clock skew allowance): count the lifetime from when this device got
    // the certificate, or a short-lived one would look two thirds used up on arrival.
    const obtained = c.renewedAt ?? c.enrolledAt;
    const from = obtained.getTime() > c.notBefore.getTime() ? obtained : c.notBefore;
    this.arm(renewalDueAt(from, c.notAfter, this.policy.atFraction));
  }

  private arm(at: Date): void {
    if (this.stopped) return;
    this.state = 'scheduled';
    this.nextAt = at;
    const wait = Math.max(0, Math.min(at.getTime() - this.now().getTime(), MAX_SLEEP_MS));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.now().getTime() < at.getTime()) this.arm(at);
      else this.inFlight = this.attempt().finally(() => (this.inFlight = undefined));
    }, wait);
    this.timer.unref();
  }

  private async attempt(): Promise<void> {
    this.state = 'renewing';
    this.abort = new AbortController();
    const log = this.opts.logger;
    try {
      const issued = await (this.opts.client ?? grpcIdentityClient).renew(this.current, {
        endpoint: this.opts.endpoint,
        deadlineMs: this.opts.deadlineMs,
        signal: this.abort.signal,
        now: this.now,
      });
      if (this.stopped) return;
      this.current = this.opts.store.save(issued.info, issued.material, issued.configJwks);
      this.renewals.inc({ result: 'success' });
      log.info({ notAfter: this.current.notAfter.toISOString() }, 'device certificate renewed');
    } catch (err) {
      if (this.stopped) return;
      // A failed save (disk full, permissions) is worth retrying like an unreachable cloud.
      const retryable = !(err instanceof IdentityError) || err.retryable;
      this.failures++;
      this.renewals.inc({ result: retryable ? 'failure' : 'rejected' });
      const plan = retryPlan(
        this.now(),
        this.current.notAfter,
        this.failures,
        retryable,
        this.policy,
        this.opts.random,
      );
      const code = err instanceof IdentityError ? err.code : 'STORE_FAILED';
      const cloudSaid = err instanceof IdentityError ? err.cloudSaid : undefined;
      const msg = `certificate renewal failed: ${(err as Error).message}`;
      if ('giveUp' in plan) {
        log.error({ code, attempts: this.failures, cloudSaid }, msg);
        return this.giveUp(plan.giveUp);
      }
      log.warn({ code, attempts: this.failures, cloudSaid, retryAt: plan.at.toISOString() }, msg);
      return this.arm(plan.at);
    } finally {
      this.abort = undefined;
    }
    try {
      await this.opts.onRenewed?.(this.current);
    } catch (err) {
      log.error({ err }, 'applying the renewed identity failed; it is stored and used on the next reconnect');
    }
    this.scheduleDue();
  }

  private giveUp(reason: 'expired' | 'attempts'): void {
    this.state = 'gave_up';
    this.nextAt = undefined;
    const notAfter = this.current.notAfter.toISOString();
    this.opts.logger.error(
      { reason, notAfter },
      reason === 'expired'
        ? `the device certificate expired (${notAfter}) and cannot be renewed any more: enroll this device ` +
            'again with a new token (vigil-agent enroll --force)'
        : `certificate renewal failed ${this.failures} times; no more attempts until the agent restarts ` +
            `(the certificate expires ${notAfter})`,
    );
  }
}
