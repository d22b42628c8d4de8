import type { Principal } from './principal.js';

/**
 * Authorization seam. Every API handler asks `authorize(principal, action, resource)` before it touches
 * data; this module holds the only decision logic. The Cedar policy engine (and the OPA alternative) will
 * implement {@link Authorizer} and be passed to startCloud (`deps.authorizer`); handlers do not change.
 */

/** What a handler wants to do, `<resource kind>:<verb>`. Add actions here as routes arrive. */
export type Action =
  'events:read' | 'enrollment-tokens:create' | 'enrollment-tokens:read' | 'devices:read' | 'devices:revoke';

/**
 * What the action is applied to. A collection is addressed by its tenant; a single event by tenant and id.
 * Handlers authorize before they query, so a decision never depends on whether the row exists.
 */
export type Resource =
  | { readonly type: 'events'; readonly tenant: string }
  | { readonly type: 'event'; readonly tenant: string; readonly id: string }
  | { readonly type: 'devices'; readonly tenant: string }
  | { readonly type: 'device'; readonly tenant: string; readonly id: string }
  | { readonly type: 'enrollment-tokens'; readonly tenant: string; readonly site?: string };

export interface Decision {
  readonly allowed: boolean;
  /** Why, for the decision log (policy id, matched role...). Never sent to the client. */
  readonly reason: string;
}

export interface Authorizer {
  authorize(principal: Principal, action: Action, resource: Resource): Promise<Decision>;
}

/** Roles that may read a tenant's events until real policies exist. */
export const EVENT_READER_ROLES: readonly string[] = ['admin', 'operator', 'viewer', 'auditor'];

/** Roles that may mint and list enrollment tokens (installers enroll gateways on site). */
export const ENROLLMENT_TOKEN_ROLES: readonly string[] = ['admin', 'installer'];

/** Roles that may read a tenant's device registry (installers check the gateways they enroll). */
export const DEVICE_READER_ROLES: readonly string[] = ['admin', 'operator', 'viewer', 'auditor', 'installer'];

/** Roles that may revoke a device (cut a stolen gateway off). */
export const DEVICE_REVOKER_ROLES: readonly string[] = ['admin'];

const ROLE_GRANTS: Readonly<Record<Action, readonly string[]>> = {
  'events:read': EVENT_READER_ROLES,
  'enrollment-tokens:create': ENROLLMENT_TOKEN_ROLES,
  'enrollment-tokens:read': ENROLLMENT_TOKEN_ROLES,
  'devices:read': DEVICE_READER_ROLES,
  'devices:revoke': DEVICE_REVOKER_ROLES,
};

/**
 * The default until the policy engine lands: default deny; a principal may act only inside its own tenant,
 * and only with a role granted the action ({@link EVENT_READER_ROLES} for `events:read`).
 */
export function createRoleAuthorizer(): Authorizer {
  return {
    authorize(principal, action, resource) {
      if (resource.tenant !== principal.tenant)
        return Promise.resolve({ allowed: false, reason: 'resource belongs to another tenant' });
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
