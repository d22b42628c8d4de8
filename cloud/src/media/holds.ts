/**
 * Legal holds moved to cloud/src/privacy/ (issue 19: holds on events, tracks, camera ranges and devices, with
 * the two-admin rule). Media keeps importing them from here.
 */
export { mediaHeld, type HoldScope } from '../privacy/holds.js';
export { HoldError, LegalHolds, type HoldActor } from '../privacy/legal-holds.js';
