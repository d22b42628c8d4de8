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

/*
 * Agent release naming rules, shared by the cloud (which refuses to publish anything else) and the device
 * (which refuses to install anything else): the TUF target name of a bundle, versions and channels.
 */

/** A bundle's target name: one flat file name of the agent's release bundle. */
export const TARGET_NAME_RE = /^vigil-agent-[0-9A-Za-z.+-]{1,64}-linux-x64\.tar\.gz$/;
/** Semantic version (no leading "v"; pre-release and build parts allowed). */
export const SEMVER_RE =
  /^(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})(?:-[0-9A-Za-z.-]{1,40})?(?:\+[0-9A-Za-z.-]{1,40})?$/;
export const CHANNEL_RE = /^[a-z][a-z0-9-]{0,31}$/;

/** The bundle file name of a version: what `vigil release publish` checks the bundle is called. */
export function bundleName(version: string): string {
  return `vigil-agent-${version}-linux-x64.tar.gz`;
}

/** Compares semantic versions (precedence per semver 2.0.0 section 11; build metadata ignored). */
export function compareSemver(a: string, b: string): number {
  const parse = (v: string): { core: number[]; pre: string[] } => {
    const [main = '', pre] = v.split('+')[0]!.split(/-(.*)/s);
    return { core: main.split('.').map(Number), pre: pre ? pre.split('.') : [] };
  };
  const x = parse(a);
  const y = parse(b);
  for (let i = 0; i < 3; i++) {
    const d = (x.core[i] ?? 0) - (y.core[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  // A version without a pre-release ranks above one with.
  if (x.pre.length === 0 || y.pre.length === 0) return Math.sign(y.pre.length - x.pre.length);
  for (let i = 0; i < Math.max(x.pre.length, y.pre.length); i++) {
    const p = x.pre[i];
    const q = y.pre[i];
    if (p === undefined) return -1;
    if (q === undefined) return 1;
    if (p === q) continue;
    const pn = /^\d+$/.test(p);
    const qn = /^\d+$/.test(q);
    if (pn && qn) return Math.sign(Number(p) - Number(q));
    if (pn !== qn) return pn ? -1 : 1;
    return p < q ? -1 : 1;
  }
  return 0;
}
