/*
 * The file contract between the agent and the updater (vigil-updater), issue 14 points 3 and 4. Shared with
 * the updater's own copy of this file (the two are kept identical; one is kept at merge).
 *
 * Directory: `<stateDir>/update/` (production `/var/lib/vigil/update/`).
 * - `request.json`, written atomically by the AGENT (tmp + fsync + rename): the agent version its applied config
 *   asks for.
 * - `status.json`, written atomically by the UPDATER: what it is doing and what runs.
 * Both are hostile input to their reader: size-bounded, schema-checked (unknown keys refused), refusals counted.
 */
import { join } from 'node:path';
import { CHANNEL_RE, SEMVER_RE } from '@vigil/proto';
import { z } from 'zod';

export const REQUEST_FILE = 'request.json';
export const STATUS_FILE = 'status.json';
/** Neither file is ever near this; anything larger is refused unread. */
export const MAX_CONTRACT_FILE_BYTES = 16 * 1024;

/** `<stateDir>/update`: where both files live. */
export function updateDir(stateDir: string): string {
  return join(stateDir, 'update');
}

const semver = z.string().max(64).regex(SEMVER_RE, 'must be a semantic version');
const iso = z.iso.datetime({ offset: true });

export const updateRequestSchema = z.strictObject({
  version: semver,
  channel: z.string().regex(CHANNEL_RE, 'must be lowercase letters, digits or "-"'),
  requestedAt: iso,
  rolloutId: z.string().min(1).max(64).nullable(),
});
export type UpdateRequest = z.infer<typeof updateRequestSchema>;

export const UPDATE_STATES = [
  'idle',
  'downloading',
  'staging',
  'switching',
  'baking',
  'committed',
  'rolled_back',
  'failed',
] as const;
export type UpdateStateName = (typeof UPDATE_STATES)[number];

export const updateStatusSchema = z.strictObject({
  state: z.enum(UPDATE_STATES),
  current: semver,
  previous: semver.nullable(),
  target: semver.nullable(),
  reason: z.string().max(1000).nullable(),
  updatedAt: iso,
});
export type UpdateStatus = z.infer<typeof updateStatusSchema>;
