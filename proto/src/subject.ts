// NATS subject scheme of the v1 contract: vigil.v1.<tenant>.<device>.<kind>[.<camera>].
// Device permissions are granted on these subjects (a device may only touch vigil.v1.<its tenant>.<itself>.>),
// so a token that smuggles in '.', '*' or '>' would widen or shift what a subject means. Building and parsing
// therefore validate every token instead of trusting ids that came from configs or the wire.

/** Leading tokens of every v1 subject. */
export const SUBJECT_PREFIX = 'vigil.v1';

/** Message kinds, one per subject suffix. */
export const SUBJECT_KINDS = ['evt', 'hb', 'status', 'cfg', 'rcpt', 'media'] as const;

/**
 * evt: DetectionEvent, hb: Heartbeat, status: ConfigStatus, cfg: SignedConfig,
 * rcpt: CommitReceipt (and ReceiptQuery requests), media: MediaObject (per camera).
 */
export type SubjectKind = (typeof SUBJECT_KINDS)[number];

export interface SubjectParts {
  tenant: string;
  device: string;
  kind: SubjectKind;
  /** Present only for per-camera subjects. */
  camera?: string;
}

// Separator, both wildcards, whitespace and other control characters: anything that changes how NATS splits or
// matches the subject (or breaks its text protocol).
// eslint-disable-next-line no-control-regex -- control characters are exactly what this rejects
const FORBIDDEN = /[.*>\s\u0000-\u001f\u007f]/;

export function isSubjectKind(value: string): value is SubjectKind {
  return (SUBJECT_KINDS as readonly string[]).includes(value);
}

/** True if value can be used as one subject token (tenant, device or camera id). */
export function isValidSubjectToken(value: string): boolean {
  return value.length > 0 && !FORBIDDEN.test(value);
}

function checkToken(role: string, value: string): void {
  if (!isValidSubjectToken(value)) {
    throw new Error(
      `invalid ${role} subject token ${JSON.stringify(value)}: must be non-empty and contain no '.', '*', '>' or whitespace`,
    );
  }
}

/** Builds `vigil.v1.<tenant>.<device>.<kind>[.<camera>]`; throws an Error naming the first bad token. */
export function subjectFor(tenant: string, device: string, kind: SubjectKind, camera?: string): string {
  checkToken('tenant', tenant);
  checkToken('device', device);
  // Checked at runtime too: callers outside TypeScript (CLI input, configs) can pass anything.
  if (!isSubjectKind(kind)) {
    throw new Error(
      `invalid subject kind ${JSON.stringify(kind)}: expected one of ${SUBJECT_KINDS.join(', ')}`,
    );
  }
  if (camera === undefined) return `${SUBJECT_PREFIX}.${tenant}.${device}.${kind}`;
  checkToken('camera', camera);
  return `${SUBJECT_PREFIX}.${tenant}.${device}.${kind}.${camera}`;
}

/** Parses a concrete v1 subject; null for anything else (other prefix, wildcards, wrong arity, unknown kind). */
export function parseSubject(subject: string): SubjectParts | null {
  const tokens = subject.split('.');
  if (tokens.length !== 5 && tokens.length !== 6) return null;
  const [root, version, tenant, device, kind, camera] = tokens;
  if (`${root}.${version}` !== SUBJECT_PREFIX) return null;
  if (tenant === undefined || !isValidSubjectToken(tenant)) return null;
  if (device === undefined || !isValidSubjectToken(device)) return null;
  if (kind === undefined || !isSubjectKind(kind)) return null;
  if (camera === undefined) return { tenant, device, kind };
  if (!isValidSubjectToken(camera)) return null;
  return { tenant, device, kind, camera };
}

/**
 * Root token of every device inbox. A device's inbox prefix (the `inboxPrefix` it connects with, where its
 * PubAcks and request answers arrive) is `_DEVINBOX.<tenant>.<device>`, so:
 * - `_DEVINBOX.>` names every device inbox and nothing else: the cloud's responder user may publish there
 *   and nowhere else (it shares no root with `_INBOX.` service replies, `$JS`/`$KV`/`$SYS`, or `vigil.`);
 * - a device's own inbox is a whole-token template (`_DEVINBOX.<tenant tag>.<device tag>.>`).
 */
export const DEVICE_INBOX_ROOT = '_DEVINBOX';

/** `_DEVINBOX.<tenant>.<device>`: the inbox prefix of one device; throws on an invalid token. */
export function deviceInboxPrefix(tenant: string, device: string): string {
  checkToken('tenant', tenant);
  checkToken('device', device);
  return `${DEVICE_INBOX_ROOT}.${tenant}.${device}`;
}

/** Longest reply subject a device inbox reply may have (nats.js makes `<prefix>.<nuid>.<token>`). */
export const MAX_DEVICE_REPLY_LENGTH = 256;

/**
 * True if `reply` is a concrete subject inside the inbox of tenant/device: the prefix plus one or more
 * valid tokens, no wildcard, bounded length. The only reply subjects a cloud responder may answer on.
 */
export function isDeviceInboxReply(reply: string, tenant: string, device: string): boolean {
  if (reply.length > MAX_DEVICE_REPLY_LENGTH) return false;
  if (!isValidSubjectToken(tenant) || !isValidSubjectToken(device)) return false;
  const prefix = `${DEVICE_INBOX_ROOT}.${tenant}.${device}.`;
  if (!reply.startsWith(prefix)) return false;
  const rest = reply.slice(prefix.length).split('.');
  return rest.length > 0 && rest.every(isValidSubjectToken);
}
