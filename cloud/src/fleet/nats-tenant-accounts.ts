/*
 * Per-tenant device accounts (issue 12, PubAck reply subjects; design and verification: DEVICES-ACCOUNT.md).
 *
 * Devices are users of `DEVICES_<tenant>`, an account without JetStream, never of VIGIL. They reach VIGIL's
 * streams and responders through service imports of their own tenant's subjects only, and receive configs and
 * receipts through stream imports. A publish crossing a service import gets a fresh `_R_.…` reply in VIGIL, and
 * the server maps the answer (a JetStream PubAck, a responder's answer) back into the tenant account: whatever
 * reply subject a device names, VIGIL's JetStream API, its internal subjects and every other tenant are out of
 * reach (verified on nats-server 2.10: test/nats-devices-account-verify.test.ts).
 *
 * Keys: each tenant account's identity key and scoped device signing key are derived from the authority's
 * `tenantAccountSecret` and the tenant id (HMAC-SHA256), so every cloud process computes the same accounts with
 * nothing stored per tenant. The account JWTs are signed by the operator signing key and pushed to the full
 * resolver (fleet/nats-account.ts NatsAccountPublisher).
 */
import { createHmac } from 'node:crypto';
import { encodeAccount, encodeUser, type Account, type Export, type Import, type User } from '@nats-io/jwt';
import { fromSeed } from '@nats-io/nkeys';
import { DEVICE_INBOX_ROOT, isValidSubjectToken, SUBJECT_PREFIX } from '@vigil/proto';
import type { NatsKey } from './nats-auth.js';
import { nativeKeyPair } from './nkey-crypto.js';

export const TENANT_ACCOUNT_PREFIX = 'DEVICES_';
/** Subscriptions one device connection may hold (the agent needs ~3: rcpt, cfg, its request inbox). */
export const DEVICE_MAX_SUBSCRIPTIONS = 64;
const DEVICE_TAG = 'vigil-device';
const TENANT_TAG = 'vigil-tenant';
const D = `{{tag(${DEVICE_TAG})}}`;

/**
 * What a device publishes into VIGIL (service imports; a JetStream stream or a responder answers) and what it
 * receives from VIGIL (stream imports). `rcpt` is both: receipt queries go in, pushed receipts come out.
 */
const SERVICE_KINDS = ['evt.*', 'media.*', 'hb', 'status', 'rcpt'] as const;
const STREAM_KINDS = ['cfg', 'rcpt'] as const;

/** What the authority needs to derive and sign tenant accounts. */
export interface TenantAccountAuthority {
  operator: { signingKey: NatsKey };
  account: { publicKey: string; maxUserLifetimeSeconds: number };
  /** 32 random bytes, base64: the root of every tenant account's keys. A secret, like the signing keys. */
  tenantAccountSecret: string;
}

export interface TenantAccountKeys {
  tenantId: string;
  name: string;
  account: NatsKey;
  deviceSigningKey: NatsKey;
}

/** VIGIL's exports: every tenant's device subjects (each tenant account imports only its own). */
export function vigilDeviceExports(): Export[] {
  const services: Export[] = SERVICE_KINDS.map((k) => ({
    name: `device ${k}`,
    type: 'service',
    subject: `${SUBJECT_PREFIX}.*.*.${k}`,
    // One answer per request (a PubAck, a responder's answer); the `_R_` mapping then goes away.
    response_type: 'Singleton',
  }));
  const streams: Export[] = STREAM_KINDS.map((k) => ({
    name: `device ${k} delivery`,
    type: 'stream',
    subject: `${SUBJECT_PREFIX}.*.*.${k}`,
  }));
  return [...services, ...streams];
}

const derived = new Map<string, TenantAccountKeys>();

/** The tenant account's keys, derived (the same in every cloud process); throws on an invalid tenant id. */
export function tenantAccountKeys(a: TenantAccountAuthority, tenantId: string): TenantAccountKeys {
  if (!isValidSubjectToken(tenantId)) throw new Error(`invalid tenant id ${JSON.stringify(tenantId)}`);
  const cacheKey = `${a.tenantAccountSecret}\n${tenantId}`;
  const hit = derived.get(cacheKey);
  if (hit) return hit;
  const secret = Buffer.from(a.tenantAccountSecret, 'base64');
  if (secret.length < 32) throw new Error('tenantAccountSecret must hold at least 32 bytes (base64)');
  const key = (purpose: string): NatsKey => {
    const raw = createHmac('sha256', secret).update(`vigil-tenant-account\0${purpose}\0${tenantId}`).digest();
    const seed = encodeAccountSeed(raw);
    return { publicKey: fromSeed(new TextEncoder().encode(seed)).getPublicKey(), seed };
  };
  const keys: TenantAccountKeys = {
    tenantId,
    name: `${TENANT_ACCOUNT_PREFIX}${tenantId}`,
    account: key('identity'),
    deviceSigningKey: key('device-signing'),
  };
  if (derived.size >= 4096) derived.delete(derived.keys().next().value!);
  derived.set(cacheKey, keys);
  return keys;
}

/**
 * The tenant account JWT: no JetStream, the device permission template with the tenant written in (a tag can
 * never name another tenant), imports of this tenant's subjects only, and the revoked device users.
 */
export async function encodeTenantAccount(
  a: TenantAccountAuthority,
  tenantId: string,
  revocations: Record<string, number> = {},
): Promise<string> {
  const k = tenantAccountKeys(a, tenantId);
  const t = tenantId;
  const imports: Import[] = [
    ...SERVICE_KINDS.map((kind): Import => ({
      name: `${kind}`,
      type: 'service',
      subject: `${SUBJECT_PREFIX}.${t}.*.${kind}`,
      account: a.account.publicKey,
    })),
    ...STREAM_KINDS.map((kind): Import => ({
      name: `${kind} delivery`,
      type: 'stream',
      subject: `${SUBJECT_PREFIX}.${t}.*.${kind}`,
      account: a.account.publicKey,
    })),
  ];
  const claims: Partial<Account> = {
    description: `Vigil devices of tenant ${t}`,
    // JetStream disabled (0): `$JS.API.>` in this account is nobody.
    limits: {
      subs: -1,
      data: -1,
      payload: -1,
      imports: -1,
      exports: 0,
      wildcards: true,
      conn: -1,
      leaf: 0,
      mem_storage: 0,
      disk_storage: 0,
      streams: 0,
      consumer: 0,
    },
    signing_keys: [
      {
        kind: 'user_scope',
        key: k.deviceSigningKey.publicKey,
        role: 'device',
        // Built by hand: newScopedSigner adds `resp`, which would let a device answer any request it receives.
        template: {
          pub: { allow: [`${SUBJECT_PREFIX}.${t}.${D}.>`], deny: [] },
          sub: {
            allow: [
              `${SUBJECT_PREFIX}.${t}.${D}.cfg`,
              `${SUBJECT_PREFIX}.${t}.${D}.rcpt`,
              `${DEVICE_INBOX_ROOT}.${t}.${D}.>`,
            ],
            deny: ['_INBOX.>', '$JS.>'],
          },
          subs: DEVICE_MAX_SUBSCRIPTIONS,
          data: -1,
          payload: -1,
          bearer_token: false,
          allowed_connection_types: ['STANDARD'],
        },
      },
    ],
    default_permissions: { pub: { deny: ['>'] }, sub: { deny: ['>'] } },
    imports,
    revocations: { ...revocations },
  };
  return encodeAccount(k.name, k.account.publicKey, claims, {
    signer: nativeKeyPair(a.operator.signingKey.seed),
  });
}

/**
 * A device user of its tenant account (name `<tenant>/<device>`, tags the template reads), signed by the tenant
 * account's scoped device key: what the auth callout answers with. `exp` in unix seconds.
 */
export async function issueTenantDeviceUser(
  a: TenantAccountAuthority,
  req: { tenantId: string; deviceId: string; userPublicKey: string; exp: number },
): Promise<string> {
  if (!isValidSubjectToken(req.deviceId))
    throw new Error(`invalid device id ${JSON.stringify(req.deviceId)}`);
  const k = tenantAccountKeys(a, req.tenantId);
  const claims: Partial<User> = { tags: [`${TENANT_TAG}:${req.tenantId}`, `${DEVICE_TAG}:${req.deviceId}`] };
  return encodeUser(`${req.tenantId}/${req.deviceId}`, req.userPublicKey, k.account.publicKey, claims, {
    signer: nativeKeyPair(k.deviceSigningKey.seed),
    scopedUser: true,
    exp: req.exp,
  });
}

/** The subject on which a SYSTEM user pushes one tenant account JWT. */
export function tenantAccountUpdateSubject(a: TenantAccountAuthority, tenantId: string): string {
  return `$SYS.REQ.ACCOUNT.${tenantAccountKeys(a, tenantId).account.publicKey}.CLAIMS.UPDATE`;
}

// ---- nkey seed encoding (prefix bytes, raw seed, CRC-16/XMODEM little-endian, base32 without padding)

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function encodeAccountSeed(raw: Buffer): string {
  // Seed prefix (18 << 3) with the account role (0) split over two bytes, as nkeys does.
  const body = Buffer.concat([Buffer.from([18 << 3, 0]), raw.subarray(0, 32)]);
  const crc = crc16(body);
  const full = Buffer.concat([body, Buffer.from([crc & 0xff, crc >> 8])]);
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of full) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  return out;
}

function crc16(data: Uint8Array): number {
  let crc = 0;
  for (const b of data) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}
