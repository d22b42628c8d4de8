import { Counter, type Registry } from 'prom-client';
import type { Principal } from './principal.js';

/**
 * Authorization seam. Every API handler asks `authorize(principal, action, resource)` before it touches
 * data; the decision logic lives behind it. The default is the Cedar policy engine (auth/cedar.ts, policies in
 * cloud/policies), the alternative OPA (auth/opa.ts); `createRoleAuthorizer` is a fixed role table kept for
 * tests and as the benchmark baseline. Handlers do not know which one answers.
 */

/** What a handler wants to do, `<resource kind>:<verb>`. Add actions here (and to the policies) as routes arrive. */
export type Action =
  | 'events:read'
  | 'events:review'
  | 'enrollment-tokens:create'
  | 'enrollment-tokens:read'
  | 'devices:read'
  | 'devices:revoke'
  | 'audit:read'
  | 'media:read'
  | 'media:erase'
  | 'configs:read'
  | 'configs:write'
  | 'rollouts:read'
  | 'rollouts:write'
  | 'webhooks:read'
  | 'webhooks:write'
  | 'alerts:read'
  | 'alerts:write'
  | 'alerts:cancel'
  | 'releases:read'
  | 'releases:publish'
  | 'retention:read'
  | 'retention:write'
  | 'holds:read'
  | 'holds:write'
  | 'erasures:read'
  | 'erasures:write'
  | 'exports:create';

/** Every action, for tests and tables. */
export const ACTIONS: readonly Action[] = [
  'events:read',
  'events:review',
  'enrollment-tokens:create',
  'enrollment-tokens:read',
  'devices:read',
  'devices:revoke',
  'audit:read',
  'media:read',
  'media:erase',
  'configs:read',
  'configs:write',
  'rollouts:read',
  'rollouts:write',
  'webhooks:read',
  'webhooks:write',
  'alerts:read',
  'alerts:write',
  'alerts:cancel',
  'releases:read',
  'releases:publish',
  'retention:read',
  'retention:write',
  'holds:read',
  'holds:write',
  'erasures:read',
  'erasures:write',
  'exports:create',
];

/**
 * How sensitive a resource's content is. `metadata`: detections, device state; `media`: image and video bytes;
 * `personal`: data that identifies a person. Only `metadata` is covered by the ordinary read grants.
 */
export type DataClass = 'metadata' | 'media' | 'personal';

/**
 * What the action is applied to; every resource names its tenant.
 *
 * A collection (`events`, `devices`, `enrollment-tokens`) is addressed by its tenant and, when the request is
 * limited to one site, that `site`. A site-scoped principal (Principal.sites) is refused a collection without
 * a site.
 *
 * A single resource is asked about twice: before the query, with tenant and id only (role and tenant decide,
 * so that answer never depends on whether the row exists), then with the attributes of the loaded row
 * (`site`, `camera`, `dataClass`); a deny there is answered like a missing row (404). An attribute left out
 * means "not loaded yet"; a device at no site has `site: null`.
 */
export type Resource =
  | { readonly type: 'events'; readonly tenant: string; readonly site?: string | undefined }
  | {
      readonly type: 'event';
      readonly tenant: string;
      readonly id: string;
      readonly site?: string | undefined;
      readonly camera?: string | undefined;
      readonly dataClass?: DataClass | undefined;
    }
  | { readonly type: 'devices'; readonly tenant: string; readonly site?: string | undefined }
  | {
      readonly type: 'device';
      readonly tenant: string;
      readonly id: string;
      readonly site?: string | null | undefined;
    }
  | { readonly type: 'enrollment-tokens'; readonly tenant: string; readonly site?: string | undefined }
  | { readonly type: 'audit-log'; readonly tenant: string }
  /** Desired-state config documents and models of a tenant (or of one site: its site document). */
  | { readonly type: 'configs'; readonly tenant: string; readonly site?: string | undefined }
  /** Staged config rollouts of a tenant (a rollout is asked about as its tenant's collection). */
  | { readonly type: 'rollouts'; readonly tenant: string; readonly site?: string | undefined }
  /** Outgoing webhooks of a tenant: tenant-wide only (a webhook is asked about as its tenant's collection). */
  | { readonly type: 'webhooks'; readonly tenant: string }
  /** Agency alerts of a tenant (rules, targets, incidents, CAP messages): tenant-wide only. */
  | { readonly type: 'alerts'; readonly tenant: string }
  /**
   * The agent release repository (TUF, releases/). Read: addressed as the caller's own tenant (every tenant runs
   * the agent). Publish: addressed as `releases.publisherTenant`, so only that tenant's admins can sign in.
   */
  | { readonly type: 'releases'; readonly tenant: string }
  /** Retention policies and the retention check of a tenant (privacy/): tenant-wide only. */
  | { readonly type: 'retention'; readonly tenant: string }
  /** Legal holds and the two-admin setting of a tenant (privacy/): tenant-wide only. */
  | { readonly type: 'holds'; readonly tenant: string }
  /** Erasure requests and evidence exports of a tenant (privacy/): tenant-wide only. */
  | { readonly type: 'privacy'; readonly tenant: string }
  | {
      readonly type: 'media';
      readonly tenant: string;
      readonly id: string;
      readonly site?: string | undefined;
      readonly camera?: string | undefined;
      readonly dataClass?: DataClass | undefined;
    };

/**
 * Which resource types each action applies to (the Cedar schema's appliesTo, in API terms; the Rego
 * `applies_to` mirrors it). Any other pairing is a handler bug, and every engine denies it.
 */
export const ACTION_RESOURCE_TYPES: Readonly<Record<Action, readonly Resource['type'][]>> = {
  'events:read': ['events', 'event'],
  /** Marking one event reviewed (or not): asked about the event, like its read. */
  'events:review': ['event'],
  'devices:read': ['devices', 'device'],
  'devices:revoke': ['device'],
  'enrollment-tokens:create': ['enrollment-tokens'],
  'enrollment-tokens:read': ['enrollment-tokens'],
  'audit:read': ['audit-log'],
  'media:read': ['media'],
  'media:erase': ['media'],
  'configs:read': ['configs', 'device'],
  'configs:write': ['configs', 'device'],
  'rollouts:read': ['rollouts'],
  'rollouts:write': ['rollouts'],
  'webhooks:read': ['webhooks'],
  'webhooks:write': ['webhooks'],
  'alerts:read': ['alerts'],
  'alerts:write': ['alerts'],
  'alerts:cancel': ['alerts'],
  'releases:read': ['releases'],
  'releases:publish': ['releases'],
  'retention:read': ['retention'],
  'retention:write': ['retention'],
  'holds:read': ['holds'],
  'holds:write': ['holds'],
  'erasures:read': ['privacy'],
  'erasures:write': ['privacy'],
  'exports:create': ['privacy'],
};

/** Null when `action` applies to `resource`, else the reason to deny. */
export function invalidRequest(action: Action, resource: Resource): string | null {
  return ACTION_RESOURCE_TYPES[action]?.includes(resource.type)
    ? null
    : `invalid request: ${action} does not apply to ${resource.type}`;
}

export interface Decision {
  readonly allowed: boolean;
  /** Why, for the decision log (policy id, matched role...). Never sent to the client. */
  readonly reason: string;
}

export interface Authorizer {
  authorize(principal: Principal, action: Action, resource: Resource): Promise<Decision>;
}

/**
 * Every role the cloud knows: the roles cloud/policies grant something to (and the role table below). Any other
 * role in a token grants nothing. Tools (the CLI) list and check roles from here.
 */
export const ROLES: readonly string[] = ['admin', 'operator', 'viewer', 'auditor', 'installer'];

/** Roles that may read a tenant's events (the role table of {@link createRoleAuthorizer}). */
export const EVENT_READER_ROLES: readonly string[] = ['admin', 'operator', 'viewer', 'auditor'];

/** Roles that may mint and list enrollment tokens (installers enroll gateways on site). */
export const ENROLLMENT_TOKEN_ROLES: readonly string[] = ['admin', 'installer'];

/** Roles that may read a tenant's device registry (installers check the gateways they enroll). */
export const DEVICE_READER_ROLES: readonly string[] = ['admin', 'operator', 'viewer', 'auditor', 'installer'];

/** Roles that may revoke a device (cut a stolen gateway off). */
export const DEVICE_REVOKER_ROLES: readonly string[] = ['admin'];

const ROLE_GRANTS: Readonly<Record<Action, readonly string[]>> = {
  'events:read': EVENT_READER_ROLES,
  'events:review': ['admin', 'operator'],
  'enrollment-tokens:create': ENROLLMENT_TOKEN_ROLES,
  'enrollment-tokens:read': [...ENROLLMENT_TOKEN_ROLES, 'auditor'],
  'devices:read': DEVICE_READER_ROLES,
  'devices:revoke': DEVICE_REVOKER_ROLES,
  'audit:read': ['admin', 'auditor'],
  'media:read': ['admin', 'operator'],
  'media:erase': ['admin'],
  'configs:read': ['admin', 'operator', 'viewer', 'auditor'],
  'configs:write': ['admin'],
  'rollouts:read': ['admin', 'operator', 'viewer', 'auditor'],
  'rollouts:write': ['admin'],
  'webhooks:read': ['admin', 'auditor'],
  'webhooks:write': ['admin'],
  'alerts:read': ['admin', 'operator', 'auditor'],
  'alerts:write': ['admin'],
  'alerts:cancel': ['admin', 'operator'],
  'releases:read': ['admin', 'operator', 'viewer', 'auditor'],
  'releases:publish': ['admin'],
  'retention:read': ['admin', 'auditor'],
  'retention:write': ['admin'],
  'holds:read': ['admin', 'auditor'],
  'holds:write': ['admin'],
  'erasures:read': ['admin', 'auditor'],
  'erasures:write': ['admin'],
  'exports:create': ['admin'],
};

/**
 * The roles that may do `action` inside their tenant (on metadata: media and personal data need more). The
 * Cedar policies answer the same (cloud/test/auth-roles.test.ts holds them together).
 */
export function rolesGranted(action: Action): readonly string[] {
  return ROLE_GRANTS[action] ?? [];
}

/**
 * A fixed role table (the pre-Cedar default), for tests that inject it and as the benchmark baseline: default
 * deny; a principal may act only inside its own tenant, and only with a role granted the action. It knows
 * neither site scoping nor data classes, so it refuses site-scoped principals and anything but metadata.
 */
export function createRoleAuthorizer(): Authorizer {
  return {
    authorize(principal, action, resource) {
      const invalid = invalidRequest(action, resource);
      if (invalid !== null) return Promise.resolve({ allowed: false, reason: invalid });
      if (resource.tenant !== principal.tenant)
        return Promise.resolve({ allowed: false, reason: 'resource belongs to another tenant' });
      if (principal.sites !== undefined)
        return Promise.resolve({ allowed: false, reason: 'site-scoped principals need the policy engine' });
      if ('dataClass' in resource && resource.dataClass !== undefined && resource.dataClass !== 'metadata')
        return Promise.resolve({
          allowed: false,
          reason: `data class ${resource.dataClass} needs the policy engine`,
        });
      const granted = ROLE_GRANTS[action] ?? [];
      const role = principal.roles.find((r) => granted.includes(r));
      return Promise.resolve(
        role === undefined
          ? { allowed: false, reason: `no role of [${principal.roles.join(', ')}] grants ${action}` }
          : { allowed: true, reason: `role ${role} grants ${action}` },
      );
    },
  };
}

/** `vigil_cloud_authz_errors_total{engine}`: decisions the engine could not make (each one a deny). */
export function authzErrorCounter(metrics: Registry): Counter<'engine'> {
  const name = 'vigil_cloud_authz_errors_total';
  const existing = metrics.getSingleMetric(name);
  if (existing) return existing as Counter<'engine'>;
  return new Counter({
    name,
    help: 'Authorization decisions that failed (engine error, timeout, bad answer) and so denied, by engine',
    labelNames: ['engine'],
    registers: [metrics],
  });
}
