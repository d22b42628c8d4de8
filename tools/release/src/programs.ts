import { defaultKeep, type NativeDependency } from './natives.js';

/** One program a release ships: where its source is, what cannot be bundled, what else it needs at run time. */
export interface ProgramSpec {
  /** The command name, the bundle's name and its directory in `lib/`. */
  readonly name: 'vigil-agent' | 'vigil-cloud' | 'vigil';
  /** Workspace package directory, relative to the repository root (natives resolve from here). */
  readonly packageDir: string;
  /** Entry module, relative to the repository root. */
  readonly entry: string;
  /** Copied into node_modules with their closure instead of bundled. */
  readonly natives: readonly NativeDependency[];
  /** Left out of the bundle and not shipped: optional requires of a dependency we do not use. */
  readonly absent: readonly string[];
  /** Ship this machine's Node runtime (`runtime/node`): the native addons are built for its ABI. */
  readonly runtime: boolean;
  /** Extra directories (their whole tree) or files copied verbatim: [from (repository-relative), to (bundle-relative)]. */
  readonly assets: readonly (readonly [string, string])[];
  /**
   * Modules loaded at run time by URL (worker threads), built as further entries beside `main.mjs`:
   * [entry (repository-relative), file name in `lib/<name>/`].
   */
  readonly workers: readonly (readonly [string, string])[];
  /**
   * Further commands of the bundle: [command, module in `lib/<name>/`] gets its own launcher `bin/<command>`
   * (the module is built from `workers`). The agent bundle's vigil-updater runs on the same runtime.
   */
  readonly commands?: readonly (readonly [string, string])[];
}

// better-sqlite3 ships its C sources and build tree (tens of MB); only the addon and its JS run.
const betterSqlite: NativeDependency = {
  name: 'better-sqlite3',
  installOnly: ['prebuild-install'],
  keep: (p) =>
    p === 'package.json' ||
    p === 'LICENSE' ||
    p.startsWith('lib/') ||
    p === 'build/Release/better_sqlite3.node',
};

// onnxruntime-node's npm package carries the CPU runtime of every platform (245 MB); a linux-x64 release
// keeps linux-x64. adm-zip and global-agent serve only its postinstall (CUDA download, disabled here).
const onnxruntime: NativeDependency = {
  name: 'onnxruntime-node',
  installOnly: ['adm-zip', 'global-agent'],
  keep: (p) => p.startsWith('bin/napi-v6/linux/x64/') || (defaultKeep(p) && !p.startsWith('script/')),
};

// sharp's C++ sources are for building it; the addon comes in @img/sharp-linux-x64.
const sharp: NativeDependency = { name: 'sharp', keep: (p) => defaultKeep(p) && !p.startsWith('src/') };

export const PROGRAMS: readonly ProgramSpec[] = [
  {
    name: 'vigil-agent',
    packageDir: 'edge-agent',
    entry: 'edge-agent/src/main.ts',
    natives: [betterSqlite, onnxruntime, sharp],
    absent: [],
    runtime: true,
    assets: [],
    // edge-agent/src/detect/worker-pool.ts starts ./detect-worker.mjs next to the bundled main module.
    // edge-agent/src/updater/main.ts is vigil-updater, a second command of the same bundle (its own unit).
    workers: [
      ['edge-agent/src/detect/detect-worker.ts', 'detect-worker.mjs'],
      ['edge-agent/src/updater/main.ts', 'updater.mjs'],
    ],
    commands: [['vigil-updater', 'updater.mjs']],
  },
  {
    name: 'vigil-cloud',
    packageDir: 'cloud',
    entry: 'cloud/src/main.ts',
    // cedar-wasm's Node build reads its .wasm next to its own __dirname.
    natives: [{ name: '@cedar-policy/cedar-wasm' }],
    absent: ['pg-native'],
    runtime: false,
    // Files the cloud reads relative to its own module (`new URL(..., import.meta.url)`), which is
    // lib/vigil-cloud/main.mjs once bundled: cloud/src/auth/cedar.ts the policies at ../../policies, the console
    // its static/ files (console/static.ts, read at start), the alerts their EIDO schema (alerts/eido.ts).
    assets: [
      ['cloud/policies', 'policies'],
      ['cloud/src/console/static', 'lib/vigil-cloud/static'],
      ['cloud/src/alerts/eido-v1.schema.json', 'lib/vigil-cloud/eido-v1.schema.json'],
    ],
    workers: [],
  },
  {
    name: 'vigil',
    // The CLI reaches cedar through @vigil/cloud: resolved from there.
    packageDir: 'cloud',
    entry: 'tools/cli/src/main.ts',
    natives: [{ name: '@cedar-policy/cedar-wasm' }],
    absent: ['pg-native'],
    runtime: false,
    assets: [['cloud/policies', 'policies']],
    workers: [],
  },
];

export function programByName(name: string): ProgramSpec | undefined {
  return PROGRAMS.find((p) => p.name === name);
}
