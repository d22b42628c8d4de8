import type { EntityJson, EntityUidJson } from '@cedar-policy/cedar-wasm/nodejs';
import type { Action, Resource } from './authorize.js';
import type { Principal } from './principal.js';

/*
 * The decision cache key (auth/cedar.ts). A Cedar decision is a pure function of the request: the principal
 * and resource entities, the action and the (empty) context. A policy sees a resource only through
 *   - its entity type (`is`, scope constraints),
 *   - its uid, compared with an entity literal (`==`, `in`: our entities have no parents, so `in` is `==`),
 *   - its attributes, read by name (`resource.site`, `resource has dataClass`).
 * So when no policy names an entity literal of the resource's type, two resources of one type whose
 * attributes read by the policies are equal get the same decision whatever their ids: the key can leave the
 * id out (every random GET /v1/events/{id} was a miss before, two engine calls per request). An attribute no
 * policy names (e.g. `camera` today) is left out the same way. The analysis only ever narrows: anything that
 * looks like an entity literal puts ids back into the key for that type, any string under an `attr` key anywhere
 * counts as read. The key always holds the whole principal (subject, tenant, roles, sites), the action, the
 * API resource type (two collections share one Cedar type) and the resource's tenant.
 */

export interface DecisionKeyPlan {
  /** Cedar entity types named as a literal in some policy: for resources of these types the id is in the key. */
  readonly literalTypes: ReadonlySet<string>;
  /** Every attribute name some policy reads (`.attr`, `has attr`), on any entity. */
  readonly attributes: ReadonlySet<string>;
}

/** Walks the policies' JSON (Cedar EST, `policyToJson`) for entity literals and attribute names. */
export function planFromPolicies(policies: readonly unknown[]): DecisionKeyPlan {
  const literalTypes = new Set<string>();
  const attributes = new Set<string>();
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) {
      for (const n of node) walk(n);
      return;
    }
    if (node === null || typeof node !== 'object') return;
    const o = node as Record<string, unknown>;
    // `{"type": "Vigil::Event", "id": "..."}`: a scope entity or the inside of an `__entity` literal.
    if (typeof o.type === 'string' && typeof o.id === 'string') literalTypes.add(o.type);
    // An unparsed or unusual literal form (`__entity` as a string) counts too: narrower, never wider.
    if (typeof o.__entity === 'string') literalTypes.add('*');
    if (typeof o.attr === 'string') attributes.add(o.attr);
    for (const v of Object.values(o)) walk(v);
  };
  walk(policies);
  return { literalTypes, attributes };
}

/**
 * The key of a decision: equal keys must mean equal decisions. `resourceEntity` is the entity sent to Cedar
 * for `resource` (the attributes as the policies see them, e.g. a device at no site as `site: ""`).
 */
export function decisionKey(
  plan: DecisionKeyPlan,
  principal: Principal,
  action: Action,
  resource: Resource,
  resourceEntity: EntityJson,
): string {
  const uid = typeAndId(resourceEntity.uid);
  const type = uid.type;
  const idMatters = plan.literalTypes.has(type) || plan.literalTypes.has('*');
  const attrs = resourceEntity.attrs ?? {};
  const seen: Array<string | null> = [];
  // Every attribute, sorted by name: one the policies read is keyed by name and value (an absent one is not
  // in the list, so `has` sees the difference), one they never read not at all.
  for (const name of Object.keys(attrs).sort())
    if (plan.attributes.has(name)) seen.push(name, JSON.stringify(attrs[name]));
  return JSON.stringify([
    principal.subject,
    principal.tenant,
    principal.roles,
    principal.sites ?? null,
    action,
    resource.type,
    resource.tenant,
    type,
    idMatters ? uid.id : null,
    seen,
  ]);
}

function typeAndId(uid: EntityUidJson): { type: string; id: string } {
  return '__entity' in uid ? uid.__entity : uid;
}
