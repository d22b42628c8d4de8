// The cloud as a real child process, for crash tests: the launcher lives in @vigil/devservices (the fault tool
// uses it too); this binds it to the test run's process registry and the repository root.
import { registry, repoRoot, spawnCloud as spawn, type CloudProcess } from '@vigil/testkit';

export type { CloudProcess };

/** Writes `config` to `<dir>/cloud-<n>.json` and starts the cloud on it; `failpoints` arms crash points. */
export function spawnCloud(
  dir: string,
  config: Record<string, unknown>,
  opts: { failpoints?: string[]; name?: string; roles?: string[] } = {},
): CloudProcess {
  return spawn(dir, config, { ...opts, root: repoRoot(), registry });
}
