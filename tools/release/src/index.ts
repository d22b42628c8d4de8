// @vigil/release: the release build (pnpm release:build) and the bundle format its consumers (the TUF
// publisher, the updater) read. See ../README.md.
export {
  BUNDLE_FORMAT,
  PLATFORM,
  bundleEntry,
  packStaged,
  stageProgram,
  readManifest,
  type BuildInfo,
  type BundleManifest,
} from './bundle.js';
export {
  bundleFileName,
  buildBundle,
  buildInfo,
  writeReleaseIndex,
  type Artifact,
  type ReleaseIndex,
} from './build.js';
export { debFileName, debVersion, buildDeb, readReleaseRoot, PACKAGED_ROOT_PATH } from './deb.js';
export { describeFiles, sha256File, walkStaged, writeTarGz, type FileEntry } from './archive.js';
export { ReleaseError } from './errors.js';
export { PROGRAMS, programByName, type ProgramSpec } from './programs.js';
