import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
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
import type { Registry } from 'prom-client';
import { ConfigError } from '../lib/errors.js';
import { authzErrorCounter, type Action, type Authorizer, type Decision, type Resource } from './authorize.js';
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
  const shown = (file: string): string => relative(process.cwd(), join(root, file)) || file;
  const schema = readText(join(root, CEDAR_SCHEMA_FILE), 'the Cedar schema');
  const parsedSchema = checkParseSchema(schema);
  if (parsedSchema.type === 'failure') {
    throw new ConfigError(
      `authz: invalid Cedar schema:\n${parsedSchema.errors
        .map((e) => `  ${shown(CEDAR_SCHEMA_FILE)}:${lineAt(schema, e.sourceLocations?.[0]?.start ?? 0)}: ${describe(e)}`)
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
    throw new ConfigError(`authz: Cedar validation failed:\n${validation.errors.map((e) => `  ${describe(e)}`).join('\n')}`);
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
  return {
    dir: root,
    schema,
    policies,
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
      return r.site === undefined
        ? { uid: uid('Tenant', r.tenant), attrs: { tenant: r.tenant }, parents: [] }
        : { uid: uid('Site', `${r.tenant}/${r.site}`), attrs: { tenant: r.tenant, site: r.site }, parents: [] };
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

export interface CedarAuthorizerOptions {
  /** Default: {@link DEFAULT_POLICIES_DIR} (cloud/policies). */
  policiesDir?: string | undefined;
  log: Logger;
  /** Counts failed decisions in `vigil_cloud_authz_errors_total{engine="cedar"}`. */
  metrics?: Registry | undefined;
}

/**
 * The Cedar policy decision point: loads and validates the policies once (a ConfigError fails the start),
 * keeps them parsed in the Cedar engine, and answers each request from two entities built from the principal
 * and the resource. Default deny: no permit, any forbid, or any error (an unknown action/resource combination,
 * an entity that does not fit the schema, an error inside a policy) is a deny. `reason` names the determining
 * policies by `@id`.
 */
export function createCedarAuthorizer(opts: CedarAuthorizerOptions): Authorizer & { policies: CedarPolicies } {
  const loaded = loadCedarPolicies(opts.policiesDir ?? DEFAULT_POLICIES_DIR);
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
  const log = opts.log.child({ component: 'authz', engine: 'cedar' });
  log.info(
    { dir: loaded.dir, policies: Object.keys(loaded.policies).length },
    'Cedar policies loaded and validated',
  );

  const failed = (action: Action, resource: Resource, what: string): Decision => {
    errors?.inc({ engine: 'cedar' });
    log.warn({ action, resource, error: what }, 'Cedar could not decide; denied');
    return { allowed: false, reason: `cedar error: ${what}` };
  };

  const decide = (principal: Principal, action: Action, resource: Resource): Decision => {
    let answer;
    try {
      const p = principalEntity(principal);
      const r = resourceEntity(resource);
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
    if (diagnostics.errors.length > 0)
      return failed(
        action,
        resource,
        diagnostics.errors.map((e) => `${e.policyId}: ${describe(e.error)}`).join('; '),
      );
    const ids = [...diagnostics.reason].sort();
    if (decision === 'allow') return { allowed: true, reason: `permit: ${ids.join(', ')}` };
    return {
      allowed: false,
      reason: ids.length > 0 ? `forbid: ${ids.join(', ')}` : `no policy permits ${action}`,
    };
  };

  return {
    policies: loaded,
    authorize: (principal, action, resource) => Promise.resolve(decide(principal, action, resource)),
  };
}
