export {
  DEFAULT_DEADLINE_MS,
  enroll,
  grpcIdentityClient,
  renew,
  type EnrollOptions,
  type IdentityClient,
  type IssuedIdentity,
  type RenewOptions,
} from './client.js';
export { formatCreds, parseCreds } from './creds.js';
export { DEVICE_ID_RE, IdentityError, assertDeviceId, type IdentityErrorCode } from './errors.js';
export { generateDeviceKeys, readHardwareId, type DeviceKeys } from './keys.js';
export { checkMaterial, type IdentityMaterial } from './material.js';
export {
  DEFAULT_RENEW_POLICY,
  IdentityRenewer,
  renewalDueAt,
  retryPlan,
  type IdentityRenewerOptions,
  type RenewerState,
  type RenewPolicy,
  type RetryPlan,
} from './renewer.js';
export {
  natsPlan,
  resolveDeviceIdentity,
  startIdentityRenewal,
  type DeviceIds,
  type NatsPlan,
  type ResolvedIdentity,
} from './resolve.js';
export {
  IdentityStore,
  defaultIdentityDir,
  type DeviceIdentity,
  type IdentityFiles,
  type IdentityInfo,
  type IdentityStoreOptions,
} from './store.js';
