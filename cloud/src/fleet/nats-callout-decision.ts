/*
 * The auth callout's decision, without I/O: what a device must present to get a NATS session, checked in two
 * steps around one registry lookup (checkCalloutRequest, then admitDevice). Everything in the request except
 * the server's signature on it is the client's word: the ticket is verified against our key, the nonce
 * signature against the ticket's nkey, and the certificate is the chain the server verified against the fleet
 * CA (`tls { verify: true }`), whose names must equal the ticket's.
 */
import { X509Certificate } from 'node:crypto';
import { checkKey, type AuthorizationRequest } from '@nats-io/jwt';
import { deviceUri } from '@vigil/certs';
import { isValidSubjectToken } from '@vigil/proto';
import { TICKET_DEVICE_TAG, TICKET_TENANT_TAG } from './nats-device-auth.js';
import { decodeNatsJwt, verifyNkey } from './nkey-crypto.js';

export const CALLOUT_RESULTS = [
  'admitted',
  'bad_request',
  'ticket_invalid',
  'ticket_expired',
  'nonce_signature',
  'no_certificate',
  'certificate_mismatch',
  'certificate_expired',
  'certificate_unknown',
  'certificate_revoked',
  'device_revoked',
  'key_unknown',
  'key_revoked',
  'busy',
  'late',
  'error',
] as const;
export type CalloutResult = (typeof CALLOUT_RESULTS)[number];
export type CalloutRefusalReason = Exclude<CalloutResult, 'admitted'>;

/** What the callout trusts: the device auth account and its ticket signing key (public keys). */
export interface CalloutTrust {
  deviceAuthAccount: string;
  ticketSigningKey: string;
}

/** A request whose ticket, nonce signature and certificate are consistent; the registry decides the rest. */
export interface CheckedRequest {
  serverId: string;
  /** The nkey the server chose for this connection: the issued user JWT must be for it. */
  userNkey: string;
  tenantId: string;
  deviceId: string;
  /** The device's own nkey (the ticket's subject). */
  ticketKey: string;
  ticketIssuedAt: Date;
  ticketExpiresAt: Date;
  certSerial: string;
  certNotAfter: Date;
}

/** The registry's view of the certificate and the ticket's key (fleet/nats-callout.ts reads it). */
export interface RegistryRecord {
  certificate:
    | {
        tenantId: string;
        deviceId: string;
        notAfter: Date;
        revokedAt: Date | null;
        deviceRevokedAt: Date | null;
      }
    | undefined;
  /** The ticket's key was issued to this tenant/device with some certificate. */
  keyIssuedToDevice: boolean;
  /**
   * Latest revocation of a certificate of this device that carried this key. Only this device's: a revocation
   * on another device that was (wrongly) given the same key must not lock this one out.
   */
  keyRevokedAt: Date | null;
}

export type Refusal = {
  ok: false;
  reason: CalloutRefusalReason;
  message: string;
  /** Present when the request itself was readable: a refusal can then be answered (else: no answer). */
  to?: { serverId: string; userNkey: string };
};
export type Checked = { ok: true; request: CheckedRequest } | Refusal;
export type Admission = { ok: true; expiresAt: Date } | Refusal;

/** Step 1: the request JWT (from the server), the ticket, the nonce signature and the certificate's names. */
export function checkCalloutRequest(requestJwt: string, trust: CalloutTrust, now: Date): Checked {
  let req: Partial<AuthorizationRequest>;
  let to: { serverId: string; userNkey: string };
  try {
    const claims = decodeNatsJwt<AuthorizationRequest>(requestJwt);
    req = claims.nats;
    // decodeNatsJwt verified the signature of `iss`; it must be the server that asks, about a user nkey.
    if (claims.iss !== req.server_id?.id || !claims.iss.startsWith('N'))
      return refuse('bad_request', 'request not signed by the server it names');
    const userNkey = req.user_nkey ?? '';
    checkKey(userNkey, 'U', false);
    to = { serverId: req.server_id.id, userNkey };
  } catch (err) {
    return refuse('bad_request', `unreadable authorization request: ${(err as Error).message}`);
  }
  const r = (reason: CalloutRefusalReason, message: string): Refusal => refuse(reason, message, to);

  const ticketJwt = req.connect_opts?.jwt;
  if (!ticketJwt) return r('ticket_invalid', 'no user JWT presented');
  let ticket: ReturnType<typeof decodeNatsJwt<{ tags?: string[]; issuer_account?: string; type?: string }>>;
  try {
    ticket = decodeNatsJwt(ticketJwt);
    checkKey(ticket.sub, 'U', false);
  } catch (err) {
    return r('ticket_invalid', `user JWT not valid: ${(err as Error).message}`);
  }
  if (ticket.iss !== trust.ticketSigningKey || ticket.nats.issuer_account !== trust.deviceAuthAccount)
    return r('ticket_invalid', 'user JWT not issued by the device ticket key');
  if (ticket.nats.type !== 'user') return r('ticket_invalid', 'not a user JWT');
  const nowSec = now.getTime() / 1000;
  if (typeof ticket.exp !== 'number' || ticket.exp <= nowSec) return r('ticket_expired', 'user JWT expired');
  if (typeof ticket.nbf === 'number' && ticket.nbf > nowSec)
    return r('ticket_invalid', 'user JWT not yet valid');
  const tenantId = tagValue(ticket.nats.tags, TICKET_TENANT_TAG);
  const deviceId = tagValue(ticket.nats.tags, TICKET_DEVICE_TAG);
  if (!tenantId || !deviceId || !isValidSubjectToken(tenantId) || !isValidSubjectToken(deviceId))
    return r('ticket_invalid', 'user JWT names no valid tenant and device');
  if (ticket.name !== `${tenantId}/${deviceId}`)
    return r('ticket_invalid', 'user JWT name disagrees with its tags');

  // Possession of the ticket's seed: the server's nonce signed with it (the server passes both along).
  if (!verifyNonce(ticket.sub, req.client_info?.nonce, req.connect_opts?.sig))
    return r('nonce_signature', 'nonce signature does not match the user JWT');

  const leafPem = req.client_tls?.verified_chains?.[0]?.[0];
  if (!leafPem) return r('no_certificate', 'no client certificate verified by the server');
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(leafPem);
  } catch {
    return r('no_certificate', 'client certificate unreadable');
  }
  const names = certificateNames(cert);
  let expectedUri: string;
  try {
    expectedUri = deviceUri(tenantId, deviceId);
  } catch {
    return r('ticket_invalid', 'user JWT names no valid tenant and device');
  }
  if (names.commonNames.length !== 1 || names.commonNames[0] !== deviceId)
    return r('certificate_mismatch', `certificate CN does not name device ${deviceId}`);
  if (names.uris.length !== 1 || names.uris[0] !== expectedUri)
    return r('certificate_mismatch', `certificate URI SAN does not name ${tenantId}/${deviceId}`);
  const notAfter = new Date(cert.validTo);
  if (notAfter <= now || new Date(cert.validFrom) > now)
    return r('certificate_expired', 'client certificate outside its validity');

  return {
    ok: true,
    request: {
      serverId: to.serverId,
      userNkey: to.userNkey,
      tenantId,
      deviceId,
      ticketKey: ticket.sub,
      ticketIssuedAt: new Date((ticket.iat ?? 0) * 1000),
      ticketExpiresAt: new Date(ticket.exp * 1000),
      certSerial: cert.serialNumber.toUpperCase(),
      certNotAfter: notAfter,
    },
  };
}

/**
 * Step 2: the registry. The certificate must be ours, for the same device, unrevoked and unexpired, on a device
 * that is not revoked; the ticket's key must have been issued to this device and not revoked after the ticket
 * was issued. The session ends no later than the ticket and the certificate.
 */
export function admitDevice(req: CheckedRequest, rec: RegistryRecord, now: Date): Admission {
  const to = { serverId: req.serverId, userNkey: req.userNkey };
  const r = (reason: CalloutRefusalReason, message: string): Refusal => refuse(reason, message, to);
  const c = rec.certificate;
  if (!c) return r('certificate_unknown', 'certificate not issued by this fleet');
  if (c.tenantId !== req.tenantId || c.deviceId !== req.deviceId)
    return r('certificate_mismatch', 'certificate registered to another device');
  if (c.revokedAt !== null) return r('certificate_revoked', 'certificate revoked');
  if (c.deviceRevokedAt !== null) return r('device_revoked', 'device revoked');
  if (c.notAfter <= now) return r('certificate_expired', 'certificate expired');
  if (!rec.keyIssuedToDevice) return r('key_unknown', 'user key not issued to this device');
  if (rec.keyRevokedAt !== null && rec.keyRevokedAt >= req.ticketIssuedAt)
    return r('key_revoked', 'user key revoked');
  const end = Math.min(req.ticketExpiresAt.getTime(), req.certNotAfter.getTime(), c.notAfter.getTime());
  if (end - now.getTime() < 1000) return r('certificate_expired', 'credentials expire within a second');
  return { ok: true, expiresAt: new Date(end) };
}

function refuse(reason: CalloutRefusalReason, message: string, to?: Refusal['to']): Refusal {
  return to ? { ok: false, reason, message, to } : { ok: false, reason, message };
}

function tagValue(tags: string[] | undefined, name: string): string | undefined {
  // Exactly one value: a ticket naming two tenants or devices is refused rather than guessed at.
  const values = (tags ?? []).filter((t) => t.startsWith(`${name}:`)).map((t) => t.slice(name.length + 1));
  return values.length === 1 ? values[0] : undefined;
}

function verifyNonce(key: string, nonce: string | undefined, sig: string | undefined): boolean {
  if (!nonce || !sig) return false;
  try {
    // nats.js sends standard base64, other clients base64url: Node's decoder reads both.
    const bytes = Buffer.from(sig, sig.includes('-') || sig.includes('_') ? 'base64url' : 'base64');
    return verifyNkey(key, new TextEncoder().encode(nonce), bytes);
  } catch {
    return false;
  }
}

/** CN values of the subject and URI SANs (Node quotes a value with special characters: it then matches no id). */
export function certificateNames(cert: X509Certificate): { commonNames: string[]; uris: string[] } {
  const commonNames = cert.subject
    .split('\n')
    .filter((l) => l.startsWith('CN='))
    .map((l) => l.slice(3));
  const uris = (cert.subjectAltName ?? '')
    .split(', ')
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
  return { commonNames, uris };
}
