import type { RequestHandler } from 'express';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { CloudConfig } from '../config/schema.js';
import { principalOf } from './authenticate.js';
import { RateLimitedError } from './errors.js';
import {
  gcraArguments,
  mostRestrictive,
  parseGcraReply,
  rateLimitField,
  rateLimitPolicyField,
  retryAfterSeconds,
  type LimitRequest,
  type RateLimitDecision,
  type RateLimitRules,
} from './ratelimit-policy.js';

/*
 * API rate limits shared by every API process: GCRA (the generic cell rate algorithm) in one Redis Lua
 * script, so that the read-decide-write is atomic and one clock (Redis TIME) serves every process.
 *
 * Failure policy: fail-open. When Redis is down, slow (past rateLimit.commandTimeoutMs) or answers an
 * error, the request is served without limits; the failure is counted (vigil_cloud_ratelimit_errors_total)
 * and logged at most once per 30 s. Rate limiting protects the API from overload by a tenant or a client;
 * it is not an authorization control (authentication and authorization still run), so losing it for a
 * while degrades fairness, whereas failing closed would turn a Redis outage into a full API outage.
 */

/**
 * GCRA over N limits, all or nothing.
 *
 *   KEYS[i]                          vigil:rl:<scope>:<id>: the theoretical arrival time (TAT) of the next
 *                                    request, ms since the epoch on the Redis clock (3 decimals)
 *   ARGV[3i-2], ARGV[3i-1], ARGV[3i] rate (requests per period), period (ms), burst of KEYS[i]
 *   returns {allowed, then per key: allowed_i, remaining_i, retry_after_ms_i, reset_ms_i} (integers)
 *
 * With interval T = period / rate and capacity B * T, a request at `now` conforms to a limit when
 * max(TAT, now) + T - B * T <= now. It is allowed when it conforms to every limit, and only then is every
 * TAT advanced (SET ... PX: the key expires once the bucket is full again), so a refused request costs
 * nothing. remaining_i is what limit i allows right now after this request; retry_after_ms_i is 0 when
 * limit i allows, else the wait until it does; reset_ms_i is the wait until limit i is full again.
 * TIME is non-deterministic: Redis >= 5 replicates a script's effects, and replicate_commands() asks older
 * ones to (it is a no-op where effects replication is the default).
 */
export const GCRA_LUA = `
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local n = #KEYS
if #ARGV ~= 3 * n then return redis.error_reply('ERR vigil gcra: want 3 arguments per key') end
local out = {1}
local tats = {}
local fits = {}
for i = 1, n do
  local rate = tonumber(ARGV[3 * i - 2])
  local period = tonumber(ARGV[3 * i - 1])
  local burst = tonumber(ARGV[3 * i])
  if not rate or not period or not burst or rate <= 0 or period <= 0 or burst < 1 then
    return redis.error_reply('ERR vigil gcra: bad rate, period or burst for key ' .. i)
  end
  local interval = period / rate
  local capacity = interval * burst
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat == nil or tat < now then tat = now end
  local allow_at = tat + interval - capacity
  tats[i] = {tat, interval, capacity}
  fits[i] = now >= allow_at
  if not fits[i] then out[1] = 0 end
end
for i = 1, n do
  local tat, interval, capacity = tats[i][1], tats[i][2], tats[i][3]
  local at = 1 + 4 * (i - 1)
  if fits[i] then
    out[at + 1] = 1
    out[at + 3] = 0
    if out[1] == 1 then
      local new_tat = tat + interval
      redis.call('SET', KEYS[i], string.format('%.3f', new_tat), 'PX', math.max(1, math.ceil(new_tat - now)))
      out[at + 2] = math.floor((capacity - (new_tat - now)) / interval + 1e-6)
      out[at + 4] = math.ceil(new_tat - now)
    else
      out[at + 2] = math.floor((capacity - (tat - now)) / interval + 1e-6)
      out[at + 4] = math.ceil(tat - now)
    end
  else
    out[at + 1] = 0
    out[at + 2] = 0
    out[at + 3] = math.ceil(tat + interval - capacity - now)
    out[at + 4] = math.ceil(tat - now)
  end
end
return out
`;

/** The command that defineCommand adds (EVALSHA, falling back to EVAL when the script is not loaded). */
const GCRA_COMMAND = 'vigilGcra';

/** The part of a Redis client the limiter uses: the GCRA command (key count first, then keys and args). */
export interface GcraClient {
  vigilGcra(numKeys: number, ...keysAndArgs: string[]): Promise<unknown>;
}

export type RateLimitConfig = CloudConfig['rateLimit'];

const ERROR_LOG_INTERVAL_MS = 30_000;

/** Logs at most once per interval, counting what it held back. */
class ThrottledWarning {
  private lastAt = Number.NEGATIVE_INFINITY;
  private suppressed = 0;

  constructor(
    private readonly log: Logger,
    private readonly intervalMs: number,
  ) {}

  warn(fields: Record<string, unknown>, msg: string): void {
    const now = Date.now();
    if (now - this.lastAt < this.intervalMs) {
      this.suppressed++;
      return;
    }
    this.log.warn({ ...fields, suppressed: this.suppressed }, msg);
    this.lastAt = now;
    this.suppressed = 0;
  }
}

function errorReason(err: unknown): 'timeout' | 'unavailable' | 'error' {
  const message = err instanceof Error ? err.message : String(err);
  if (/timed out/i.test(message)) return 'timeout';
  if (/writeable|connection is closed|MaxRetriesPerRequest|ECONNREFUSED|ECONNRESET/i.test(message))
    return 'unavailable';
  return 'error';
}

export interface RateLimiterOptions {
  /** Closes the Redis client (called by close()). */
  close?: () => Promise<void>;
  errorLogIntervalMs?: number;
}

/** Checks the tenant and client limits of a request in one atomic script call; fail-open on any error. */
export class RateLimiter {
  readonly rules: RateLimitRules;
  private readonly decisions: Counter<'scope' | 'result'>;
  private readonly errors: Counter<'reason'>;
  private readonly warning: ThrottledWarning;

  constructor(
    private readonly client: GcraClient,
    rules: RateLimitRules,
    private readonly log: Logger,
    metrics: Registry,
    private readonly opts: RateLimiterOptions = {},
  ) {
    this.rules = { tenant: { ...rules.tenant }, client: { ...rules.client } };
    this.decisions = new Counter({
      name: 'vigil_cloud_ratelimit_decisions_total',
      help: 'API rate limit verdicts by scope (tenant, client) and result (allowed, limited)',
      labelNames: ['scope', 'result'],
      registers: [metrics],
    });
    this.errors = new Counter({
      name: 'vigil_cloud_ratelimit_errors_total',
      help: 'Requests served without a rate limit verdict because Redis failed (timeout, unavailable, error)',
      labelNames: ['reason'],
      registers: [metrics],
    });
    this.warning = new ThrottledWarning(log, opts.errorLogIntervalMs ?? ERROR_LOG_INTERVAL_MS);
  }

  /** Logs (throttled) a failure of the Redis connection itself. */
  connectionError(err: unknown): void {
    this.warning.warn(
      { err: err instanceof Error ? err.message : String(err) },
      'rate limit Redis unavailable; serving without limits',
    );
  }

  /** The verdict for a caller, or undefined when Redis could not decide (the caller is then served). */
  async check(tenant: string, subject: string): Promise<RateLimitDecision | undefined> {
    const requests: LimitRequest[] = [
      { scope: 'tenant', id: tenant, rule: this.rules.tenant },
      // A client is a subject of one tenant: another tenant's token with the same `sub` is another client
      // (tenant ids hold no ':', so `<tenant>:<sub>` is unambiguous).
      { scope: 'client', id: `${tenant}:${subject}`, rule: this.rules.client },
    ];
    const { keys, args } = gcraArguments(requests);
    try {
      const decision = parseGcraReply(await this.client.vigilGcra(keys.length, ...keys, ...args), requests);
      for (const o of decision.outcomes)
        this.decisions.inc({ scope: o.scope, result: o.allowed ? 'allowed' : 'limited' });
      return decision;
    } catch (err) {
      const reason = errorReason(err);
      this.errors.inc({ reason });
      this.warning.warn(
        { reason, err: err instanceof Error ? err.message : String(err) },
        'rate limit check failed; serving without limits',
      );
      return undefined;
    }
  }

  async close(): Promise<void> {
    await this.opts.close?.();
  }
}

/** A URL fit for a log line: no user or password. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(unparsable URL)';
  }
}

/**
 * The Redis client (created once) and the limiter on it. Commands never wait for a connection (no offline
 * queue, no resend after a reconnect) and time out after `commandTimeoutMs`, so a Redis that is down or hung
 * adds at most that much to a request. Reconnects every 0.2..2 s in the background.
 */
export function createRateLimiter(config: RateLimitConfig, log: Logger, metrics: Registry): RateLimiter {
  if (!config.redisUrl) throw new Error('createRateLimiter: rateLimit.redisUrl is not set');
  const rlLog = log.child({ component: 'ratelimit' });
  const redis = new Redis(config.redisUrl, {
    commandTimeout: config.commandTimeoutMs,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    connectTimeout: 2_000,
    retryStrategy: (times) => Math.min(200 * times, 2_000),
    connectionName: 'vigil-cloud-ratelimit',
  });
  redis.defineCommand(GCRA_COMMAND, { lua: GCRA_LUA });
  const limiter = new RateLimiter(redis as unknown as GcraClient, config, rlLog, metrics, {
    close: async () => {
      if (redis.status === 'ready') await redis.quit().catch(() => redis.disconnect());
      else redis.disconnect();
    },
  });
  let wasReady = false;
  redis.on('error', (err: unknown) => limiter.connectionError(err));
  redis.on('ready', () => {
    rlLog.info({ redis: redactUrl(config.redisUrl!), reconnect: wasReady }, 'rate limit Redis connected');
    wasReady = true;
  });
  rlLog.info(
    { redis: redactUrl(config.redisUrl), tenant: config.tenant, client: config.client },
    'API rate limits enabled',
  );
  return limiter;
}

/**
 * Express middleware, after authenticate(): charges the caller's tenant and client (tenant + JWT `sub`) and sets
 * `RateLimit-Policy` and `RateLimit`; over a limit, the request ends as a 429 problem with `Retry-After`.
 * Without a verdict (Redis failed) the request goes on without rate limit headers.
 */
export function rateLimitMiddleware(limiter: RateLimiter): RequestHandler {
  const policy = rateLimitPolicyField(limiter.rules);
  return async (_req, res, next) => {
    try {
      const principal = principalOf(res);
      const decision = await limiter.check(principal.tenant, principal.subject);
      if (!decision) {
        next();
        return;
      }
      const shown = mostRestrictive(decision.outcomes);
      res.set('RateLimit-Policy', policy);
      res.set('RateLimit', rateLimitField(shown));
      if (decision.allowed) {
        next();
        return;
      }
      const seconds = retryAfterSeconds(shown.retryAfterMs);
      const who = shown.scope === 'tenant' ? 'This tenant' : 'This client';
      next(new RateLimitedError(seconds, `${who} has exceeded its request rate; retry in ${seconds} s.`));
    } catch (err) {
      next(err);
    }
  };
}
