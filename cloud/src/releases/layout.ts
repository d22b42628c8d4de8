import { CHANNEL_RE, SEMVER_RE } from '@vigil/proto';
import { z } from 'zod';

/*
 * The repository's names, pure. Layout (consistent snapshots, TUF spec 5.5 / 6): `metadata/<N>.root.json`,
 * `metadata/<N>.snapshot.json`, `metadata/<N>.targets.json`, `metadata/timestamp.json` (the one unversioned file)
 * and `targets/<sha256>.<name>`. Every path a caller names is matched against these patterns whole: nothing else
 * (no `..`, no directory, no link) can be addressed.
 */

const METADATA_RE = /^metadata\/(?:(?:[1-9]\d{0,8})\.(root|snapshot|targets)|(timestamp))\.json$/;
const TARGET_FILE_RE = /^targets\/([0-9a-f]{64})\.(vigil-agent-[0-9A-Za-z.+-]{1,64}-linux-x64\.tar\.gz)$/;

export type RepoPath =
  | { kind: 'metadata'; role: 'root' | 'snapshot' | 'targets' | 'timestamp'; path: string }
  | { kind: 'target'; sha256: string; name: string; path: string };

/** A repository path a client asked for, or null when it names nothing the repository can hold. */
export function parseRepoPath(path: string): RepoPath | null {
  const m = METADATA_RE.exec(path);
  if (m)
    return { kind: 'metadata', role: (m[1] ?? m[2]) as 'root' | 'snapshot' | 'targets' | 'timestamp', path };
  const t = TARGET_FILE_RE.exec(path);
  if (t) return { kind: 'target', sha256: t[1]!, name: t[2]!, path };
  return null;
}

/** The custom fields of every target (TUF `custom`): what the updater decides with. */
export const targetCustomSchema = z.strictObject({
  version: z.string().regex(SEMVER_RE, 'must be a semantic version such as 1.4.0'),
  channel: z.string().regex(CHANNEL_RE, 'must be lowercase letters, digits or "-" (e.g. stable)'),
  minVersion: z.string().regex(SEMVER_RE, 'must be a semantic version such as 1.0.0'),
});
export type TargetCustom = z.infer<typeof targetCustomSchema>;
