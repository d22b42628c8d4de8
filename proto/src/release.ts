/** What a release build stamps in: `tools/release` replaces the identifier `__VIGIL_RELEASE__` at bundle time
 *  (esbuild `define`). Run from source it is not defined, and the programs report the source version below. */
declare const __VIGIL_RELEASE__: { version: string; commit: string } | undefined;

export interface ReleaseInfo {
  /** Semantic version of the release (the root package.json's `version` unless the build overrides it). */
  readonly version: string;
  /** Git commit the release was built from; `source` when running from a checkout with tsx. */
  readonly commit: string;
}

export const RELEASE: ReleaseInfo = Object.freeze(
  typeof __VIGIL_RELEASE__ === 'object' && __VIGIL_RELEASE__ !== null
    ? { version: __VIGIL_RELEASE__.version, commit: __VIGIL_RELEASE__.commit }
    : { version: '0.1.0', commit: 'source' },
);

/** `--version` output, the same for every program: `<program> <version> (<commit>)`. */
export function versionLine(program: string): string {
  return `${program} ${RELEASE.version} (${RELEASE.commit})`;
}
