import { z } from 'zod';
import type { ApiOperation } from '../api/openapi.js';
import {
  cameraRangeShape,
  checkRange,
  dataClass,
  holdKind,
  holdState,
  idToken,
  policyScope,
  reason,
  timestamp,
  trackId,
} from './schemas.js';

/*
 * Request and response schemas of the retention and legal hold routes (privacy/routes.ts), and their entries in
 * the route registry (api/openapi.ts). Tenant-wide: a site-scoped user is refused by the policies.
 */

const policyKeyShape = {
  scope: policyScope,
  site_id: idToken.optional(),
  device_id: idToken.optional(),
  camera_id: idToken.optional(),
  data_class: dataClass,
};

type KeyInput = z.output<z.ZodObject<typeof policyKeyShape>>;

function checkKey(k: KeyInput, ctx: z.RefinementCtx): void {
  const want: Record<KeyInput['scope'], Array<'site_id' | 'device_id' | 'camera_id'>> = {
    tenant: [],
    site: ['site_id'],
    camera: ['device_id', 'camera_id'],
  };
  for (const f of ['site_id', 'device_id', 'camera_id'] as const) {
    const needed = want[k.scope].includes(f);
    if (needed && k[f] === undefined)
      ctx.addIssue({ code: 'custom', path: [f], message: `required for scope ${k.scope}` });
    if (!needed && k[f] !== undefined)
      ctx.addIssue({ code: 'custom', path: [f], message: `not allowed for scope ${k.scope}` });
  }
  if (k.data_class === 'audit')
    ctx.addIssue({
      code: 'custom',
      path: ['data_class'],
      message:
        'audit entries keep a fixed retention: the audit log is one hash chain shared by every tenant, and ' +
        'deleting some entries would break it (see `retention check`)',
    });
}

export const policyKeyBody = z.strictObject(policyKeyShape).superRefine(checkKey);

export const setPolicyBody = z
  .strictObject({
    ...policyKeyShape,
    max_age_hours: z.number().int().min(1).max(876_000).optional(),
    max_age_days: z.number().int().min(1).max(36_500).optional(),
    max_bytes: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
  })
  .superRefine((b, ctx) => {
    checkKey(b, ctx);
    if (b.max_age_hours !== undefined && b.max_age_days !== undefined)
      ctx.addIssue({ code: 'custom', path: ['max_age_days'], message: 'give max_age_hours or max_age_days' });
    if (b.max_age_hours === undefined && b.max_age_days === undefined && b.max_bytes === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['max_bytes'],
        message: 'a policy sets max_age_hours, max_age_days or max_bytes',
      });
  });

export const policyViewSchema = z
  .object({
    scope: policyScope,
    site_id: z.string(),
    device_id: z.string(),
    camera_id: z.string(),
    data_class: dataClass,
    max_age_hours: z.number().int().nullable(),
    max_bytes: z.number().int().nullable(),
    updated_by: z.string(),
    updated_at: timestamp,
  })
  .meta({ id: 'RetentionPolicy', description: 'A retention policy ("" where the scope has no such id).' });

export const policyListSchema = z
  .object({
    defaults: z.record(z.string(), z.object({ max_age_hours: z.number().int().nullable() })),
    audit: z.object({ policy: z.literal('fixed'), why: z.string() }),
    items: z.array(policyViewSchema),
  })
  .meta({ id: 'RetentionPolicyList', description: 'The config defaults and the tenant’s policies.' });

export const checkQuery = z.strictObject({
  limit: z
    .string()
    .regex(/^\d{1,3}$/, 'must be an integer from 1 to 100')
    .transform(Number)
    .refine((n) => n >= 1 && n <= 100, 'must be an integer from 1 to 100')
    .optional(),
});

const itemDue = z.object({
  id: z.string(),
  at: timestamp,
  due_at: timestamp.nullable(),
  reason: z.enum(['age', 'size']),
  scope: z.string(),
});
export const retentionReportSchema = z
  .object({
    tenant_id: z.string(),
    checked_at: timestamp,
    kept_past_policy: z.number().int(),
    held_past_policy: z.number().int(),
    classes: z.array(
      z.object({
        data_class: dataClass,
        age: z.array(z.record(z.string(), z.unknown())),
        size: z.array(z.record(z.string(), z.unknown())),
        kept_past_policy: z.array(itemDue),
        held: z.array(itemDue),
        next_deletions: z.array(itemDue),
      }),
    ),
    audit: z.object({
      data_class: z.literal('audit'),
      entries: z.number().int(),
      oldest_at: timestamp.nullable(),
      policy: z.literal('fixed'),
      why: z.string(),
    }),
  })
  .meta({ id: 'RetentionReport', description: 'What is kept past its policy, held, and goes next.' });

export const placeHoldBody = z
  .discriminatedUnion('kind', [
    z.strictObject({ kind: z.literal('event'), event_id: z.uuid(), reason }),
    z.strictObject({
      kind: z.literal('track'),
      device_id: idToken,
      camera_id: idToken,
      track_id: trackId,
      reason,
    }),
    z.strictObject({ kind: z.literal('device'), device_id: idToken, reason }),
    z.strictObject({ kind: z.literal('camera_range'), ...cameraRangeShape, reason }),
  ])
  .superRefine((b, ctx) => {
    if (b.kind === 'camera_range') checkRange(b, ctx);
  });

export const holdPathParams = z.strictObject({ id: z.uuid() });
export const releaseHoldBody = z.strictObject({ reason });
export const approveHoldBody = z.strictObject({ note: reason.optional() });
export const listHoldsQuery = z.strictObject({
  state: z.enum(['effective', 'pending', 'released', 'all']).optional(),
  limit: checkQuery.shape.limit.unwrap().optional(),
});
export const privacySettingsBody = z.strictObject({ holds_two_admin: z.boolean() });

export const holdViewSchema = z
  .object({
    id: z.uuid(),
    kind: holdKind,
    event_id: z.string().nullable(),
    device_id: z.string().nullable(),
    camera_id: z.string().nullable(),
    track_id: z.string().nullable(),
    from: timestamp.nullable(),
    to: timestamp.nullable(),
    reason: z.string(),
    state: holdState,
    effective: z.boolean(),
    placed_by: z.string(),
    placed_at: timestamp,
    approved_by: z.string().nullable(),
    release_requested_by: z.string().nullable(),
    release_requested_at: timestamp.nullable(),
    released_by: z.string().nullable(),
    released_at: timestamp.nullable(),
    release_reason: z.string().nullable(),
  })
  .meta({
    id: 'LegalHold',
    description: 'A legal hold; `effective`: retention and erasure skip what it covers.',
  });
export const holdListSchema = z.object({ items: z.array(holdViewSchema) }).meta({ id: 'LegalHoldList' });
export const privacySettingsSchema = z
  .object({ holds_two_admin: z.boolean(), two_admin_off_requested_by: z.string().nullable() })
  .meta({ id: 'PrivacySettings' });

const READERS = ['admin', 'auditor'] as const;
/** Admins write, on the caller's tenant's retention or holds. */
const writes = <T extends 'retention' | 'holds'>(type: T) => ({
  action: `${type}:write` as const,
  roles: ['admin'],
  resource: ({ tenant }: { tenant: string }) => ({ type, tenant }),
});
const retentionWrite = writes('retention');
const holdsWrite = writes('holds');
const base = { mount: '/v1' as const, tag: 'Retention and legal holds' };

/** The retention and legal hold routes for the registry (api/openapi.ts). */
export function privacyOperations(): ApiOperation[] {
  return [
    {
      ...base,
      method: 'get',
      path: '/retention/policies',
      operationId: 'listRetentionPolicies',
      summary: 'List retention policies',
      authorization: { action: 'retention:read', roles: READERS },
      success: { status: 200, description: 'Defaults and policies.', schema: policyListSchema },
    },
    {
      ...base,
      method: 'post',
      path: '/retention/policies',
      operationId: 'setRetentionPolicy',
      summary: 'Set a retention policy',
      description:
        'Creates or replaces the policy of a scope (tenant, site, or a device’s camera) and data class: an age ' +
        'limit, a size budget (oldest deleted first) or both. Each is resolved from the most specific scope that ' +
        'sets it (camera > site > tenant > config default). Audited `retention_policy.set`.',
      authorization: retentionWrite,
      body: setPolicyBody,
      success: { status: 200, description: 'The policy.', schema: policyViewSchema },
      errors: [404, 409],
    },
    {
      ...base,
      method: 'post',
      path: '/retention/policies/delete',
      operationId: 'deleteRetentionPolicy',
      summary: 'Delete a retention policy',
      description: 'The next less specific scope governs again. Audited `retention_policy.delete`.',
      authorization: retentionWrite,
      body: policyKeyBody,
      success: { status: 200, description: 'Deleted.', schema: z.object({ deleted: z.literal(true) }) },
      errors: [404],
    },
    {
      ...base,
      method: 'get',
      path: '/retention/check',
      operationId: 'checkRetention',
      summary: 'What is kept past its policy, held, and goes next',
      description:
        'Per data class: items kept past their policy (none once retention ran), items a legal hold keeps past ' +
        'it, and the next deletions with their time; per scope, counts and bytes.',
      authorization: { action: 'retention:read', roles: READERS },
      query: checkQuery,
      queryDocs: { limit: 'Items listed per list and class (1 to 100, default 10).' },
      success: { status: 200, description: 'The report.', schema: retentionReportSchema },
    },
    {
      ...base,
      method: 'post',
      path: '/holds',
      operationId: 'placeHold',
      summary: 'Place a legal hold',
      description:
        'On an event, a track (device, camera, track id), a camera of a device over [from, to), or a device. ' +
        'Under the two-admin rule the hold is `place_pending` until another admin approves it. Audited.',
      authorization: holdsWrite,
      body: placeHoldBody,
      success: { status: 201, description: 'The hold.', schema: holdViewSchema },
      errors: [404, 409],
    },
    {
      ...base,
      method: 'get',
      path: '/holds',
      operationId: 'listHolds',
      summary: 'List legal holds',
      authorization: { action: 'holds:read', roles: READERS },
      query: listHoldsQuery,
      queryDocs: {
        state: 'effective (default), pending, released or all.',
        limit: 'At most this many (1 to 100, default 100).',
      },
      success: { status: 200, description: 'Newest first.', schema: holdListSchema },
    },
    {
      ...base,
      method: 'get',
      path: '/holds/:id',
      operationId: 'getHold',
      summary: 'Get a legal hold',
      authorization: { action: 'holds:read', roles: READERS },
      params: holdPathParams,
      success: { status: 200, description: 'The hold.', schema: holdViewSchema },
      errors: [404],
    },
    {
      ...base,
      method: 'post',
      path: '/holds/:id/release',
      operationId: 'releaseHold',
      summary: 'Release a legal hold',
      description:
        'At once, or under the two-admin rule `release_pending` (still holding) until another admin approves.',
      authorization: holdsWrite,
      params: holdPathParams,
      body: releaseHoldBody,
      success: { status: 200, description: 'The hold.', schema: holdViewSchema },
      errors: [404, 409],
    },
    {
      ...base,
      method: 'post',
      path: '/holds/:id/approve',
      operationId: 'approveHold',
      summary: 'Approve a pending placement or release (another admin)',
      authorization: holdsWrite,
      params: holdPathParams,
      body: approveHoldBody,
      success: { status: 200, description: 'The hold.', schema: holdViewSchema },
      errors: [404, 409],
    },
    {
      ...base,
      method: 'get',
      path: '/privacy/settings',
      operationId: 'getPrivacySettings',
      summary: 'The two-admin rule for legal holds',
      authorization: { action: 'holds:read', roles: READERS },
      success: { status: 200, description: 'The settings.', schema: privacySettingsSchema },
    },
    {
      ...base,
      method: 'post',
      path: '/privacy/settings',
      operationId: 'setPrivacySettings',
      summary: 'Turn the two-admin rule for legal holds on or off',
      description:
        'On: at once. Off: needs two admins (the first request is recorded, another admin’s turns it off).',
      authorization: holdsWrite,
      body: privacySettingsBody,
      success: { status: 200, description: 'The settings.', schema: privacySettingsSchema },
    },
  ];
}
