import { z } from 'zod';
import { DATA_CLASSES } from './policies.js';

/*
 * The field shapes the privacy API shares (retention and holds in privacy/api.ts, erasure and export scopes in
 * privacy/scope.ts and privacy/erasure-routes.ts): one definition each, so that a track id an erasure accepts is
 * one a hold accepts too, and every reason has the same bounds.
 */

/** A site, device or camera id: the shape ingest accepts. */
export const idToken = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,63}$/, 'must be 1-63 letters, digits, "-" or "_"')
  .meta({ description: 'A site, device or camera id.' });
/** A track id as the device reported it (the tracker's ids may carry "." and ":"). */
export const trackId = z
  .string()
  .regex(/^[A-Za-z0-9_.:-]{1,128}$/, 'must be 1-128 letters, digits, "_", ".", ":" or "-"')
  .meta({ description: 'A track id as the device reported it.' });
export const timestamp = z.iso.datetime({ offset: true });
/** Why (a hold, a release, an erasure): required, trimmed, bounded. */
export const reason = z.string().trim().min(1).max(500);
export const policyScope = z.enum(['tenant', 'site', 'camera']);
export const dataClass = z.enum(DATA_CLASSES);
export const holdKind = z.enum(['event', 'track', 'device', 'camera_range']);
export const holdState = z.enum(['place_pending', 'active', 'release_pending', 'released']);

/** A camera of a device over [from, to): the shape a hold and a scope share, checked from < to. */
export const cameraRangeShape = { device_id: idToken, camera_id: idToken, from: timestamp, to: timestamp };
export function checkRange(b: { from: string; to: string }, ctx: z.RefinementCtx): void {
  if (!(Date.parse(b.from) < Date.parse(b.to)))
    ctx.addIssue({ code: 'custom', path: ['to'], message: 'must be later than from' });
}
