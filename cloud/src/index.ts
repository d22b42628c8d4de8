export { startCloud } from './app.js';
export type { CloudApp, CloudDeps } from './app.js';
export { loadCloudConfig, parseCloudConfig } from './config/load.js';
export type { CloudConfig } from './config/schema.js';
export { FleetRegistry } from './fleet/registry.js';
export { DEVICE_STATUSES, type DeviceStatus } from './fleet/status.js';
export {
  ENROLLMENT_TOKEN_PREFIX,
  EnrollmentTokenInvalidError,
  EnrollmentTokens,
} from './fleet/enrollment.js';
export type { EnrollmentScope, EnrollmentToken } from './fleet/enrollment.js';
export {
  AUDIT_CHAIN_LOCK,
  AUDIT_DETAIL_MAX_BYTES,
  AUDIT_FORMAT,
  AUDIT_GENESIS_HASH,
  AuditEntryInvalidError,
  AuditLog,
  canonicalEntry,
  canonicalJson,
  canonicalTimestamp,
  chainHash,
  deviceRef,
  type AppendedEntry,
  type AuditEntry,
  type CanonicalFields,
  type VerifyOptions,
  type VerifyResult,
} from './audit/audit-log.js';
export type { AuditActorKind, AuditOutcome } from './storage/tables.js';
export { createDb, readPasswordFile } from './storage/db.js';
export { openDatabases, type Databases } from './storage/databases.js';
export { ReplicaReads, type LagSample, type ReadHeavy } from './storage/replica.js';
export { MIGRATION_LOCK, migrateDown, migrateToLatest } from './storage/migrate.js';
export {
  DEV_JWKS_FILE,
  DEV_SIGNING_KEY_FILE,
  ensureDevSigningKey,
  mintDevToken,
  type DevSigningKey,
  type MintDevTokenOptions,
} from './auth/dev-keys.js';
export {
  createRoleAuthorizer,
  DEVICE_READER_ROLES,
  EVENT_READER_ROLES,
  ROLES,
  rolesGranted,
  type Action,
  type Authorizer,
  type Decision,
  type Resource,
} from './auth/authorize.js';
export type { Principal } from './auth/principal.js';
export { planPartitions } from './events/partitions.js';
export { DLQ_HEADERS, deadLetterSubject } from './ingest/dead-letter.js';
export { MAX_RECEIPT_QUERY_IDS } from './ingest/receipts.js';
export { startIngest } from './ingest/start.js';
export type { IngestDeps, IngestRole } from './ingest/start.js';
export {
  DEAD_LETTER_STREAM,
  EVENTS_STREAM,
  INGEST_CONSUMER,
  ensureIngestConsumer,
  ensureStreams,
} from './ingest/streams.js';
export { DEAD_LETTER_REASONS, validateEvent } from './ingest/validate.js';
export type { DeadLetterReason, Validation } from './ingest/validate.js';
export { DeviceIdentityService, IdentityError, type IdentityErrorCode } from './fleet/identity-service.js';
export { GRPC_MAX_MESSAGE_BYTES, startGrpcServer, toStatus } from './fleet/grpc-server.js';
export { DeviceRevoker, type RevokeOutcome } from './fleet/revocation.js';
export { connectWithAuthority, loadNatsAuthority, NatsAccountPublisher } from './fleet/nats-account.js';
export {
  ACCOUNT_MAX_STREAMS,
  ensureNatsAuthority,
  upgradeForCallout,
  type NatsAuthorityFiles,
  type NatsAuthorityOptions,
} from './fleet/nats-authority-files.js';
export {
  AUTH_CALLOUT_SUBJECT,
  DEVICE_AUTH_ACCOUNT_NAME,
  issueCalloutUser,
  issueDeviceTicket,
} from './fleet/nats-device-auth.js';
export { CALLOUT_QUEUE_GROUP, NatsAuthCallout } from './fleet/nats-callout.js';
export { admitDevice, checkCalloutRequest, type CalloutResult } from './fleet/nats-callout-decision.js';
export { NatsSessionKicker } from './fleet/nats-sessions.js';
export { nkeyFromRawSeed } from './fleet/nkey-crypto.js';
export {
  createNatsAuthority,
  credsFile,
  deviceInboxPrefix,
  devicePermissions,
  issueDeviceUser,
  natsServerAuthConfig,
  type NatsAuthority,
} from './fleet/nats-auth.js';
export {
  CONFIG_JWS_TYPE,
  CONFIG_QUEUE_GROUP,
  ConfigIssuer,
  ConfigOtaError,
  ConfigSigner,
  ConfigStatusResponder,
  configBodySchema,
  DEV_CONFIG_JWKS_FILE,
  DEV_CONFIG_SIGNING_KEY_FILE,
  effectiveBodyProblems,
  ensureDevConfigSigningKey,
  mergeConfigBodies,
  ModelStore,
  toDeviceConfig,
  type ConfigBody,
  type ConfigIssuerOptions,
  type ConfigScope,
  type DevConfigSigningKey,
  type DeviceConfigState,
  type DeviceConfigStateName,
  type DeviceHealthName,
  type IssueInput,
} from './config-ota/index.js';
export { MediaRepository, type MediaRow, type NewMedia } from './media/repository.js';
export { FsMediaStore, mediaKeyFor, type MediaStore } from './media/store.js';
export { PeriodicJob, nextDelayMs, type RunContext } from './scheduler/periodic.js';
export { HoldError, LegalHolds, mediaHeld, type HoldScope } from './media/holds.js';
export { ErasureJob, ERASURE_LOCK, type BatchResult } from './privacy/erasure-job.js';
export { ErasureStore, toErasureView, type ErasureView } from './privacy/erasure-store.js';
export { EvidenceError, ExportTooLargeError } from './privacy/evidence-errors.js';
export {
  EVIDENCE_FORMAT,
  exportKeyId,
  loadExportKey,
  MANIFEST_FILE,
  parseExportPublicKey,
  SIGNATURE_FILE,
  verifyEvidence,
  type EvidenceManifest,
  type VerifiedEvidence,
} from './privacy/evidence.js';
export { scopeSchema, type Scope } from './privacy/scope.js';
export { readTar, tarEntry, TAR_END } from './privacy/tar.js';
export {
  eventHeldSql,
  heldScopes,
  holdFor,
  isHeld,
  mediaHeldSql,
  type HeldScope,
  type HoldableItem,
} from './privacy/holds.js';
export { RetentionJob, partitionKeepsEvents } from './privacy/retention-job.js';
export { RetentionPolicies, resolvePolicy, defaultsFromConfig } from './privacy/policies.js';
export {
  generateKey as generateTufKey,
  keyFileSchema as tufKeyFileSchema,
  parseKeyFile as parseTufKeyFile,
  publicKeyOf as tufPublicKeyOf,
  signWith as tufSignWith,
  TUF_SPEC_VERSION,
  type TufKeyFile,
} from './releases/keys.js';
export { targetCustomSchema, type TargetCustom } from './releases/layout.js';
export {
  bundlePublishRefusal,
  parseBundleHead,
  publishRefusal,
  readBundleHead,
  type BundleHead,
} from './releases/bundle-head.js';
export { ReleaseError } from './releases/errors.js';
