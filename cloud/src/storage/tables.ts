import type { ColumnType, Generated } from 'kysely';

type CreatedAt = ColumnType<Date, Date | string | undefined, never>;

export interface TenantsTable {
  id: string;
  name: string;
  created_at: CreatedAt;
}

/** Where a site is (migration 0016): the CAP `area` of its alerts. */
export type SiteLocation =
  { circle: { lat: number; lon: number; radius_km: number } } | { polygon: Array<[number, number]> };

export interface SitesTable {
  tenant_id: string;
  id: string;
  name: string;
  created_at: CreatedAt;
  location: ColumnType<SiteLocation | null, string | null | undefined, string | null>;
}

export interface DevicesTable {
  tenant_id: string;
  id: string;
  site_id: string | null;
  agent_version: string | null;
  config_version: ColumnType<string | null, string | number | bigint | null, string | number | bigint | null>;
  last_seen_at: Date | null;
  heartbeats: ColumnType<string, never, string>;
  created_at: CreatedAt;
  hardware_id: string | null;
  enrolled_at: Date | null;
  revoked_at: Date | null;
  revoked_by: string | null;
  revoke_reason: string | null;
  /** The last heartbeat's health and mean fps over its cameras (migration 0008; rollout gates). */
  last_health: ColumnType<string | null, string | null | undefined, string | null>;
  mean_fps: ColumnType<number | null, number | null | undefined, number | null>;
  /**
   * The last heartbeat's mean (over cameras that ran inference) of the cameras' median detect latency, and its
   * events per minute summed over cameras (migration 0009; rollout gates).
   */
  mean_inference_ms: ColumnType<number | null, number | null | undefined, number | null>;
  events_per_minute: ColumnType<number | null, number | null | undefined, number | null>;
  /**
   * The NATS user key of the device's current JWT (migration 0013): unique among active devices; null for a
   * device never enrolled, or enrolled without NATS JWT auth.
   */
  nats_public_key: ColumnType<string | null, string | null | undefined, string | null>;
  /** The cameras of the last heartbeat (migration 0023; the console's fleet page). Written as JSON text. */
  last_cameras: ColumnType<CameraSummary[] | null, string | null | undefined, string | null>;
  /**
   * The last heartbeat's updater status (migration 0022; Heartbeat.update): state (idle, downloading, staging,
   * switching, baking, committed, rolled_back, failed), the versions it runs, ran before and moves to, why it
   * failed, and when the updater wrote it. Null: no updater status reported.
   */
  update_state: ColumnType<string | null, string | null | undefined, string | null>;
  update_current: ColumnType<string | null, string | null | undefined, string | null>;
  update_previous: ColumnType<string | null, string | null | undefined, string | null>;
  update_target: ColumnType<string | null, string | null | undefined, string | null>;
  update_reason: ColumnType<string | null, string | null | undefined, string | null>;
  update_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
}

/** One camera of a heartbeat as the cloud keeps it (fleet/heartbeats.ts cameraSummaries). */
export interface CameraSummary {
  id: string;
  state: string;
  fps: number;
  inference_ms_p50: number;
  events_per_minute: number;
  last_error: string;
}

export interface DeviceCertificatesTable {
  serial: string;
  tenant_id: string;
  device_id: string;
  fingerprint_sha256: string;
  not_before: Date;
  not_after: Date;
  nats_public_key: string;
  issued_at: CreatedAt;
  issued_by: 'enroll' | 'renew';
  revoked_at: Date | null;
}

export interface EventsTable {
  event_id: string;
  occurred_at: Date;
  tenant_id: string;
  site_id: string;
  device_id: string;
  camera_id: string;
  track_id: string;
  phase: string;
  label: string;
  score: number;
  box_x: number;
  box_y: number;
  box_w: number;
  box_h: number;
  zones: string[];
  trigger_zone: string | null;
  model_name: string | null;
  model_sha256: string | null;
  snapshot_media_id: string | null;
  snapshot_sha256: string | null;
  snapshot_bytes: number | null;
  priority: number;
  attributes: ColumnType<Record<string, string>, string, string>;
  payload: Buffer;
  received_at: ColumnType<Date, Date | undefined, never>;
  stream_seq: ColumnType<string | null, string | number | bigint | null, never>;
  /** Set when an erasure request tombstoned the event (migration 0026; privacy/erasure-job.ts). */
  erased_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  erasure_id: ColumnType<string | null, string | null | undefined, string | null>;
}

export interface EnrollmentTokensTable {
  id: string;
  tenant_id: string;
  site_id: string;
  token_sha256: Buffer;
  created_by: string;
  created_at: CreatedAt;
  expires_at: Date;
  used_at: Date | null;
  used_by_device: string | null;
  note: string | null;
}

/**
 * The append-only audit log (audit/audit-log.ts): rows are inserted, never updated (the database refuses it, and
 * every column is typed `never` for updates).
 */
export type AuditActorKind = 'user' | 'device' | 'service' | 'system';
export type AuditOutcome = 'allowed' | 'denied' | 'failed';

export interface AuditLogTable {
  seq: ColumnType<string, string, never>;
  at: ColumnType<Date, Date, never>;
  tenant_id: ColumnType<string | null, string | null, never>;
  actor: ColumnType<string, string, never>;
  actor_kind: ColumnType<AuditActorKind, AuditActorKind, never>;
  action: ColumnType<string, string, never>;
  resource: ColumnType<string | null, string | null, never>;
  outcome: ColumnType<AuditOutcome, AuditOutcome, never>;
  /** Read: the parsed JSON object. Write: its canonical JSON text. */
  detail: ColumnType<Record<string, unknown>, string, never>;
  request_id: ColumnType<string | null, string | null, never>;
  prev_hash: ColumnType<Buffer, Buffer, never>;
  hash: ColumnType<Buffer, Buffer, never>;
}

/** Idempotency-Key records of the API (api/idempotency.ts, migration 0006). */
export interface IdempotencyKeysTable {
  tenant_id: string;
  principal: string;
  method: string;
  path: string;
  key: string;
  request_sha256: Buffer;
  state: 'in_progress' | 'done';
  claim_id: string;
  created_at: Date;
  locked_until: Date;
  expires_at: Date;
  response_status: number | null;
  /** Read: the parsed object. Write: its JSON text. */
  response_headers: ColumnType<Record<string, string> | null, string | null, string | null>;
  response_body: string | null;
  withheld: 'secret' | 'too_large' | null;
}

type BigintColumn = ColumnType<string, string | number | bigint, string | number | bigint>;
type NullableBigintColumn = ColumnType<
  string | null,
  string | number | bigint | null | undefined,
  string | number | bigint | null
>;

/** Desired-state documents per scope, one row per revision (config-ota, migration 0007). */
export interface ConfigDocumentsTable {
  tenant_id: string;
  scope: 'tenant' | 'site' | 'device';
  scope_id: string;
  revision: number;
  /** Read: the parsed object. Write: its JSON text. */
  body: ColumnType<Record<string, unknown>, string, never>;
  created_by: string;
  created_at: Date;
}

/** Every config issued to a device, signed (config-ota, migration 0007). */
export interface DeviceConfigsTable {
  tenant_id: string;
  device_id: string;
  version: BigintColumn;
  /** Read: the parsed object. Write: its JSON text. */
  body: ColumnType<Record<string, unknown>, string, never>;
  jws: string;
  key_id: string;
  rollout_id: string | null;
  /** Why it was issued (migration 0014): a rollout version is on probation until its rollout completes. */
  kind: ColumnType<ConfigKind, ConfigKind | undefined, never>;
  issued_by: string;
  issued_at: Date;
  expires_at: Date;
  /**
   * The body's `retention` section as asked for, before retention policies capped it (migration 0033,
   * privacy/edge-sync.ts); null: the body had none. Read: the object; write: its JSON text.
   */
  requested_retention: ColumnType<Record<string, unknown> | null, string | null | undefined, never>;
}

/** The config re-issue a retention policy change asks for, one row per tenant (migration 0033). */
export interface EdgeRetentionSyncsTable {
  tenant_id: string;
  generation: ColumnType<string, string | number | bigint | undefined, string | number | bigint>;
  state: 'pending' | 'running' | 'done';
  cursor_device: string | null;
  devices_checked: ColumnType<number, number | undefined, number>;
  devices_reissued: ColumnType<number, number | undefined, number>;
  devices_failed: ColumnType<number, number | undefined, number>;
  batches: ColumnType<number, number | undefined, number>;
  requested_by: string;
  requested_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  updated_at: Date;
}

export type ConfigKind = 'direct' | 'rollout' | 'rollback';

/** Desired version and last reported status per device (config-ota, migration 0007). */
export interface DeviceConfigStateTable {
  tenant_id: string;
  device_id: string;
  desired_version: ColumnType<string, string | number | bigint | undefined, string | number | bigint>;
  reported_version: NullableBigintColumn;
  applied_version: NullableBigintColumn;
  state: ColumnType<string, string | undefined, string>;
  reason: ColumnType<string, string | undefined, string>;
  health: ColumnType<string, string | undefined, string>;
  reported_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  /** The last known good version (applied and reported ok, outside probation) and when (migration 0014). */
  good_version: NullableBigintColumn;
  good_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
}

/** A staged rollout (rollouts/, migration 0008). */
export interface RolloutsTable {
  id: string;
  tenant_id: string;
  scope: 'tenant' | 'site';
  scope_id: string;
  /** Read: the parsed object (null: each device's effective document). Write: its JSON text. */
  body: ColumnType<Record<string, unknown> | null, string | null, never>;
  /** Read: the parsed spec. Write: its JSON text. */
  spec: ColumnType<Record<string, unknown>, string, never>;
  state: string;
  current_wave: ColumnType<number, number | undefined, number>;
  wave_started_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  created_by: string;
  created_at: Date;
  updated_at: Date;
  finished_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  abort_reason: ColumnType<string | null, string | null | undefined, string | null>;
  /** An agent-version rollout (migration 0022): the target version and its release channel; null for configs. */
  agent_version: ColumnType<string | null, string | null | undefined, string | null>;
  agent_channel: ColumnType<string | null, string | null | undefined, string | null>;
}

/** A target device of a rollout (migration 0008). */
export interface RolloutDevicesTable {
  rollout_id: string;
  tenant_id: string;
  device_id: string;
  position: number;
  wave: ColumnType<number | null, number | null | undefined, number | null>;
  issued_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  previous_body: ColumnType<Record<string, unknown> | null, string | null | undefined, string | null>;
  previous_version: NullableBigintColumn;
  issued_version: NullableBigintColumn;
  baseline_fps: ColumnType<number | null, number | null | undefined, number | null>;
  /** mean_inference_ms of the device when its wave was issued (migration 0009). */
  baseline_inference_ms: ColumnType<number | null, number | null | undefined, number | null>;
  rollback_version: NullableBigintColumn;
  /** What the rollback re-issued: the body of this version, from the device's last known good or what it ran before (0014). */
  restored_from_version: NullableBigintColumn;
  restore_source: ColumnType<string | null, string | null | undefined, string | null>;
  /** Agent rollouts (0022): the agent version the device ran when its wave was issued (its rollback target). */
  previous_agent_version: ColumnType<string | null, string | null | undefined, string | null>;
  status: ColumnType<string, string | undefined, string>;
  reason: ColumnType<string | null, string | null | undefined, string | null>;
}

/** Media objects uploaded by devices (migration 0010; cloud/src/media/). Bytes live in the MediaStore. */
export interface MediaTable {
  tenant_id: string;
  media_id: string;
  site_id: string;
  device_id: string;
  camera_id: string;
  event_id: string;
  content_type: string;
  sha256: string;
  size_bytes: number;
  redacted: ColumnType<boolean, boolean | undefined, boolean>;
  captured_at: Date;
  stored_at: Date;
  /** Null once the bytes are deleted (retention, erasure). */
  storage_key: string | null;
  deleted_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  deleted_reason: ColumnType<
    MediaDeletedReason | null,
    MediaDeletedReason | null | undefined,
    MediaDeletedReason | null
  >;
}

export type MediaDeletedReason = 'retention' | 'erasure';

/** What a webhook receives (empty or absent lists: everything). */
export interface WebhookFilter {
  labels?: string[];
  sites?: string[];
  cameras?: string[];
}

/** A tenant's webhook subscription (migration 0012; cloud/src/integrations/). */
export interface WebhooksTable {
  id: string;
  tenant_id: string;
  url: string;
  /** The HMAC key, stored in the clear (signing needs it; see the migration). Never returned after the 201. */
  secret: string;
  /** Read: the parsed object. Write: its JSON text. */
  filter: ColumnType<WebhookFilter, string, string>;
  description: ColumnType<string | null, string | null | undefined, string | null>;
  enabled: ColumnType<boolean, boolean | undefined, boolean>;
  created_by: string;
  created_at: Date;
  disabled_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  disabled_reason: ColumnType<string | null, string | null | undefined, string | null>;
}

export type WebhookDeliveryState = 'delivered' | 'retrying' | 'dead';

/** One attempt (or final verdict) of delivering an event to a webhook (migration 0012). */
export interface WebhookDeliveriesTable {
  id: Generated<string>;
  webhook_id: string;
  tenant_id: string;
  event_id: string;
  attempt: number;
  state: WebhookDeliveryState;
  http_status: number | null;
  error: string | null;
  duration_ms: number | null;
  at: Date;
}

/** One webhook delivery job waiting to be relayed to JOBS (migration 0015; integrations/outbox.ts). */
export interface WebhookOutboxTable {
  id: Generated<string>;
  /** `<webhook id>:<event id>`: the job's Nats-Msg-Id. */
  msg_id: string;
  /** The job as JSON text (the message body). */
  payload: string;
  created_at: Generated<Date>;
  /** The JOBS subject (migration 0016); null: the webhook subject. */
  subject: ColumnType<string | null, string | null | undefined, string | null>;
}

/** An agency endpoint (migration 0016; cloud/src/alerts/). Secrets are never returned by the API. */
export interface AlertTargetsTable {
  id: string;
  tenant_id: string;
  name: string;
  /** Null for a pull-only target (migration 0027). */
  url: string | null;
  /** 'feed': a pull-only target, whose Atom feed token is its only credential. */
  auth: 'mtls' | 'signature' | 'feed';
  /** What it is sent: CAP 1.2 XML or the EIDO-style JSON document (migration 0027). */
  format: ColumnType<'cap' | 'eido', 'cap' | 'eido' | undefined, 'cap' | 'eido'>;
  /** 'push': POSTed to url; 'pull': only in its Atom feed (migration 0027). */
  delivery: ColumnType<'push' | 'pull', 'push' | 'pull' | undefined, 'push' | 'pull'>;
  client_cert_pem: string | null;
  client_key_pem: string | null;
  ca_pem: string | null;
  secret: string | null;
  feed_token_sha256: string | null;
  enabled: ColumnType<boolean, boolean | undefined, boolean>;
  created_by: string;
  created_at: Date;
}

/** What an alert rule matches (empty or absent lists: any). */
export interface AlertRuleMatch {
  labels?: string[];
  zones?: string[];
  sites?: string[];
  cameras?: string[];
  /** UTC days (0 = Sunday) and hours [from, to) the rule is active; absent: always. */
  schedule?: { days?: number[]; from?: string; to?: string };
  min_dwell_seconds?: number;
  min_score?: number;
}

/** CAP info fields a rule sets. */
export interface AlertRuleCap {
  event: string;
  urgency: 'Immediate' | 'Expected' | 'Future' | 'Past' | 'Unknown';
  severity: 'Extreme' | 'Severe' | 'Moderate' | 'Minor' | 'Unknown';
  certainty: 'Observed' | 'Likely' | 'Possible' | 'Unlikely' | 'Unknown';
  headline?: string;
}

export interface AlertRulesTable {
  id: string;
  tenant_id: string;
  name: string;
  match: ColumnType<AlertRuleMatch, string, string>;
  cap: ColumnType<AlertRuleCap, string, string>;
  target_ids: string[];
  enabled: ColumnType<boolean, boolean | undefined, boolean>;
  created_by: string;
  created_at: Date;
  updated_at: Date;
}

export type AlertIncidentState = 'pending' | 'alerted' | 'cancelled' | 'ended';

export interface AlertIncidentsTable {
  id: string;
  tenant_id: string;
  rule_id: string;
  site_id: string;
  device_id: string;
  camera_id: string;
  track_id: string;
  state: AlertIncidentState;
  first_seen_at: Date;
  /** The newest occurred_at applied (migration 0027; null on older rows: first_seen_at stands in). */
  last_seen_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  last_event_id: string;
  fingerprint: string;
  seq: ColumnType<number, number | undefined, number>;
  created_at: Date;
  updated_at: Date;
  cancelled_by: ColumnType<string | null, string | null | undefined, string | null>;
  /** When the track ended (its END's occurred_at), recorded until the end sweeper closes the incident (0032). */
  end_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  end_event_id: ColumnType<string | null, string | null | undefined, string | null>;
  /** When the end sweeper may close the incident (null: no end recorded, or already closed). */
  end_due_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
}

export type AlertMessageState = 'pending' | 'retrying' | 'delivered' | 'dead';

/** What the CAP info of a message is built from (frozen when the message is created). */
export interface AlertMessageInfo {
  rule: AlertRuleCap;
  rule_name: string;
  label: string;
  score: number;
  zones: string[];
  site_id: string;
  camera_id: string;
  device_id: string;
  track_id: string;
  occurred_at: string;
  snapshot: { media_id: string; sha256: string | null; bytes: number | null } | null;
  reason?: string;
}

export interface AlertMessagesTable {
  id: string;
  identifier: string;
  tenant_id: string;
  incident_id: string;
  target_id: string;
  seq: number;
  msg_type: 'Alert' | 'Update' | 'Cancel';
  references_id: string | null;
  sent: Date;
  event_id: string;
  info: ColumnType<AlertMessageInfo, string, string>;
  state: ColumnType<AlertMessageState, AlertMessageState | undefined, AlertMessageState>;
  attempts: ColumnType<number, number | undefined, number>;
  http_status: number | null;
  answer: string | null;
  error: string | null;
  /** The last document built for it, CAP XML or EIDO JSON (what was, or would have been, sent). */
  body: string | null;
  updated_at: Date;
}

/** A legal hold (migration 0021; media/holds.ts): retention and erasure skip what an active one covers. */
export interface LegalHoldsTable {
  id: Generated<string>;
  tenant_id: string;
  kind: 'event' | 'device' | 'camera_range' | 'track';
  event_id: string | null;
  device_id: string | null;
  camera_id: string | null;
  from_ts: Date | null;
  to_ts: Date | null;
  reason: string;
  placed_by: string;
  placed_at: Generated<Date>;
  released_by: string | null;
  released_at: Date | null;
  release_reason: string | null;
  /** Migration 0025 (privacy/holds.ts): a track hold's track id, the two-admin state and who approved. */
  track_id: ColumnType<string | null, string | null | undefined, string | null>;
  state: ColumnType<LegalHoldState, LegalHoldState | undefined, LegalHoldState>;
  approved_by: ColumnType<string | null, string | null | undefined, string | null>;
  release_requested_by: ColumnType<string | null, string | null | undefined, string | null>;
  release_requested_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
}

export type LegalHoldState = 'place_pending' | 'active' | 'release_pending' | 'released';

/** Retention policies per tenant, site and camera and data class (migration 0025; cloud/src/privacy/). */
export interface RetentionPoliciesTable {
  tenant_id: string;
  scope: 'tenant' | 'site' | 'camera';
  site_id: string;
  device_id: string;
  camera_id: string;
  data_class: 'event_metadata' | 'redacted_media' | 'personal_media';
  max_age_hours: number | null;
  /** bigint: pg returns it as a string. */
  max_bytes: ColumnType<string | null, number | string | null, number | string | null>;
  updated_by: string;
  updated_at: Date;
}

/** Per-tenant privacy settings (migration 0025): the two-admin rule for legal holds. */
export interface PrivacySettingsTable {
  tenant_id: string;
  holds_two_admin: boolean;
  two_admin_off_requested_by: string | null;
  updated_by: string;
  updated_at: Date;
}

/** A scheduler leader lease (migration 0024; scheduler/lease.ts). Times are the database's. */
export interface SchedulerLeasesTable {
  name: string;
  holder: string;
  /** Fencing token: +1 at every change of holder (and when a holder renews a lease that had expired). */
  token: ColumnType<string, string | bigint, string | bigint>;
  acquired_at: Date;
  renewed_at: Date;
  expires_at: Date;
}

export type ErasureState = 'pending' | 'running' | 'done';
export type ErasurePhase = 'media' | 'events' | 'done';

/** A scoped erasure request and its job's journal (migration 0026; privacy/erasure-store.ts). */
export interface ErasureRequestsTable {
  id: string;
  tenant_id: string;
  /** Read: the parsed scope. Write: its JSON text. */
  scope: ColumnType<Record<string, unknown>, string, never>;
  reason: string;
  requested_by: string;
  requested_at: Date;
  state: ErasureState;
  phase: ErasurePhase;
  cursor_at: Date | null;
  cursor_id: string | null;
  media_erased: ColumnType<number, number | undefined, number>;
  media_held: ColumnType<number, number | undefined, number>;
  media_failed: ColumnType<number, number | undefined, number>;
  events_erased: ColumnType<number, number | undefined, number>;
  events_held: ColumnType<number, number | undefined, number>;
  batches: ColumnType<number, number | undefined, number>;
  started_at: Date | null;
  finished_at: Date | null;
  updated_at: Date;
}

/** The typed view of the schema that the migrations build. */
/** A console login (0030): the key is the SHA-256 of the cookie's id, never the id. */
export interface ConsoleSessionsTable {
  id_hash: string;
  tenant_id: string;
  subject: string;
  /** The Principal (subject, tenant, roles, sites) as the login mapped it. */
  principal: ColumnType<unknown, string, never>;
  csrf: string;
  id_token: string | null;
  created_at: Date;
  expires_at: Date;
}

/** An OIDC login in flight (0030): taken once by the callback. */
export interface ConsoleLoginsTable {
  state_hash: string;
  nonce: string;
  verifier: string;
  return_to: string;
  expires_at: Date;
}

/** An event marked reviewed (0030). */
export interface EventReviewsTable {
  tenant_id: string;
  event_id: string;
  reviewed_by: string;
  reviewed_at: Date;
}

export interface Database {
  tenants: TenantsTable;
  sites: SitesTable;
  devices: DevicesTable;
  events: EventsTable;
  enrollment_tokens: EnrollmentTokensTable;
  device_certificates: DeviceCertificatesTable;
  audit_log: AuditLogTable;
  idempotency_keys: IdempotencyKeysTable;
  config_documents: ConfigDocumentsTable;
  device_configs: DeviceConfigsTable;
  device_config_state: DeviceConfigStateTable;
  rollouts: RolloutsTable;
  rollout_devices: RolloutDevicesTable;
  media: MediaTable;
  webhooks: WebhooksTable;
  webhook_deliveries: WebhookDeliveriesTable;
  webhook_outbox: WebhookOutboxTable;
  legal_holds: LegalHoldsTable;
  retention_policies: RetentionPoliciesTable;
  privacy_settings: PrivacySettingsTable;
  erasure_requests: ErasureRequestsTable;
  edge_retention_syncs: EdgeRetentionSyncsTable;
  alert_targets: AlertTargetsTable;
  alert_rules: AlertRulesTable;
  alert_incidents: AlertIncidentsTable;
  alert_messages: AlertMessagesTable;
  scheduler_leases: SchedulerLeasesTable;
  console_sessions: ConsoleSessionsTable;
  console_logins: ConsoleLoginsTable;
  event_reviews: EventReviewsTable;
}
