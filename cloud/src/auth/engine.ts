import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { CloudConfig } from '../config/schema.js';
import type { Authorizer } from './authorize.js';
import { createCedarAuthorizer } from './cedar.js';
import { createOpaAuthorizer } from './opa.js';

/**
 * The authorizer named by config `authz`: Cedar (default; loads and validates the policies now, so a bad
 * policy fails the start with a ConfigError) or OPA.
 */
export function createAuthorizerFromConfig(
  authz: CloudConfig['authz'],
  log: Logger,
  metrics: Registry,
): Authorizer {
  if (authz.engine === 'opa') {
    // The schema requires opaUrl for this engine.
    return createOpaAuthorizer({ url: authz.opaUrl ?? '', timeoutMs: authz.opaTimeoutMs, log, metrics });
  }
  return createCedarAuthorizer({ policiesDir: authz.policiesDir, log, metrics });
}
