export { asset, assetsDir, capSchemaFile, findSharedDir, repoRoot, sharedDir } from './assets.js';
export { dpkgInstallInto, userInRoot } from './dpkg-root.js';
export { uuidV7 } from './ids.js';
export {
  printLogsOnFailure,
  registry,
  useCameraSim,
  useDatabase,
  useNats,
  usePgBouncer,
  useNatsCluster,
  usePki,
  useRedis,
} from './vitest-glue.js';
export * from '@vigil/devservices';
