import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { RateLimitedError } from '../src/api/errors.js';
import { toProblem } from '../src/api/problem.js';
import { parseCloudConfig } from '../src/config/load.js';
import { RateLimiter, type GcraClient } from '../src/api/ratelimit.js';
import {
  gcraArguments,
  mostRestrictive,
  parseGcraReply,
  policyQuota,
  rateLimitField,
  rateLimitKey,
  rateLimitPolicyField,
  retryAfterSeconds,
  type LimitOutcome,
  type LimitRequest,
} from '../src/api/ratelimit-policy.js';

const tenantRule = { ratePerSecond: 1, burst: 10 };
const clientRule = { ratePerSecond: 50, burst: 100 };
const requests: LimitRequest[] = [
  { scope: 'tenant', id: 'acme', rule: tenantRule },
  { scope: 'client', id: 'alice@acme', rule: clientRule },
];
const outcome = (over: Partial<LimitOutcome>): LimitOutcome => ({
  scope: 'tenant',
  rule: tenantRule,
  allowed: true,
  remaining: 5,
  retryAfterMs: 0,
  resetMs: 5000,
  ...over,
});

describe('rate limit keys and script arguments', () => {
  it('names keys vigil:rl:<scope>:<id> and hashes very long ids', () => {
    expect(rateLimitKey('tenant', 'acme')).toBe('vigil:rl:tenant:acme');
    expect(rateLimitKey('client', 'alice@acme')).toBe('vigil:rl:client:alice@acme');
    const long = rateLimitKey('client', 'x'.repeat(500));
    expect(long).toMatch(/^vigil:rl:client:sha256:[0-9a-f]{64}$/);
    expect(rateLimitKey('client', 'y'.repeat(500))).not.toBe(long);
  });

  it('passes rate, period (ms) and burst per key', () => {
    expect(gcraArguments(requests)).toEqual({
      keys: ['vigil:rl:tenant:acme', 'vigil:rl:client:alice@acme'],
      args: ['1', '1000', '10', '50', '1000', '100'],
    });
    expect(
      gcraArguments([{ scope: 'tenant', id: 't', rule: { ratePerSecond: 0.5, burst: 1 } }]).args,
    ).toEqual(['0.5', '1000', '1']);
  });

  it('reads the script reply and refuses any other shape', () => {
    expect(parseGcraReply([0, 0, 0, 1200, 9000, 1, 99, 0, 20], requests)).toEqual({
      allowed: false,
      outcomes: [
        {
          scope: 'tenant',
          rule: tenantRule,
          allowed: false,
          remaining: 0,
          retryAfterMs: 1200,
          resetMs: 9000,
        },
        { scope: 'client', rule: clientRule, allowed: true, remaining: 99, retryAfterMs: 0, resetMs: 20 },
      ],
    });
    for (const bad of [
      null,
      'OK',
      [1, 1, 9, 0, 1000],
      [1, 1, 9, 0, 1000, 1, 99, 0, '20'],
      [1.5, 1, 9, 0, 1, 1, 9, 0, 1],
    ])
      expect(() => parseGcraReply(bad, requests)).toThrow(/unexpected GCRA reply/);
  });
});

describe('the limit shown to the caller', () => {
  it('is a refusing limit over any allowing one, the one that lifts last among refusals', () => {
    const t = outcome({ scope: 'tenant', allowed: false, remaining: 0, retryAfterMs: 800 });
    const c = outcome({ scope: 'client', allowed: true, remaining: 0, resetMs: 60_000 });
    expect(mostRestrictive([c, t]).scope).toBe('tenant');
    expect(mostRestrictive([t, c]).scope).toBe('tenant');
    const c2 = outcome({ scope: 'client', allowed: false, remaining: 0, retryAfterMs: 3000 });
    expect(mostRestrictive([t, c2]).scope).toBe('client');
  });

  it('is the one with the fewest requests left when all allow, then the slowest to refill', () => {
    const t = outcome({ scope: 'tenant', remaining: 37, resetMs: 12_000 });
    const c = outcome({ scope: 'client', remaining: 80, resetMs: 400 });
    expect(mostRestrictive([c, t]).scope).toBe('tenant');
    expect(mostRestrictive([t, outcome({ scope: 'client', remaining: 37, resetMs: 13_000 })]).scope).toBe(
      'client',
    );
    expect(() => mostRestrictive([])).toThrow();
  });
});

describe('header fields (draft-ietf-httpapi-ratelimit-headers, structured form)', () => {
  it('formats RateLimit as "<scope>";r=<remaining>;t=<seconds to full, rounded up>', () => {
    expect(rateLimitField(outcome({ remaining: 37, resetMs: 11_001 }))).toBe('"tenant";r=37;t=12');
    expect(rateLimitField(outcome({ scope: 'client', remaining: 0, resetMs: 0 }))).toBe('"client";r=0;t=0');
  });

  it('formats RateLimit-Policy as quota per window, the window long enough for the burst', () => {
    expect(policyQuota({ ratePerSecond: 1, burst: 10 })).toEqual({ q: 10, w: 10 });
    expect(policyQuota({ ratePerSecond: 50, burst: 100 })).toEqual({ q: 100, w: 2 });
    expect(policyQuota({ ratePerSecond: 1000, burst: 10 })).toEqual({ q: 1000, w: 1 });
    expect(policyQuota({ ratePerSecond: 0.5, burst: 1 })).toEqual({ q: 1, w: 2 });
    expect(rateLimitPolicyField({ tenant: tenantRule, client: clientRule })).toBe(
      '"tenant";q=10;w=10, "client";q=100;w=2',
    );
  });

  it('rounds Retry-After up to whole seconds, never 0', () => {
    expect([0, 1, 999, 1000, 1001, 12_345].map(retryAfterSeconds)).toEqual([1, 1, 1, 1, 2, 13]);
  });

  it('makes a 429 problem whose Retry-After is the limit’s', () => {
    const p = toProblem(new RateLimitedError(7, 'This tenant has exceeded its request rate.'), '/v1/events');
    expect(p.problem).toEqual({
      type: 'urn:vigil:problem:rate-limited',
      title: 'Too many requests',
      status: 429,
      detail: 'This tenant has exceeded its request rate.',
      instance: '/v1/events',
    });
    expect(p.headers['Retry-After']).toBe('7');
    expect(p.internal).toBe(false);
  });
});

describe('RateLimiter failure policy (fail-open)', () => {
  const failing = (err: Error): GcraClient => ({ vigilGcra: () => Promise.reject(err) });

  it('answers no verdict, counts the error by reason and logs at most once per interval', async () => {
    const metrics = new Registry();
    const lines: string[] = [];
    const log = pino({ level: 'warn' }, { write: (l: string) => void lines.push(l) });
    const limiter = new RateLimiter(
      failing(new Error('Command timed out')),
      { tenant: tenantRule, client: clientRule },
      log,
      metrics,
      {
        errorLogIntervalMs: 60_000,
      },
    );
    for (let i = 0; i < 5; i++) expect(await limiter.check('acme', 'alice@acme')).toBeUndefined();
    const text = await metrics.metrics();
    expect(text).toMatch(/vigil_cloud_ratelimit_errors_total\{reason="timeout"\} 5/);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/rate limit check failed/);
  });

  it('classifies an unreachable Redis as unavailable', async () => {
    const metrics = new Registry();
    const limiter = new RateLimiter(
      failing(new Error("Stream isn't writeable and enableOfflineQueue options is false")),
      { tenant: tenantRule, client: clientRule },
      pino({ level: 'silent' }),
      metrics,
    );
    expect(await limiter.check('acme', 'alice@acme')).toBeUndefined();
    expect(await metrics.metrics()).toMatch(/vigil_cloud_ratelimit_errors_total\{reason="unavailable"\} 1/);
  });

  it('counts verdicts per scope and result', async () => {
    const metrics = new Registry();
    const limiter = new RateLimiter(
      { vigilGcra: () => Promise.resolve([0, 0, 0, 900, 10_000, 1, 99, 0, 20]) },
      { tenant: tenantRule, client: clientRule },
      pino({ level: 'silent' }),
      metrics,
    );
    const d = await limiter.check('acme', 'alice@acme');
    expect(d?.allowed).toBe(false);
    const text = await metrics.metrics();
    expect(text).toMatch(/vigil_cloud_ratelimit_decisions_total\{scope="tenant",result="limited"\} 1/);
    expect(text).toMatch(/vigil_cloud_ratelimit_decisions_total\{scope="client",result="allowed"\} 1/);
  });
});

describe('rateLimit config', () => {
  const base = {
    database: { url: 'postgres://localhost/vigil' },
    nats: { servers: ['tls://localhost:4222'], tls: { caFile: 'ca', certFile: 'c', keyFile: 'k' } },
    api: { enabled: false },
  };
  const parse = (rateLimit?: Record<string, unknown>) =>
    parseCloudConfig(rateLimit === undefined ? base : { ...base, rateLimit }).rateLimit;

  it('is off without a Redis URL and on by default with one', () => {
    expect(parse()).toEqual({
      enabled: false,
      tenant: { ratePerSecond: 50, burst: 100 },
      client: { ratePerSecond: 10, burst: 20 },
      commandTimeoutMs: 50,
    });
    expect(parse({ redisUrl: 'redis://127.0.0.1:6379' }).enabled).toBe(true);
    expect(parse({ redisUrl: 'redis://127.0.0.1:6379', enabled: false }).enabled).toBe(false);
    expect(parse({ redisUrl: 'rediss://cache:6380/2', tenant: { burst: 5 } }).tenant).toEqual({
      ratePerSecond: 50,
      burst: 5,
    });
  });

  it('refuses enabled without a URL, other URLs, unknown keys and rates that are not positive', () => {
    expect(() => parse({ enabled: true })).toThrow(/rateLimit\.redisUrl: required when rateLimit\.enabled/);
    expect(() => parse({ redisUrl: 'http://cache:6379' })).toThrow(/rateLimit\.redisUrl/);
    expect(() => parse({ redisUrl: 'redis://x', ttl: 5 })).toThrow(/rateLimit/);
    expect(() => parse({ redisUrl: 'redis://x', client: { ratePerSecond: 0 } })).toThrow(
      /rateLimit\.client\.ratePerSecond/,
    );
    expect(() => parse({ redisUrl: 'redis://x', commandTimeoutMs: 0 })).toThrow(/commandTimeoutMs/);
  });
});
