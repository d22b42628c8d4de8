import { z } from 'zod';
import type { AlertIncident, AlertMessage, AlertRule, AlertTarget } from './store.js';

const ts = z.iso.datetime({ offset: true });

export const targetViewSchema = z
  .object({
    id: z.uuid(),
    name: z.string(),
    url: z.string().nullable().meta({ description: 'Where messages are POSTed (null: pull-only target).' }),
    auth: z.enum(['mtls', 'signature', 'feed']),
    format: z.enum(['cap', 'eido']).meta({ description: 'CAP 1.2 XML or the EIDO-style JSON document.' }),
    delivery: z.enum(['push', 'pull']).meta({ description: 'POSTed to url, or only in the Atom feed.' }),
    enabled: z.boolean(),
    created_by: z.string(),
    created_at: ts,
  })
  .meta({ id: 'AlertTarget', description: 'An agency endpoint (never its key, secret or feed token).' });
export const createdTargetSchema = targetViewSchema
  .extend({
    secret: z
      .string()
      .nullable()
      .meta({ description: 'RFC 9421 HMAC key (auth signature); shown only here.' }),
    feed_token: z.string().meta({ description: 'Bearer token of the Atom feed; shown only here.' }),
  })
  .meta({ id: 'CreatedAlertTarget' });
export const ruleViewSchema = z
  .object({
    id: z.uuid(),
    name: z.string(),
    match: z.record(z.string(), z.unknown()),
    cap: z.record(z.string(), z.unknown()),
    target_ids: z.array(z.uuid()),
    enabled: z.boolean(),
    created_by: z.string(),
    created_at: ts,
    updated_at: ts,
  })
  .meta({ id: 'AlertRule' });
export const incidentViewSchema = z
  .object({
    id: z.uuid(),
    rule_id: z.uuid(),
    site_id: z.string(),
    device_id: z.string(),
    camera_id: z.string(),
    track_id: z.string(),
    state: z.enum(['pending', 'alerted', 'cancelled', 'ended']),
    seq: z.number().int(),
    first_seen_at: ts,
    updated_at: ts,
    cancelled_by: z.string().nullable(),
  })
  .meta({ id: 'AlertIncident' });
export const messageViewSchema = z
  .object({
    id: z.string(),
    identifier: z.string(),
    incident_id: z.uuid(),
    target_id: z.uuid(),
    seq: z.number().int(),
    msg_type: z.enum(['Alert', 'Update', 'Cancel']),
    references: z.string().nullable(),
    sent: ts,
    state: z.enum(['pending', 'retrying', 'delivered', 'dead']),
    attempts: z.number().int(),
    http_status: z.number().int().nullable(),
    answer: z.string().nullable(),
    error: z.string().nullable(),
    updated_at: ts,
  })
  .meta({ id: 'AlertMessage', description: 'A message (CAP or EIDO) to one target and its delivery state.' });
export const listOf = (s: z.ZodType, id: string) => z.object({ items: z.array(s) }).meta({ id });

export const targetView = (t: AlertTarget): z.output<typeof targetViewSchema> => ({
  id: t.id,
  name: t.name,
  url: t.url,
  auth: t.auth,
  format: t.format,
  delivery: t.delivery,
  enabled: t.enabled,
  created_by: t.created_by,
  created_at: t.created_at.toISOString(),
});
export const ruleView = (r: AlertRule): z.output<typeof ruleViewSchema> => ({
  id: r.id,
  name: r.name,
  match: r.match as Record<string, unknown>,
  cap: r.cap as unknown as Record<string, unknown>,
  target_ids: r.target_ids,
  enabled: r.enabled,
  created_by: r.created_by,
  created_at: r.created_at.toISOString(),
  updated_at: r.updated_at.toISOString(),
});
export const incidentView = (i: AlertIncident): z.output<typeof incidentViewSchema> => ({
  id: i.id,
  rule_id: i.rule_id,
  site_id: i.site_id,
  device_id: i.device_id,
  camera_id: i.camera_id,
  track_id: i.track_id,
  state: i.state,
  seq: i.seq,
  first_seen_at: i.first_seen_at.toISOString(),
  updated_at: i.updated_at.toISOString(),
  cancelled_by: i.cancelled_by,
});
export const messageView = (m: AlertMessage): z.output<typeof messageViewSchema> => ({
  id: m.id,
  identifier: m.identifier,
  incident_id: m.incident_id,
  target_id: m.target_id,
  seq: m.seq,
  msg_type: m.msg_type,
  references: m.references_id,
  sent: m.sent.toISOString(),
  state: m.state,
  attempts: m.attempts,
  http_status: m.http_status,
  answer: m.answer,
  error: m.error,
  updated_at: m.updated_at.toISOString(),
});
