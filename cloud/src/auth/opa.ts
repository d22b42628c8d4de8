import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import {
  authzErrorCounter,
  type Action,
  type Authorizer,
  type Decision,
  type Resource,
} from './authorize.js';
import type { Principal } from './principal.js';

/** The decision document the Rego policies (infra/opa/vigil/authz.rego) define. */
export const OPA_DECISION_PATH = '/v1/data/vigil/authz';

/** Largest answer read from OPA; a decision is a few hundred bytes. */
const MAX_ANSWER_BYTES = 64 * 1024;

export interface OpaAuthorizerOptions {
  /** OPA's base URL, e.g. http://127.0.0.1:8181 (the decision is POSTed to `<url>/v1/data/vigil/authz`). */
  url: string;
  /** Longest wait for one decision; past it the request is denied. */
  timeoutMs: number;
  log: Logger;
  /** Counts failed decisions in `vigil_cloud_authz_errors_total{engine="opa"}`. */
  metrics?: Registry | undefined;
  /** Injected by tests; default: the global fetch. */
  fetch?: typeof fetch | undefined;
}

/** The OPA input: `{"input": {principal, action, resource}}`, the resource as the handler gave it. */
export function opaInput(
  principal: Principal,
  action: Action,
  resource: Resource,
): { input: { principal: Record<string, unknown>; action: Action; resource: Resource } } {
  return {
    input: {
      principal: {
        subject: principal.subject,
        tenant: principal.tenant,
        roles: [...principal.roles],
        ...(principal.sites === undefined ? {} : { sites: [...principal.sites] }),
      },
      action,
      resource,
    },
  };
}

class OpaAnswerError extends Error {}

async function readAnswer(res: Response): Promise<Decision> {
  if (!res.ok) throw new OpaAnswerError(`HTTP ${res.status}`);
  const text = await res.text();
  if (text.length > MAX_ANSWER_BYTES)
    throw new OpaAnswerError(`answer longer than ${MAX_ANSWER_BYTES} bytes`);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new OpaAnswerError('answer is not JSON');
  }
  // OPA answers {} (no `result`) when the path is undefined: the policy is not loaded.
  const result = (body as { result?: unknown } | null)?.result;
  if (result === undefined || result === null || typeof result !== 'object')
    throw new OpaAnswerError('no result: is the vigil.authz policy loaded?');
  const { allow, reason } = result as { allow?: unknown; reason?: unknown };
  if (typeof allow !== 'boolean') throw new OpaAnswerError('result.allow is not a boolean');
  return {
    allowed: allow,
    reason: typeof reason === 'string' && reason !== '' ? reason : `opa: ${allow ? 'allow' : 'deny'}`,
  };
}

/**
 * Open Policy Agent as the decision point: one POST per decision to `<url>/v1/data/vigil/authz`, reading
 * `{"result": {"allow": bool, "reason": string}}`. Fails closed: a timeout, a connection error, a non-2xx
 * status or an answer of any other shape is a deny, logged and counted in
 * `vigil_cloud_authz_errors_total{engine="opa"}`.
 */
export function createOpaAuthorizer(opts: OpaAuthorizerOptions): Authorizer {
  const endpoint = `${opts.url.replace(/\/+$/, '')}${OPA_DECISION_PATH}`;
  const doFetch = opts.fetch ?? fetch;
  const errors = opts.metrics ? authzErrorCounter(opts.metrics) : undefined;
  const log = opts.log.child({ component: 'authz', engine: 'opa' });
  log.info({ endpoint, timeoutMs: opts.timeoutMs }, 'authorization by OPA');

  return {
    async authorize(principal, action, resource) {
      try {
        const res = await doFetch(endpoint, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json' },
          body: JSON.stringify(opaInput(principal, action, resource)),
          signal: AbortSignal.timeout(opts.timeoutMs),
        });
        return await readAnswer(res);
      } catch (err) {
        const e = err as Error;
        const what =
          e.name === 'TimeoutError' || e.name === 'AbortError'
            ? `no answer within ${opts.timeoutMs} ms`
            : e instanceof OpaAnswerError
              ? e.message
              : `unreachable: ${e.message}`;
        errors?.inc({ engine: 'opa' });
        log.warn({ action, resource, error: what }, 'OPA could not decide; denied');
        return { allowed: false, reason: `opa error: ${what}` };
      }
    },
  };
}
