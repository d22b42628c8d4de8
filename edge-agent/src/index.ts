export { AGENT_VERSION, startAgent } from './agent.js';
export type { Agent, AgentDeps } from './agent.js';
export { loadAgentConfig, parseAgentConfig, AgentConfigError } from './config/load.js';
export type { AgentConfig, CameraConfig } from './config/schema.js';
export { CameraSupervisor } from './ingest/supervisor.js';
export type { CameraState, CameraStatusSnapshot, Frame } from './ingest/supervisor.js';
export { openOutbox, type Outbox } from './buffer/index.js';
export { inboxPrefixFor, Uplink } from './uplink/index.js';
export { createUuidV7 } from './lib/uuidv7.js';
export {
  verifySignedConfig,
  parseTrustSet,
  ConfigRejectedError,
  CONFIG_JWS_ALG,
  CONFIG_JWS_TYP,
  type ConfigRejectReason,
  type ConfigTrustSet,
  type VerifyConfigOptions,
} from './remote-config/verify.js';
export { planConfig, type ConfigPlan, type RuntimeParts } from './remote-config/plan.js';
export { applyDeviceConfig, ConfigInvalidError, modelFilePath } from './remote-config/translate.js';
export { ConfigJournal, configDir, type JournalEntry } from './remote-config/journal.js';
export { RemoteConfigManager } from './remote-config/manager.js';
export { ensureModelFiles, grpcModelFetcher, type ModelFetcher } from './remote-config/models.js';
export * from './update/index.js';
export type { DeviceIdentity } from './identity/index.js';
export * from './updater/contract.js';
export { UpdateLink, type DesiredAgent, type SyncResult } from './updater/link.js';
export { runEnrollCommand } from './identity/enroll-command.js';
