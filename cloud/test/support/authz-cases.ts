import type { Action, Resource } from '../../src/auth/authorize.js';
import type { Principal } from '../../src/auth/principal.js';

/**
 * The authorization decision table: what cloud/policies (Cedar) and infra/opa (Rego) must both answer. Written
 * from the policy summary in cloud/policies/README.md, not derived from the policies.
 */
export interface AuthzCase {
  readonly name: string;
  readonly principal: Principal;
  readonly action: Action;
  readonly resource: Resource;
  readonly allowed: boolean;
  /** When set, the reason must match (policy ids). */
  readonly reason?: RegExp;
}

export const ROLES = ['admin', 'operator', 'viewer', 'installer', 'auditor'] as const;
export type Role = (typeof ROLES)[number];

const user = (roles: readonly string[], extra: { tenant?: string; sites?: string[] } = {}): Principal => ({
  subject: `user-${roles.join('+') || 'none'}`,
  tenant: extra.tenant ?? 'acme',
  roles,
  ...(extra.sites ? { sites: extra.sites } : {}),
});

/**
 * Representative resources of one tenant for each action: the collection (whole tenant and one site) and,
 * for single resources, the first question (nothing loaded) and the second (loaded, metadata).
 */
function resourcesFor(action: Action, tenant: string): Resource[] {
  switch (action) {
    case 'events:read':
      return [
        { type: 'events', tenant },
        { type: 'events', tenant, site: 'hq' },
        { type: 'event', tenant, id: 'e1' },
        { type: 'event', tenant, id: 'e1', site: 'hq', camera: 'lobby', dataClass: 'metadata' },
      ];
    case 'events:review':
      return [
        { type: 'event', tenant, id: 'e1' },
        { type: 'event', tenant, id: 'e1', site: 'hq', camera: 'lobby', dataClass: 'metadata' },
      ];
    case 'devices:read':
      return [
        { type: 'devices', tenant },
        { type: 'devices', tenant, site: 'hq' },
        { type: 'device', tenant, id: 'gw1' },
        { type: 'device', tenant, id: 'gw1', site: 'hq' },
      ];
    case 'devices:revoke':
      return [
        { type: 'device', tenant, id: 'gw1' },
        { type: 'device', tenant, id: 'gw1', site: 'hq' },
      ];
    case 'enrollment-tokens:create':
      return [
        { type: 'enrollment-tokens', tenant },
        { type: 'enrollment-tokens', tenant, site: 'hq' },
      ];
    case 'enrollment-tokens:read':
      return [{ type: 'enrollment-tokens', tenant }];
    case 'audit:read':
      return [{ type: 'audit-log', tenant }];
    case 'webhooks:read':
    case 'webhooks:write':
      return [{ type: 'webhooks', tenant }];
    case 'alerts:read':
    case 'alerts:write':
    case 'alerts:cancel':
      return [{ type: 'alerts', tenant }];
    case 'releases:read':
    case 'releases:publish':
      return [{ type: 'releases', tenant }];
    case 'retention:read':
    case 'retention:write':
      return [{ type: 'retention', tenant }];
    case 'holds:read':
    case 'holds:write':
      return [{ type: 'holds', tenant }];
    case 'erasures:read':
    case 'erasures:write':
    case 'exports:create':
      return [{ type: 'privacy', tenant }];
    case 'rollouts:read':
    case 'rollouts:write':
      return [
        { type: 'rollouts', tenant },
        { type: 'rollouts', tenant, site: 'hq' },
      ];
    case 'configs:read':
    case 'configs:write':
      return [
        { type: 'configs', tenant },
        { type: 'configs', tenant, site: 'hq' },
        { type: 'device', tenant, id: 'gw1' },
        { type: 'device', tenant, id: 'gw1', site: 'hq' },
      ];
    case 'media:read':
    case 'media:erase':
      return [
        { type: 'media', tenant, id: 'm1' },
        { type: 'media', tenant, id: 'm1', site: 'hq', camera: 'lobby', dataClass: 'media' },
      ];
  }
}

/** Who may do what in their own tenant (media: the media data class; personal data is in DATA_CLASS_CASES). */
export const GRANTS: Readonly<Record<Action, readonly Role[]>> = {
  'events:read': ['admin', 'operator', 'viewer', 'auditor'],
  'events:review': ['admin', 'operator'],
  'devices:read': ['admin', 'operator', 'viewer', 'installer', 'auditor'],
  'devices:revoke': ['admin'],
  'enrollment-tokens:create': ['admin', 'installer'],
  'enrollment-tokens:read': ['admin', 'installer', 'auditor'],
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

const ALL_ACTIONS = Object.keys(GRANTS) as Action[];

const describeResource = (r: Resource): string =>
  `${r.type}${'id' in r ? `/${r.id}` : ''}${Object.entries(r)
    .filter(([k]) => !['type', 'tenant', 'id'].includes(k))
    .map(([k, v]) => ` ${k}=${String(v)}`)
    .join('')}@${r.tenant}`;

/** Every role × every action × its resources, own tenant: allowed exactly as GRANTS says. */
export const ROLE_CASES: AuthzCase[] = ROLES.flatMap((role) =>
  ALL_ACTIONS.flatMap((action) =>
    resourcesFor(action, 'acme').map((resource) => {
      const allowed = GRANTS[action].includes(role);
      return {
        name: `${role} ${action} ${describeResource(resource)}`,
        principal: user([role]),
        action,
        resource,
        allowed,
        reason: allowed ? /^permit: / : new RegExp(`^no policy permits ${action}$`),
      };
    }),
  ),
);

/** Every role × every action on another tenant's resources: denied by the tenant-isolation forbid. */
export const CROSS_TENANT_CASES: AuthzCase[] = ROLES.flatMap((role) =>
  ALL_ACTIONS.flatMap((action) =>
    resourcesFor(action, 'globex').map((resource) => ({
      name: `${role}@acme ${action} ${describeResource(resource)}`,
      principal: user([role]),
      action,
      resource,
      allowed: false,
      reason: /^forbid: .*tenant-isolation/,
    })),
  ),
);

const personalEvent: Resource = {
  type: 'event',
  tenant: 'acme',
  id: 'e2',
  site: 'hq',
  camera: 'lobby',
  dataClass: 'personal',
};
const personalMedia: Resource = {
  type: 'media',
  tenant: 'acme',
  id: 'm2',
  site: 'hq',
  camera: 'lobby',
  dataClass: 'personal',
};
const mediaEvent: Resource = { ...personalEvent, id: 'e3', dataClass: 'media' };

/** media and personal data need an explicit permit: admin for both, operator for media only. */
export const DATA_CLASS_CASES: AuthzCase[] = ROLES.flatMap((role): AuthzCase[] => [
  {
    name: `${role} events:read personal event`,
    principal: user([role]),
    action: 'events:read',
    resource: personalEvent,
    allowed: role === 'admin',
  },
  {
    name: `${role} events:read event classified media`,
    principal: user([role]),
    action: 'events:read',
    resource: mediaEvent,
    allowed: role === 'admin',
  },
  {
    name: `${role} media:read personal media`,
    principal: user([role]),
    action: 'media:read',
    resource: personalMedia,
    allowed: role === 'admin',
  },
  {
    name: `${role} media:read media at another tenant`,
    principal: user([role]),
    action: 'media:read',
    resource: { ...personalMedia, tenant: 'globex', dataClass: 'media' },
    allowed: false,
    reason: /tenant-isolation/,
  },
]);

const scoped = (roles: string[], sites: string[] = ['hq']): Principal => user(roles, { sites });

/** Site-scoped users (a `sites` claim): only resources at their sites, never tenant-wide. */
export const SITE_CASES: AuthzCase[] = [
  // Collections: a site must be named, and be one of theirs.
  ...(['operator', 'viewer', 'admin'] as const).flatMap((role): AuthzCase[] => [
    {
      name: `scoped ${role} lists events of the whole tenant`,
      principal: scoped([role]),
      action: 'events:read',
      resource: { type: 'events', tenant: 'acme' },
      allowed: false,
      reason: /^forbid: site-scope$/,
    },
    {
      name: `scoped ${role} lists events of its site`,
      principal: scoped([role]),
      action: 'events:read',
      resource: { type: 'events', tenant: 'acme', site: 'hq' },
      allowed: true,
    },
    {
      name: `scoped ${role} lists events of another site`,
      principal: scoped([role]),
      action: 'events:read',
      resource: { type: 'events', tenant: 'acme', site: 'lab' },
      allowed: false,
      reason: /^forbid: site-scope$/,
    },
    {
      name: `scoped ${role} lists devices of the whole tenant`,
      principal: scoped([role]),
      action: 'devices:read',
      resource: { type: 'devices', tenant: 'acme' },
      allowed: false,
      reason: /site-scope/,
    },
    {
      name: `scoped ${role} lists devices of its site`,
      principal: scoped([role]),
      action: 'devices:read',
      resource: { type: 'devices', tenant: 'acme', site: 'hq' },
      allowed: true,
    },
    // Single resources: the first question (nothing loaded) passes, the second decides by the site.
    {
      name: `scoped ${role} asks for an event before loading it`,
      principal: scoped([role]),
      action: 'events:read',
      resource: { type: 'event', tenant: 'acme', id: 'e1' },
      allowed: true,
    },
    {
      name: `scoped ${role} reads an event of its site`,
      principal: scoped([role]),
      action: 'events:read',
      resource: { type: 'event', tenant: 'acme', id: 'e1', site: 'hq', camera: 'c', dataClass: 'metadata' },
      allowed: true,
    },
    {
      name: `scoped ${role} reads an event of another site`,
      principal: scoped([role]),
      action: 'events:read',
      resource: { type: 'event', tenant: 'acme', id: 'e1', site: 'lab', camera: 'c', dataClass: 'metadata' },
      allowed: false,
      reason: /^forbid: site-scope$/,
    },
    {
      name: `scoped ${role} reads a device of its site`,
      principal: scoped([role]),
      action: 'devices:read',
      resource: { type: 'device', tenant: 'acme', id: 'gw1', site: 'hq' },
      allowed: true,
    },
    {
      name: `scoped ${role} reads a device of another site`,
      principal: scoped([role]),
      action: 'devices:read',
      resource: { type: 'device', tenant: 'acme', id: 'gw1', site: 'lab' },
      allowed: false,
      reason: /site-scope/,
    },
    {
      name: `scoped ${role} reads a device at no site`,
      principal: scoped([role]),
      action: 'devices:read',
      resource: { type: 'device', tenant: 'acme', id: 'gw1', site: null },
      allowed: false,
      reason: /site-scope/,
    },
  ]),
  {
    name: 'scoped admin revokes a device of its site',
    principal: scoped(['admin']),
    action: 'devices:revoke',
    resource: { type: 'device', tenant: 'acme', id: 'gw1', site: 'hq' },
    allowed: true,
  },
  {
    name: 'scoped admin revokes a device of another site',
    principal: scoped(['admin']),
    action: 'devices:revoke',
    resource: { type: 'device', tenant: 'acme', id: 'gw1', site: 'lab' },
    allowed: false,
    reason: /^forbid: site-scope$/,
  },
  {
    name: 'scoped admin reads the audit log (tenant-wide)',
    principal: scoped(['admin']),
    action: 'audit:read',
    resource: { type: 'audit-log', tenant: 'acme' },
    allowed: false,
    reason: /^forbid: site-scope$/,
  },
  {
    name: 'scoped auditor reads the audit log (tenant-wide)',
    principal: scoped(['auditor']),
    action: 'audit:read',
    resource: { type: 'audit-log', tenant: 'acme' },
    allowed: false,
    reason: /site-scope/,
  },
  {
    name: 'scoped installer mints a token for its site',
    principal: scoped(['installer']),
    action: 'enrollment-tokens:create',
    resource: { type: 'enrollment-tokens', tenant: 'acme', site: 'hq' },
    allowed: true,
  },
  {
    name: 'scoped installer mints a token for another site',
    principal: scoped(['installer']),
    action: 'enrollment-tokens:create',
    resource: { type: 'enrollment-tokens', tenant: 'acme', site: 'lab' },
    allowed: false,
    reason: /^forbid: site-scope$/,
  },
  {
    name: 'scoped installer lists every token of the tenant',
    principal: scoped(['installer']),
    action: 'enrollment-tokens:read',
    resource: { type: 'enrollment-tokens', tenant: 'acme' },
    allowed: false,
    reason: /site-scope/,
  },
  {
    name: 'scoped operator sees media of its site',
    principal: scoped(['operator']),
    action: 'media:read',
    resource: { type: 'media', tenant: 'acme', id: 'm1', site: 'hq', camera: 'c', dataClass: 'media' },
    allowed: true,
  },
  {
    name: 'scoped operator sees media of another site',
    principal: scoped(['operator']),
    action: 'media:read',
    resource: { type: 'media', tenant: 'acme', id: 'm1', site: 'lab', camera: 'c', dataClass: 'media' },
    allowed: false,
    reason: /site-scope/,
  },
  {
    name: 'several sites: the second one counts too',
    principal: scoped(['viewer'], ['hq', 'lab']),
    action: 'events:read',
    resource: { type: 'events', tenant: 'acme', site: 'lab' },
    allowed: true,
  },
  {
    name: 'an empty sites claim scopes the user to no site',
    principal: scoped(['admin'], []),
    action: 'devices:read',
    resource: { type: 'devices', tenant: 'acme', site: 'hq' },
    allowed: false,
    reason: /site-scope/,
  },
  {
    name: 'a site-scoped admin of another tenant',
    principal: user(['admin'], { tenant: 'globex', sites: ['hq'] }),
    action: 'events:read',
    resource: { type: 'events', tenant: 'acme', site: 'hq' },
    allowed: false,
    reason: /^forbid: tenant-isolation$/,
  },
];

/** Default deny and role combinations. */
export const OTHER_CASES: AuthzCase[] = [
  ...ALL_ACTIONS.flatMap((action): AuthzCase[] =>
    resourcesFor(action, 'acme').flatMap((resource): AuthzCase[] => [
      {
        name: `no roles ${action} ${describeResource(resource)}`,
        principal: user([]),
        action,
        resource,
        allowed: false,
        reason: /^no policy permits /,
      },
      {
        name: `unknown role ${action} ${describeResource(resource)}`,
        principal: user(['superuser', 'Admin']),
        action,
        resource,
        allowed: false,
      },
    ]),
  ),
  {
    name: 'roles add up: viewer+installer reads events',
    principal: user(['viewer', 'installer']),
    action: 'events:read',
    resource: { type: 'events', tenant: 'acme' },
    allowed: true,
  },
  {
    name: 'roles add up: viewer+installer mints tokens',
    principal: user(['viewer', 'installer']),
    action: 'enrollment-tokens:create',
    resource: { type: 'enrollment-tokens', tenant: 'acme', site: 'hq' },
    allowed: true,
  },
  {
    name: 'roles add up: operator+viewer still may not revoke',
    principal: user(['operator', 'viewer']),
    action: 'devices:revoke',
    resource: { type: 'device', tenant: 'acme', id: 'gw1' },
    allowed: false,
  },
];

/** Requests the schema does not allow (an action on the wrong kind of resource): denied, even for admins. */
export const INVALID_REQUEST_CASES: AuthzCase[] = [
  {
    name: 'admin revokes a collection',
    principal: user(['admin']),
    action: 'devices:revoke',
    resource: { type: 'devices', tenant: 'acme' },
    allowed: false,
  },
  {
    name: 'admin reads the audit log as events',
    principal: user(['admin']),
    action: 'events:read',
    resource: { type: 'audit-log', tenant: 'acme' },
    allowed: false,
  },
  {
    name: 'admin reads media as an event',
    principal: user(['admin']),
    action: 'media:read',
    resource: { type: 'event', tenant: 'acme', id: 'e1' },
    allowed: false,
  },
];

export const ALL_CASES: AuthzCase[] = [
  ...ROLE_CASES,
  ...CROSS_TENANT_CASES,
  ...DATA_CLASS_CASES,
  ...SITE_CASES,
  ...OTHER_CASES,
  ...INVALID_REQUEST_CASES,
];
