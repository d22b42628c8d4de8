// Config OTA (issue #7, cloud side): desired-state documents with inheritance, signed versioned device
// configs, state-based delivery over NATS and the models store.
export {
  configBodySchema,
  effectiveBodyProblems,
  toDeviceConfig,
  type ConfigBody,
  type ConfigHeader,
} from './body.js';
export { CONFIG_SCOPES, mergeConfigBodies, type ConfigScope } from './merge.js';
export {
  CONFIG_JWS_ALG,
  CONFIG_JWS_TYPE,
  ConfigSigner,
  DEV_CONFIG_JWKS_FILE,
  DEV_CONFIG_SIGNING_KEY_FILE,
  ensureDevConfigSigningKey,
  type ConfigSigningOptions,
  type DevConfigSigningKey,
} from './signing.js';
export {
  ConfigIssuer,
  ConfigOtaError,
  type ConfigDocument,
  type ConfigIssuerOptions,
  type CurrentSignedConfig,
  type DeviceConfigState,
  type DeviceConfigStateName,
  type DeviceHealthName,
  type IssueInput,
} from './issuer.js';
export { CONFIG_QUEUE_GROUP, ConfigStatusResponder } from './delivery.js';
export { ModelStore, ModelStoreError, SHA256_RE, type StoredModel } from './models.js';
export { mountConfigRoutes, type ConfigRoutesDeps } from './routes.js';
