// First: turns off a V8 optimization that aborts the process around wasm calls (issue 20; see the module).
import './v8-workaround.js';
import { readdirSync, readFileSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  checkParsePolicySet,
  checkParseSchema,
  policySetTextToParts,
  policyToJson,
  preparsePolicySet,
  preparseSchema,
  statefulIsAuthorized,
  validate,
  type DetailedError,
  type EntityJson,
  type EntityUid,
} from '@cedar-policy/cedar-wasm/nodejs';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { ConfigError } from '../lib/errors.js';
import {
  authzErrorCounter,
  invalidRequest,
  type Action,
  type Authorizer,
  type Decision,
  type Resource,
} from './authorize.js';
import { decisionKey, planFromPolicies, type DecisionKeyPlan } from './decision-key.js';
import type { Principal } from './principal.js';

/** cloud/policies, found from this file (not the working directory). */
export const DEFAULT_POLICIES_DIR = fileURLToPath(new URL('../../policies', import.meta.url));

/** The schema file in a policies directory; every other `*.cedar` file there is a policy file. */
export const CEDAR_SCHEMA_FILE = 'vigil.cedarschema';

const NS = 'Vigil';

/** Where a policy came from, for error messages. */
export interface PolicySource {
  readonly file: string;
  readonly line: number;
}

/** A validated policy directory: the schema text and the policies by their `@id`. */
export interface CedarPolicies {
  readonly dir: string;
  readonly schema: string;
  /** `@id` -> policy text (one policy each). */
  readonly policies: Readonly<Record<string, string>>;
  readonly sources: Readonly<Record<string, PolicySource>>;
  /** Validator warnings (e.g. a policy that can never apply): logged at start, not fatal. */
  readonly warnings: readonly string[];
}

function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

function describe(e: DetailedError): string {
  return e.help ? `${e.message} (${e.help})` : e.message;
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`authz: cannot read ${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Reads `<dir>/vigil.cedarschema` and every `<dir>/*.cedar`, and validates the policies against the schema in
 * strict mode. Every policy needs a unique `@id("...")`: it is the policy's id in decisions and logs. Throws
 * a ConfigError naming the file and line of the first problems found.
 */
export function loadCedarPolicies(dir: string = DEFAULT_POLICIES_DIR): CedarPolicies {
  const root = resolve(dir);
  const shown = (file: string): string => {
    const rel = relative(process.cwd(), join(root, file));
    return rel.startsWith('..') || isAbsolute(rel) ? join(root, file) : rel;
  };
  const schema = readText(join(root, CEDAR_SCHEMA_FILE), 'the Cedar schema');
  const parsedSchema = checkParseSchema(schema);
  if (parsedSchema.type === 'failure') {
    throw new ConfigError(
      `authz: invalid Cedar schema:\n${parsedSchema.errors
        .map(
          (e) =>
            `  ${shown(CEDAR_SCHEMA_FILE)}:${lineAt(schema, e.sourceLocations?.[0]?.start ?? 0)}: ${describe(e)}`,
        )
        .join('\n')}`,
    );
  }

  let files: string[];
  try {
    files = readdirSync(root)
      .filter((f) => f.endsWith('.cedar'))
      .sort();
  } catch (err) {
    throw new ConfigError(`authz: cannot list ${root}: ${(err as Error).message}`, { cause: err });
  }
  if (files.length === 0) throw new ConfigError(`authz: no *.cedar policy files in ${root}`);

  const policies: Record<string, string> = {};
  const sources: Record<string, PolicySource & { offset: number; text: string }> = {};
  const problems: string[] = [];
  for (const file of files) {
    const text = readText(join(root, file), 'the policy file');
    const parsed = checkParsePolicySet({ staticPolicies: text });
    if (parsed.type === 'failure') {
      for (const e of parsed.errors)
        problems.push(`  ${shown(file)}:${lineAt(text, e.sourceLocations?.[0]?.start ?? 0)}: ${describe(e)}`);
      continue;
    }
    const parts = policySetTextToParts(text);
    if (parts.type === 'failure') {
      problems.push(...parts.errors.map((e) => `  ${shown(file)}: ${describe(e)}`));
      continue;
    }
    if (parts.policy_templates.length > 0) problems.push(`  ${shown(file)}: templates are not supported`);
    // The parts are the source text of each policy (comments dropped), not in file order: find each one.
    const taken = new Set<number>();
    for (const policy of parts.policies) {
      let offset = text.indexOf(policy);
      while (offset >= 0 && taken.has(offset)) offset = text.indexOf(policy, offset + 1);
      taken.add(offset);
      const line = offset >= 0 ? lineAt(text, offset) : 0;
      const json = policyToJson(policy);
      const id = json.type === 'success' ? json.json.annotations?.id : undefined;
      if (id === undefined || id.trim() === '') {
        problems.push(`  ${shown(file)}:${line}: the policy has no @id("...") annotation`);
        continue;
      }
      const seen = sources[id];
      if (seen) {
        problems.push(`  ${shown(file)}:${line}: @id("${id}") is already used at ${seen.file}:${seen.line}`);
        continue;
      }
      policies[id] = policy;
      sources[id] = { file: shown(file), line, offset: Math.max(offset, 0), text };
    }
  }
  if (problems.length > 0) throw new ConfigError(`authz: invalid Cedar policies:\n${problems.join('\n')}`);

  const validation = validate({
    schema,
    policies: { staticPolicies: policies },
    validationSettings: { mode: 'strict' },
  });
  if (validation.type === 'failure')
    throw new ConfigError(
      `authz: Cedar validation failed:\n${validation.errors.map((e) => `  ${describe(e)}`).join('\n')}`,
    );
  if (validation.validationErrors.length > 0) {
    const lines = validation.validationErrors.map(({ policyId, error }) => {
      const src = sources[policyId];
      if (!src) return `  policy ${policyId}: ${describe(error)}`;
      const at = src.offset + (error.sourceLocations?.[0]?.start ?? 0);
      return `  ${src.file}:${lineAt(src.text, at)}: @id("${policyId}"): ${describe(error)}`;
    });
    throw new ConfigError(
      `authz: the Cedar policies do not validate against ${shown(CEDAR_SCHEMA_FILE)} (strict):\n${lines.join('\n')}`,
    );
  }
  const warnings = [
    ...validation.validationWarnings.map(({ policyId, error }) => `@id("${policyId}"): ${describe(error)}`),
    ...validation.otherWarnings.map(describe),
  ];
  return {
    dir: root,
    schema,
    policies,
    warnings,
    sources: Object.fromEntries(
      Object.entries(sources).map(([id, { file, line }]) => [id, { file, line }] as const),
    ),
  };
}

const uid = (type: string, id: string): EntityUid => ({ type: `${NS}::${type}`, id });

/** Only the attributes that are known: an absent one means "not loaded yet" to the policies. */
function known(attrs: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) out[k] = v;
  return out;
}

/** The Cedar resource entity for a {@link Resource} (see vigil.cedarschema for the mapping's conventions). */
export function resourceEntity(r: Resource): EntityJson {
  switch (r.type) {
    case 'events':
    case 'devices':
    case 'enrollment-tokens':
    case 'configs':
    case 'rollouts':
      return r.site === undefined
        ? { uid: uid('Tenant', r.tenant), attrs: { tenant: r.tenant }, parents: [] }
        : {
            uid: uid('Site', `${r.tenant}/${r.site}`),
            attrs: { tenant: r.tenant, site: r.site },
            parents: [],
          };
    case 'webhooks':
    case 'alerts':
    case 'releases':
    case 'retention':
    case 'holds':
    case 'privacy':
      return { uid: uid('Tenant', r.tenant), attrs: { tenant: r.tenant }, parents: [] };
    case 'audit-log':
      return { uid: uid('AuditLog', r.tenant), attrs: { tenant: r.tenant }, parents: [] };
    case 'device':
      return {
        uid: uid('Device', `${r.tenant}/${r.id}`),
        // A device at no site is at site "": in nobody's `sites`.
        attrs: known({ tenant: r.tenant, site: r.site === null ? '' : r.site }),
        parents: [],
      };
    case 'event':
    case 'media':
      return {
        uid: uid(r.type === 'event' ? 'Event' : 'Media', `${r.tenant}/${r.id}`),
        attrs: known({ tenant: r.tenant, site: r.site, camera: r.camera, dataClass: r.dataClass }),
        parents: [],
      };
    default:
      throw new Error(`no Cedar entity for resource ${(r satisfies never as { type: string }).type}`);
  }
}

/** The Cedar principal entity for a verified principal. */
export function principalEntity(p: Principal): EntityJson {
  return {
    uid: uid('User', p.subject),
    attrs: {
      tenant: p.tenant,
      roles: [...p.roles],
      ...(p.sites === undefined ? {} : { sites: [...p.sites] }),
    },
    parents: [],
  };
}

let instances = 0;

interface Answer {
  decision: Decision;
  /** False for engine errors: they are counted each time and never remembered. */
  cacheable: boolean;
}

export interface CedarAuthorizerOptions {
  /** Default: {@link DEFAULT_POLICIES_DIR} (cloud/policies). */
  policiesDir?: string | undefined;
  log: Logger;
  /** Counts failed decisions in `vigil_cloud_authz_errors_total{engine="cedar"}`. */
  metrics?: Registry | undefined;
  /** Decisions remembered (least recently used dropped first); 0: none. Default {@link DEFAULT_DECISION_CACHE}. */
  cacheSize?: number | undefined;
}

/**
 * One Cedar call costs 0.1-0.3 ms (the wasm binding serializes the request and the entities as JSON both
 * ways); a remembered decision a few microseconds. The policies never change after the start, so a decision
 * is a pure function of what the policies can see of its input, and the cache is exact: the key
 * (auth/decision-key.ts) is the whole principal, the action, the resource type and tenant, and the resource
 * attributes the policies read; a single resource's id only when some policy names an entity of its type. So
 * `GET /v1/events/{id}` over many ids hits once per (user, site, data class), not once per id. Engine errors
 * are never cached.
 */
export const DEFAULT_DECISION_CACHE = 10_000;

/** Decisions remembered and reused, for tests and the benchmark. */
export interface DecisionCacheStats {
  hits: number;
  misses: number;
  size: number;
}

/** The decision plan of a loaded policy set: which entity types are named and which attributes are read. */
export function decisionKeyPlan(policies: CedarPolicies): DecisionKeyPlan {
  const ests = Object.entries(policies.policies).map(([id, text]) => {
    const json = policyToJson(text);
    if (json.type === 'failure') throw new ConfigError(`authz: Cedar could not convert policy ${id} to JSON`);
    return json.json;
  });
  return planFromPolicies(ests);
}

/** `vigil_cloud_authz_cache_total{result}`: decision cache hits and misses (engine calls). */
function cacheCounter(metrics: Registry): Counter<'result'> {
  const name = 'vigil_cloud_authz_cache_total';
  const existing = metrics.getSingleMetric(name);
  if (existing) return existing as Counter<'result'>;
  return new Counter({
    name,
    help: 'Authorization decisions answered from the decision cache (hit) or by the policy engine (miss)',
    labelNames: ['result'],
    registers: [metrics],
  });
}

/**
 * The Cedar policy decision point: loads and validates the policies once (a ConfigError fails the start),
 * keeps them parsed in the Cedar engine, and answers each request from two entities built from the principal
 * and the resource. Default deny: no permit, any forbid, or any error (an unknown action/resource combination,
 * an entity that does not fit the schema, an error inside a policy) is a deny. `reason` names the determining
 * policies by `@id`. Decisions are cached ({@link DEFAULT_DECISION_CACHE}).
 */
export function createCedarAuthorizer(
  opts: CedarAuthorizerOptions,
): Authorizer & { policies: CedarPolicies; plan: DecisionKeyPlan; cacheStats(): DecisionCacheStats } {
  const loaded = loadCedarPolicies(opts.policiesDir ?? DEFAULT_POLICIES_DIR);
  const plan = decisionKeyPlan(loaded);
  // The engine caches parsed sets per name in the process; each authorizer gets its own names.
  const key = `vigil-${process.pid}-${++instances}`;
  const schemaOk = preparseSchema(key, loaded.schema);
  const setOk = preparsePolicySet(key, { staticPolicies: { ...loaded.policies } });
  if (schemaOk.type === 'failure' || setOk.type === 'failure') {
    const errors = [
      ...(schemaOk.type === 'failure' ? schemaOk.errors : []),
      ...(setOk.type === 'failure' ? setOk.errors : []),
    ];
    throw new ConfigError(`authz: Cedar could not load the policies: ${errors.map(describe).join('; ')}`);
  }
  const errors = opts.metrics ? authzErrorCounter(opts.metrics) : undefined;
  const cacheResults = opts.metrics ? cacheCounter(opts.metrics) : undefined;
  const log = opts.log.child({ component: 'authz', engine: 'cedar' });
  log.info(
    { dir: loaded.dir, policies: Object.keys(loaded.policies).length },
    'Cedar policies loaded and validated',
  );
  for (const warning of loaded.warnings) log.warn({ warning }, 'Cedar policy warning');

  /** A decision Cedar could not make: a deny, logged and counted, never cached. */
  const failed = (action: Action, resource: Resource, what: string): Answer => {
    errors?.inc({ engine: 'cedar' });
    log.warn({ action, resource, error: what }, 'Cedar could not decide; denied');
    const reason = what.startsWith('invalid request: ') ? what : `cedar error: ${what}`;
    return { decision: { allowed: false, reason }, cacheable: false };
  };

  const decide = (principal: Principal, action: Action, resource: Resource, r: EntityJson): Answer => {
    let answer;
    try {
      const p = principalEntity(principal);
      answer = statefulIsAuthorized({
        principal: p.uid,
        action: uid('Action', action),
        resource: r.uid,
        context: {},
        preparsedSchemaName: key,
        preparsedPolicySetId: key,
        validateRequest: true,
        entities: [p, r],
      });
    } catch (err) {
      return failed(action, resource, (err as Error).message);
    }
    if (answer.type === 'failure') return failed(action, resource, answer.errors.map(describe).join('; '));
    const { decision, diagnostics } = answer.response;
    // An erroring policy is skipped by Cedar; an erroring forbid must not turn into an allow.
    if (diagnostics.errors.length > 0) {
      const what = diagnostics.errors.map((e) => `${e.policyId}: ${describe(e.error)}`).join('; ');
      return failed(action, resource, what);
    }
    const ids = [...diagnostics.reason].sort();
    const reason =
      decision === 'allow'
        ? `permit: ${ids.join(', ')}`
        : ids.length > 0
          ? `forbid: ${ids.join(', ')}`
          : `no policy permits ${action}`;
    return { decision: { allowed: decision === 'allow', reason }, cacheable: true };
  };

  const cacheSize = opts.cacheSize ?? DEFAULT_DECISION_CACHE;
  const cache = new Map<string, Decision>();
  const stats = { hits: 0, misses: 0 };
  const cached = (principal: Principal, action: Action, resource: Resource): Decision => {
    // The entities lose which collection a Tenant/Site scope stands for: check the pairing here.
    const invalid = invalidRequest(action, resource);
    if (invalid !== null) return failed(action, resource, invalid).decision;
    let r: EntityJson;
    try {
      r = resourceEntity(resource);
    } catch (err) {
      return failed(action, resource, (err as Error).message).decision;
    }
    if (cacheSize <= 0) return decide(principal, action, resource, r).decision;
    const k = decisionKey(plan, principal, action, resource, r);
    const hit = cache.get(k);
    if (hit) {
      stats.hits++;
      cacheResults?.inc({ result: 'hit' });
      cache.delete(k); // most recently used last
      cache.set(k, hit);
      return hit;
    }
    stats.misses++;
    cacheResults?.inc({ result: 'miss' });
    const { decision, cacheable } = decide(principal, action, resource, r);
    if (cacheable) {
      cache.set(k, decision);
      if (cache.size > cacheSize) cache.delete(cache.keys().next().value!);
    }
    return decision;
  };

  return {
    policies: loaded,
    plan,
    cacheStats: () => ({ ...stats, size: cache.size }),
    authorize: (principal, action, resource) => Promise.resolve(cached(principal, action, resource)),
  };
}
