import { createHash } from 'node:crypto';

/*
 * The pure parts of API rate limiting (api/ratelimit.ts runs them against Redis): Redis keys and script
 * arguments, reading the script's reply, choosing what to tell the caller, and the header fields of
 * draft-ietf-httpapi-ratelimit-headers (structured-field form):
 *
 *   RateLimit-Policy: "tenant";q=100;w=2, "client";q=20;w=2
 *   RateLimit: "tenant";r=37;t=1
 */

/** What a limit counts: every caller of a tenant together, or one caller (the JWT `sub`). */
export type RateLimitScope = 'tenant' | 'client';

/** A GCRA limit: `ratePerSecond` sustained, `burst` at once from a full bucket. */
export interface RateLimitRule {
  ratePerSecond: number;
  burst: number;
}

export interface RateLimitRules {
  tenant: RateLimitRule;
  client: RateLimitRule;
}

/** One limit to check for a request. */
export interface LimitRequest {
  scope: RateLimitScope;
  id: string;
  rule: RateLimitRule;
}

/** The script's verdict on one limit. */
export interface LimitOutcome {
  scope: RateLimitScope;
  rule: RateLimitRule;
  /** This limit alone would let the request through. */
  allowed: boolean;
  /** Requests this limit still allows right now (after this one when the request went through). */
  remaining: number;
  /** 0 when allowed; otherwise how long until this limit allows one request. */
  retryAfterMs: number;
  /** How long until the bucket is full again (all of `burst` available). */
  resetMs: number;
}

/** The verdict on a request: allowed only when every limit allows it (and then every limit is charged). */
export interface RateLimitDecision {
  allowed: boolean;
  outcomes: LimitOutcome[];
}

export const RATE_LIMIT_KEY_PREFIX = 'vigil:rl:';
/** Longer ids (a JWT `sub` is free text) are hashed so that a key stays small. */
const MAX_ID_LENGTH = 128;

/** `vigil:rl:<scope>:<id>`; an id longer than 128 characters becomes `sha256:<hex>`. */
export function rateLimitKey(scope: RateLimitScope, id: string): string {
  const part = id.length > MAX_ID_LENGTH ? `sha256:${createHash('sha256').update(id).digest('hex')}` : id;
  return `${RATE_LIMIT_KEY_PREFIX}${scope}:${part}`;
}

/** KEYS and ARGV of the GCRA script: per key its rate (requests per period), period (ms) and burst. */
export function gcraArguments(requests: readonly LimitRequest[]): { keys: string[]; args: string[] } {
  const keys = requests.map((r) => rateLimitKey(r.scope, r.id));
  const args = requests.flatMap((r) => [String(r.rule.ratePerSecond), '1000', String(r.rule.burst)]);
  return { keys, args };
}

/**
 * Reads the script's reply: `[allowed, then per key allowed_i, remaining_i, retry_after_ms_i, reset_ms_i]`,
 * all integers. Throws on anything else (a script of another version answering, say).
 */
export function parseGcraReply(reply: unknown, requests: readonly LimitRequest[]): RateLimitDecision {
  const expected = 1 + 4 * requests.length;
  if (!Array.isArray(reply) || reply.length !== expected || !reply.every((v) => Number.isInteger(v)))
    throw new Error(`unexpected GCRA reply: ${JSON.stringify(reply)} (want ${expected} integers)`);
  const n = reply as number[];
  const outcomes = requests.map((r, i): LimitOutcome => {
    const at = 1 + 4 * i;
    return {
      scope: r.scope,
      rule: r.rule,
      allowed: n[at] === 1,
      remaining: Math.max(0, n[at + 1]!),
      retryAfterMs: Math.max(0, n[at + 2]!),
      resetMs: Math.max(0, n[at + 3]!),
    };
  });
  return { allowed: n[0] === 1, outcomes };
}

/**
 * The limit to show the caller: among the limits that refused, the one that lifts last; when all allow,
 * the one with the fewest requests left (then the one that takes longest to refill).
 */
export function mostRestrictive(outcomes: readonly LimitOutcome[]): LimitOutcome {
  if (outcomes.length === 0) throw new Error('mostRestrictive: no outcomes');
  let best = outcomes[0]!;
  for (const o of outcomes.slice(1)) {
    if (o.allowed !== best.allowed) {
      if (!o.allowed) best = o;
      continue;
    }
    const better = o.allowed
      ? o.remaining < best.remaining || (o.remaining === best.remaining && o.resetMs > best.resetMs)
      : o.retryAfterMs > best.retryAfterMs;
    if (better) best = o;
  }
  return best;
}

/** Whole seconds for `Retry-After`, rounded up, at least 1 (a 429 that says "retry in 0 s" invites a spin). */
export function retryAfterSeconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

/**
 * A policy as quota per window, as the draft asks: the window is long enough for the burst
 * (`w = ceil(burst / rate)`, at least 1 s) and the quota is what the sustained rate allows in it, at
 * least the burst. GCRA refills continuously, so this is the long-run rate, not a fixed-window reset.
 */
export function policyQuota(rule: RateLimitRule): { q: number; w: number } {
  const w = Math.max(1, Math.ceil(rule.burst / rule.ratePerSecond));
  return { q: Math.max(rule.burst, Math.floor(rule.ratePerSecond * w)), w };
}

/** A structured-field String (RFC 8941 section 3.3.3): printable ASCII, `"` and `\` escaped. */
function sfString(s: string): string {
  if (!/^[\x20-\x7e]*$/.test(s)) throw new Error(`not a structured-field string: ${JSON.stringify(s)}`);
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** `RateLimit-Policy`: one list member per limit, e.g. `"tenant";q=100;w=2, "client";q=20;w=2`. */
export function rateLimitPolicyField(rules: RateLimitRules): string {
  return (Object.keys(rules) as RateLimitScope[])
    .map((scope) => {
      const { q, w } = policyQuota(rules[scope]);
      return `${sfString(scope)};q=${q};w=${w}`;
    })
    .join(', ');
}

/** `RateLimit` for the limit shown: `"tenant";r=<remaining>;t=<seconds until full, rounded up>`. */
export function rateLimitField(outcome: LimitOutcome): string {
  return `${sfString(outcome.scope)};r=${outcome.remaining};t=${Math.ceil(outcome.resetMs / 1000)}`;
}
