/**
 * Crash points for crash tests. `VIGIL_FAILPOINTS=name[,name...]` in the environment makes `failpoint(name)`
 * kill -9 its own process at exactly that point, so that a test (a real child process) can prove what
 * survives a crash there. Read once at start; without the variable a failpoint is one Set lookup. Only the
 * environment arms them (whoever sets a process's environment can kill it anyway).
 */
const armed = new Set(
  (process.env.VIGIL_FAILPOINTS ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0),
);

/** The crash points the code has (documented in cloud/README.md, "Crash tests"). */
export type FailpointName =
  | 'ingest.after_commit'
  | 'webhooks.relay.after_publish'
  // erasure: a batch's media bytes are deleted, its tombstones and cursor not committed yet
  | 'erasure.after_store_delete';

export function failpoint(name: FailpointName): void {
  if (armed.size > 0 && armed.has(name)) process.kill(process.pid, 'SIGKILL');
}
