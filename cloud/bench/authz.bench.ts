// The cost of one authorization decision: Cedar (the default, cloud/policies) against the fixed role table
// (createRoleAuthorizer, the pre-Cedar default), in one process on one machine:
//   node --conditions=@vigil/source --import tsx cloud/bench/authz.bench.ts [--calls 10000] [--warmup 2000]
// With OPA_URL set (an `opa run --server` with infra/opa/vigil loaded), the OPA authorizer is measured too.
// Prints ONE JSON document on stdout; progress on stderr.
//
// Each engine answers the same mixed requests in a loop (a list, a single resource before and after loading,
// a cross-tenant deny, a site-scoped user, a data-class deny, a role without the grant); each call is timed
// alone with process.hrtime.bigint() around the awaited authorize(). Figures in microseconds.
// Cedar is measured three ways: without its decision cache (the engine itself: every call goes through the
// wasm binding), with the cache on the repeating mix (hits), and with the cache when every request comes from
// a subject never seen before (all misses: the engine plus the cache's own bookkeeping).
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import type { Action, Authorizer, Resource } from '../src/auth/authorize.js';
import { createRoleAuthorizer } from '../src/auth/authorize.js';
import { createCedarAuthorizer } from '../src/auth/cedar.js';
import { createOpaAuthorizer } from '../src/auth/opa.js';
import type { Principal } from '../src/auth/principal.js';

const { values } = parseArgs({
  options: { calls: { type: 'string', default: '10000' }, warmup: { type: 'string', default: '2000' } },
});
const CALLS = Number(values.calls);
const WARMUP = Number(values.warmup);

const user = (roles: string[], sites?: string[]): Principal => ({
  subject: `bench-${roles.join('+')}`,
  tenant: 'acme',
  roles,
  ...(sites ? { sites } : {}),
});

// Requests the role table can answer too (no sites, metadata only), so both engines do the same work.
const COMMON: Request[] = [
  [user(['viewer']), 'events:read', { type: 'events', tenant: 'acme' }],
  [user(['viewer']), 'events:read', { type: 'event', tenant: 'acme', id: 'e1' }],
  [
    user(['operator']),
    'events:read',
    { type: 'event', tenant: 'acme', id: 'e1', site: 'hq', camera: 'c', dataClass: 'metadata' },
  ],
  [user(['installer']), 'events:read', { type: 'events', tenant: 'acme' }],
  [user(['admin']), 'devices:revoke', { type: 'device', tenant: 'acme', id: 'gw1' }],
  [user(['admin']), 'devices:read', { type: 'devices', tenant: 'globex' }],
  [user(['auditor', 'viewer']), 'enrollment-tokens:read', { type: 'enrollment-tokens', tenant: 'acme' }],
  [user(['operator']), 'devices:revoke', { type: 'device', tenant: 'acme', id: 'gw1' }],
];
// What only the policy engines decide: site scoping and data classes.
const POLICY_ONLY: Request[] = [
  [user(['operator'], ['hq']), 'events:read', { type: 'events', tenant: 'acme', site: 'hq' }],
  [user(['operator'], ['hq']), 'devices:read', { type: 'device', tenant: 'acme', id: 'gw1', site: 'lab' }],
  [
    user(['viewer']),
    'events:read',
    { type: 'event', tenant: 'acme', id: 'e2', site: 'hq', dataClass: 'personal' },
  ],
  [
    user(['operator']),
    'media:read',
    { type: 'media', tenant: 'acme', id: 'm1', site: 'hq', dataClass: 'media' },
  ],
];

interface Stats {
  calls: number;
  allowed: number;
  meanUs: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
  decisionsPerSecond: number;
}

type Request = [Principal, Action, Resource];

/**
 * The i-th request of the mix; with `distinct`, from a subject never seen before (the decision cache keys the
 * whole principal; a new resource id alone is a hit since the key leaves ids out, see auth/decision-key.ts).
 */
const pick = (requests: readonly Request[], i: number, distinct: boolean): Request => {
  const [p, a, r] = requests[i % requests.length]!;
  return distinct ? [{ ...p, subject: `${p.subject}-${i}` }, a, r] : [p, a, r];
};

async function measure(
  name: string,
  authz: Authorizer,
  requests: readonly Request[],
  distinct = false,
): Promise<Stats> {
  for (let i = 0; i < WARMUP; i++) {
    const [p, a, r] = pick(requests, CALLS + i, distinct);
    await authz.authorize(p, a, r);
  }
  const ns = new Float64Array(CALLS);
  let allowed = 0;
  const started = process.hrtime.bigint();
  for (let i = 0; i < CALLS; i++) {
    const [p, a, r] = pick(requests, i, distinct);
    const t0 = process.hrtime.bigint();
    const d = await authz.authorize(p, a, r);
    ns[i] = Number(process.hrtime.bigint() - t0);
    if (d.allowed) allowed++;
  }
  const wall = Number(process.hrtime.bigint() - started);
  const sorted = ns.sort();
  const at = (q: number): number =>
    sorted[Math.min(CALLS - 1, Math.max(0, Math.ceil(q * CALLS) - 1))]! / 1000;
  const r1 = (x: number): number => Math.round(x * 10) / 10;
  const stats = {
    calls: CALLS,
    allowed,
    meanUs: r1(sorted.reduce((a, b) => a + b, 0) / CALLS / 1000),
    p50Us: r1(at(0.5)),
    p90Us: r1(at(0.9)),
    p99Us: r1(at(0.99)),
    p999Us: r1(at(0.999)),
    maxUs: r1(sorted[CALLS - 1]! / 1000),
    decisionsPerSecond: Math.round(CALLS / (wall / 1e9)),
  };
  process.stderr.write(`[bench] ${name}: p50 ${stats.p50Us} us, p99 ${stats.p99Us} us\n`);
  return stats;
}

const log = pino({ level: 'silent' });
const loadStarted = process.hrtime.bigint();
const uncached = createCedarAuthorizer({ log, cacheSize: 0 });
const cedarLoadMs = Number(process.hrtime.bigint() - loadStarted) / 1e6;
const cached = createCedarAuthorizer({ log });
const MIX = [...COMMON, ...POLICY_ONLY];
const role = createRoleAuthorizer();

const results: Record<string, unknown> = {
  node: process.version,
  cpu: cpus()[0]?.model,
  cores: cpus().length,
  loadavg1m: loadavg()[0],
  calls: CALLS,
  warmup: WARMUP,
  cedarLoadAndValidateMs: Math.round(cedarLoadMs * 10) / 10,
  roleBaseline: await measure('role table (baseline)', role, COMMON),
  cedarUncached: await measure('cedar without cache, same requests', uncached, COMMON),
  cedarUncachedWithSitesAndDataClasses: await measure(
    'cedar without cache, with site/data-class requests',
    uncached,
    MIX,
  ),
  cedarCacheHits: await measure('cedar with cache, repeating requests', cached, MIX),
  cedarCacheMisses: await measure('cedar with cache, every resource id new', cached, MIX, true),
};
if (process.env.OPA_URL) {
  const opa = createOpaAuthorizer({ url: process.env.OPA_URL, timeoutMs: 1000, log });
  results.opa = await measure('opa', opa, MIX);
}
process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
