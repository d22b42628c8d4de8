export * from './contract.js';
export { parseUpdaterConfig, loadUpdaterConfig, updaterConfigSchema, type UpdaterConfig } from './config.js';
export { BundleRefusedError, UpdaterError, type BundleRefusal } from './errors.js';
export {
  recover,
  stateOfStep,
  journalSchema,
  type Journal,
  type JournalStep,
  type Recovery,
} from './journal.js';
export { decideRequest, HealthGate, judgeHealth, requestKey } from './plan.js';
export { unpackBundle } from './unpack.js';
export { checkEntryPath, parseBundleManifest } from './manifest.js';
export { directoryReleaseSource, readTrustedRoot } from './sources.js';
