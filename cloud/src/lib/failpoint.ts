/**
 * Crash points for crash tests. `VIGIL_FAILPOINTS=name[,name...]` in the environment makes `failpoint(name)`
 * kill -9 its own process at exactly that point, so that a test (a real child process) can prove what
 * survives a crash there. `name@N` kills at the Nth time the point is reached (a crash in the middle of a
 * long job rather than at its first step). Read once at start; without the variable a failpoint is one Set
 * lookup. Only the environment arms them (whoever sets a process's environment can kill it anyway).
 */
const armed = new Map<string, number>();
for (const item of (process.env.VIGIL_FAILPOINTS ?? '').split(',')) {
  const m = /^\s*([a-z0-9_.]+)(?:@(\d{1,9}))?\s*$/.exec(item);
  if (m) armed.set(m[1]!, Number(m[2] ?? 1));
}

/** The crash points the code has (documented in cloud/README.md, "Crash tests"). */
export type FailpointName =
  | 'ingest.after_commit'
  | 'webhooks.relay.after_publish'
  // erasure: a batch's media bytes are deleted, its tombstones and cursor not committed yet
  | 'erasure.after_store_delete'
  // media ingest: a batch's files are durable and its rows inserted, not committed
  | 'media.after_store'
  // media ingest: a batch's rows are committed, nothing acked
  | 'media.after_commit';

export function failpoint(name: FailpointName): void {
  if (armed.size === 0) return;
  const left = armed.get(name);
  if (left === undefined) return;
  if (left <= 1) process.kill(process.pid, 'SIGKILL');
  else armed.set(name, left - 1);
}
