/*
 * Per-device NATS accounts (issue 12: a stolen gateway touches only its own subjects; design and verification:
 * DEVICES-ACCOUNT.md).
 *
 * Each device is the only user of its own account `DEVICE_<tenant>.<device>`, an account without JetStream and
 * without exports. It reaches VIGIL's streams and responders through service imports of ITS OWN subjects only,
 * and receives its configs and receipts through stream imports of its own `cfg` and `rcpt`. A publish crossing
 * a service import gets a fresh `_R_.…` reply in VIGIL, and the server maps the answer (a JetStream PubAck, a
 * responder's answer) back into the device's account, onto whatever subject the device named: nobody else
 * subscribes there, so a hostile reply subject reaches only the device itself. Not VIGIL's JetStream API or
 * internal subjects, not another tenant, and (what per-tenant accounts left open) not a peer of the same
 * tenant either (verified on nats-server 2.10.27: test/nats-devices-account-verify.test.ts, and the
 * adversarial suite test/security-nats.test.ts, `contained=0`).
 *
 * Keys: each device account's identity key and scoped signing key are derived from the authority's
 * `tenantAccountSecret`, the tenant id and the device id (HMAC-SHA256, then Ed25519 with OpenSSL: microseconds),
 * so every cloud process computes the same accounts with nothing stored, no migration. The account JWTs are
 * signed by the operator signing key and pushed to the full resolver before the auth callout admits the device
 * (fleet/nats-account.ts NatsAccountPublisher.ensureDevice).
 */
import { createHmac } from 'node:crypto';
import { encodeAccount, encodeUser, type Account, type Export, type Import, type User } from '@nats-io/jwt';
import type { KeyPair } from '@nats-io/nkeys';
import { DEVICE_INBOX_ROOT, isValidSubjectToken, SUBJECT_PREFIX } from '@vigil/proto';
import type { NatsKey } from './nats-auth.js';
import { nativeKeyPair, nkeyFromRawSeed } from './nkey-crypto.js';

/** Account names are `DEVICE_<tenant>.<device>` (a name is descriptive: the server keys accounts by public key). */
export const DEVICE_ACCOUNT_PREFIX = 'DEVICE_';
/** Subscriptions one device connection may hold (the agent needs ~3: rcpt, cfg, its request inbox). */
export const DEVICE_MAX_SUBSCRIPTIONS = 64;
/** Connections of one device account at once (the agent holds one; a reconnect overlaps briefly). */
export const DEVICE_MAX_CONNECTIONS = 4;
const DEVICE_TAG = 'vigil-device';
const TENANT_TAG = 'vigil-tenant';

/**
 * What a device publishes into VIGIL (service imports; a JetStream stream or a responder answers) and what it
 * receives from VIGIL (stream imports). `rcpt` is both: receipt queries go in, pushed receipts come out.
 */
const SERVICE_KINDS = ['evt.*', 'media.*', 'hb', 'status', 'rcpt'] as const;
const STREAM_KINDS = ['cfg', 'rcpt'] as const;

/** What the authority needs to derive and sign device accounts. */
export interface DeviceAccountAuthority {
  operator: { signingKey: NatsKey };
  account: { publicKey: string; maxUserLifetimeSeconds: number };
  /**
   * 32 random bytes, base64: the root of every device account's keys. A secret, like the signing keys. (Named
   * for the per-tenant accounts it first derived; kept so that no authority file changes.)
   */
  tenantAccountSecret: string;
}

export interface DeviceAccountKeys {
  tenantId: string;
  deviceId: string;
  name: string;
  account: NatsKey;
  deviceSigningKey: NatsKey;
  /** Signs the device's users (OpenSSL), made once per derivation. */
  signer: KeyPair;
}

/** VIGIL's exports: every device's subjects (each device account imports only its own). */
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

/** Bounded: at most this many derivations kept (a miss costs two HMACs and two OpenSSL key derivations). */
const DERIVED_MAX = 16_384;
const derived = new Map<string, DeviceAccountKeys>();

/** The device account's keys, derived (the same in every cloud process); throws on an invalid id. */
export function deviceAccountKeys(
  a: DeviceAccountAuthority,
  tenantId: string,
  deviceId: string,
): DeviceAccountKeys {
  for (const id of [tenantId, deviceId])
    if (!isValidSubjectToken(id)) throw new Error(`invalid tenant or device id ${JSON.stringify(id)}`);
  const cacheKey = `${a.tenantAccountSecret}\n${tenantId}\n${deviceId}`;
  const hit = derived.get(cacheKey);
  if (hit) return hit;
  const secret = Buffer.from(a.tenantAccountSecret, 'base64');
  if (secret.length < 32) throw new Error('tenantAccountSecret must hold at least 32 bytes (base64)');
  const key = (purpose: string): NatsKey => {
    // Ids are subject tokens (no NUL): the input is unambiguous. A purpose string distinct from the per-tenant
    // accounts' (`vigil-tenant-account`): a device account never shares keys with an old tenant account.
    const raw = createHmac('sha256', secret)
      .update(`vigil-device-account\0${purpose}\0${tenantId}\0${deviceId}`)
      .digest();
    return nkeyFromRawSeed(raw, 0);
  };
  const deviceSigningKey = key('device-signing');
  const keys: DeviceAccountKeys = {
    tenantId,
    deviceId,
    name: `${DEVICE_ACCOUNT_PREFIX}${tenantId}.${deviceId}`,
    account: key('identity'),
    deviceSigningKey,
    signer: nativeKeyPair(deviceSigningKey.seed),
  };
  if (derived.size >= DERIVED_MAX) derived.delete(derived.keys().next().value!);
  derived.set(cacheKey, keys);
  return keys;
}

/**
 * The device account JWT: no JetStream, no exports, imports of this device's own subjects only, and a scoped
 * signing key whose template names the device literally (no tag can widen it). `revocations` (user key -> unix
 * seconds) is empty in production: a device is revoked through its ticket (nats-device-auth.ts).
 */
export async function encodeDeviceAccount(
  a: DeviceAccountAuthority,
  tenantId: string,
  deviceId: string,
  revocations: Record<string, number> = {},
): Promise<string> {
  const k = deviceAccountKeys(a, tenantId, deviceId);
  const own = `${SUBJECT_PREFIX}.${tenantId}.${deviceId}`;
  const imports: Import[] = [
    ...SERVICE_KINDS.map((kind): Import => ({
      name: kind,
      type: 'service',
      subject: `${own}.${kind}`,
      account: a.account.publicKey,
    })),
    ...STREAM_KINDS.map((kind): Import => ({
      name: `${kind} delivery`,
      type: 'stream',
      subject: `${own}.${kind}`,
      account: a.account.publicKey,
    })),
  ];
  const claims: Partial<Account> = {
    description: `Vigil device ${tenantId}/${deviceId}`,
    // JetStream disabled (0): `$JS.API.>` in this account is nobody. No exports: nothing leaves but the imports.
    limits: {
      subs: -1,
      data: -1,
      payload: -1,
      imports: SERVICE_KINDS.length + STREAM_KINDS.length,
      exports: 0,
      wildcards: true,
      conn: DEVICE_MAX_CONNECTIONS,
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
          pub: { allow: [`${own}.>`], deny: [] },
          sub: {
            allow: [`${own}.cfg`, `${own}.rcpt`, `${DEVICE_INBOX_ROOT}.${tenantId}.${deviceId}.>`],
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
  return encodeAccount(k.name, k.account.publicKey, claims, { signer: operatorSigner(a) });
}

let lastOperator: { seed: string; signer: KeyPair } | undefined;
/** The operator signing key as a signer, made once (one authority per process; a key import per device else). */
function operatorSigner(a: DeviceAccountAuthority): KeyPair {
  const seed = a.operator.signingKey.seed;
  if (lastOperator?.seed !== seed) lastOperator = { seed, signer: nativeKeyPair(seed) };
  return lastOperator.signer;
}

/**
 * The device's user of its own account (name `<tenant>/<device>`, tags naming both for logs and monitoring),
 * signed by the account's scoped device key: what the auth callout answers with. `exp` in unix seconds.
 */
export async function issueAccountDeviceUser(
  a: DeviceAccountAuthority,
  req: { tenantId: string; deviceId: string; userPublicKey: string; exp: number },
): Promise<string> {
  const k = deviceAccountKeys(a, req.tenantId, req.deviceId);
  const claims: Partial<User> = { tags: [`${TENANT_TAG}:${req.tenantId}`, `${DEVICE_TAG}:${req.deviceId}`] };
  return encodeUser(`${req.tenantId}/${req.deviceId}`, req.userPublicKey, k.account.publicKey, claims, {
    signer: k.signer,
    scopedUser: true,
    exp: req.exp,
  });
}
