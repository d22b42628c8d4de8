import { z } from 'zod';
import { DEVICE_STATUSES } from '../fleet/status.js';
import type { DeviceView } from './device-store.js';
import type { EventView } from './event-store.js';

/*
 * zod schemas of what the API sends back, for the OpenAPI document (api/openapi.ts). The handlers build plain
 * objects typed by the interfaces of the stores; the compile-time checks at the bottom keep the two in step,
 * and cloud/test/api-openapi.test.ts parses real responses with these schemas.
 *
 * Objects are z.object (not strict): clients must ignore members they do not know, so that adding a field is
 * not a breaking change. `.meta({ id })` makes each one a named component (#/components/schemas/<id>).
 */

const timestamp = z.iso.datetime({ offset: true });

export const eventViewSchema = z
  .object({
    event_id: z.uuid(),
    tenant_id: z.string(),
    site_id: z.string(),
    device_id: z.string(),
    camera_id: z.string(),
    occurred_at: timestamp,
    received_at: timestamp,
    track_id: z.string(),
    phase: z.string().meta({ description: 'start, zone_enter, zone_exit or end' }),
    label: z.string(),
    score: z.number(),
    box: z
      .object({ x: z.number(), y: z.number(), w: z.number(), h: z.number() })
      .meta({ description: 'Bounding box, normalized to the frame (0..1)' }),
    zones: z.array(z.string()),
    trigger_zone: z.string().nullable(),
    model: z.object({ name: z.string(), sha256: z.string().nullable() }).nullable(),
    snapshot: z
      .object({
        media_id: z.string(),
        sha256: z.string().nullable(),
        size_bytes: z.number().int().nullable(),
      })
      .nullable(),
    priority: z.number().int(),
    attributes: z.record(z.string(), z.string()),
  })
  .meta({ id: 'Event', description: 'A detection event (no image bytes).' });

const nextCursor = z
  .string()
  .nullable()
  .meta({ description: 'Pass as `cursor` to get the next page; null on the last page.' });

export const eventPageSchema = z
  .object({ items: z.array(eventViewSchema), next_cursor: nextCursor })
  .meta({ id: 'EventPage', description: 'Events, newest first.' });

export const deviceViewSchema = z
  .object({
    id: z.string(),
    tenant_id: z.string(),
    site_id: z.string().nullable(),
    status: z.enum(DEVICE_STATUSES).meta({ description: 'Derived at read time from the last heartbeat.' }),
    last_seen_at: timestamp.nullable(),
    agent_version: z.string().nullable(),
    config_version: z.string().nullable().meta({ description: 'A uint64 as a decimal string.' }),
    heartbeats: z.number().int(),
    created_at: timestamp,
    enrolled_at: timestamp.nullable(),
    hardware_id: z.string().nullable(),
    revoked_at: timestamp.nullable(),
    revoked_by: z.string().nullable(),
    revoke_reason: z.string().nullable(),
    update: z
      .object({
        state: z.string().meta({
          description:
            'idle, downloading, staging, switching, baking, committed, rolled_back, failed (unknown: a state ' +
            'this cloud does not know).',
        }),
        current: z.string().nullable(),
        previous: z.string().nullable(),
        target: z.string().nullable(),
        reason: z.string().nullable(),
        updated_at: timestamp.nullable(),
      })
      .nullable()
      .meta({
        description:
          "The agent updater's last status, from the device's heartbeats (null: none reported). An agent " +
          'upgrade is done when current is the target and state is committed.',
      }),
  })
  .meta({ id: 'Device', description: 'An edge gateway of the tenant.' });

export const devicePageSchema = z
  .object({ items: z.array(deviceViewSchema), next_cursor: nextCursor })
  .meta({ id: 'DevicePage', description: 'Devices, by id.' });

export const revokeResultSchema = z
  .object({
    device_id: z.string(),
    result: z.enum(['revoked', 'already_revoked']),
    revoked_at: timestamp,
    revoked_by: z.string(),
    reason: z.string().nullable(),
    certificates_revoked: z.number().int().meta({ description: 'Certificates revoked by this call.' }),
    nats: z.enum(['cut', 'pending', 'tls_only']).meta({
      description:
        'cut: NATS access ended now; pending: the account update is retried; tls_only: NATS access ends ' +
        'when the certificate expires.',
    }),
  })
  .meta({ id: 'RevokeResult' });

export const enrollmentTokenViewSchema = z
  .object({
    id: z.string(),
    tenant_id: z.string(),
    site_id: z.string(),
    created_by: z.string(),
    created_at: timestamp,
    expires_at: timestamp,
    used_at: timestamp.nullable(),
    used_by_device: z.string().nullable(),
    note: z.string().nullable(),
  })
  .meta({ id: 'EnrollmentToken', description: 'An enrollment token, without its secret.' });

export const createdEnrollmentTokenSchema = enrollmentTokenViewSchema
  .extend({
    token: z.string().meta({
      description:
        'The one-time secret (vgl_et_...). Shown only in this response: the server keeps its SHA-256 alone.',
    }),
  })
  .meta({ id: 'CreatedEnrollmentToken', description: 'A new enrollment token with its secret.' });

export const enrollmentTokenListSchema = z
  .object({ items: z.array(enrollmentTokenViewSchema) })
  .meta({ id: 'EnrollmentTokenList' });

export const problemSchema = z
  .object({
    type: z.string().meta({ description: 'A stable identifier, urn:vigil:problem:<slug>.' }),
    title: z.string(),
    status: z.number().int(),
    detail: z.string().optional(),
    instance: z.string().optional().meta({ description: 'The request path.' }),
    errors: z
      .array(z.object({ path: z.string(), message: z.string() }))
      .optional()
      .meta({ description: 'Validation problems: one entry per parameter or body field.' }),
  })
  .meta({ id: 'Problem', description: 'RFC 9457 problem details (application/problem+json).' });

export const healthSchema = z.object({ status: z.literal('ok') }).meta({ id: 'Health' });

export const readinessSchema = z
  .object({
    status: z.enum(['ready', 'not ready']),
    checks: z.array(z.object({ name: z.string(), ok: z.boolean(), error: z.string().optional() })),
  })
  .meta({ id: 'Readiness' });

// Compile-time: the schemas describe exactly the views the handlers build (both directions).
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const sameEvent: Same<z.output<typeof eventViewSchema>, EventView> = true;
const sameDevice: Same<z.output<typeof deviceViewSchema>, DeviceView> = true;
void [sameEvent, sameDevice];
