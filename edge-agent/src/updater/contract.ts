import { join } from 'node:path';
import { CHANNEL_RE, SEMVER_RE } from '@vigil/proto';
import { z } from 'zod';

/*
 * The file contract between the agent and the updater (issue #14 points 3 and 4), in `<stateDir>/update/`
 * (production `/var/lib/vigil/update/`). Each file has one writer and is replaced atomically (tmp + fsync +
 * rename), so a reader sees the old file or the new one:
 *
 *   request.json  written by the AGENT: the agent version the fleet wants on this device.
 *   status.json   written by the UPDATER: where the device is in an update; the agent reports it in heartbeats.
 *
 * The updater polls request.json and acts when its version differs from the running one and is not a version
 * it already failed for the same request.
 */

export const UPDATE_DIR = 'update';

/** Neither file is ever near this; anything larger is refused unread. */
export const MAX_CONTRACT_FILE_BYTES = 16 * 1024;
export const REQUEST_FILE = 'request.json';
export const STATUS_FILE = 'status.json';

const semver = z.string().regex(SEMVER_RE, 'must be a semantic version such as 1.4.0');

export const updateRequestSchema = z.strictObject({
  version: semver,
  channel: z.string().regex(CHANNEL_RE, 'must be lowercase letters, digits or "-" (e.g. stable)'),
  requestedAt: z.iso.datetime({ offset: true }),
  rolloutId: z.string().min(1).max(200).nullable(),
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
export type UpdateState = (typeof UPDATE_STATES)[number];
export type UpdateStateName = UpdateState;

export const updateStatusSchema = z.strictObject({
  state: z.enum(UPDATE_STATES),
  current: semver,
  previous: semver.nullable(),
  target: semver.nullable(),
  reason: z.string().max(2000).nullable(),
  updatedAt: z.iso.datetime({ offset: true }),
});
export type UpdateStatus = z.infer<typeof updateStatusSchema>;

export function updateDir(stateDir: string): string {
  return join(stateDir, UPDATE_DIR);
}
