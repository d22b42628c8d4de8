/*
 * The device auth account: how a device gets into NATS under nats-server 2.10's auth callout.
 *
 * A device never holds a user JWT of the VIGIL account. Enrollment and renewal give it a *ticket*: a user JWT of
 * the VIGIL_DEVICE_AUTH account for the device's own nkey, naming its tenant and device in tags, with no
 * permissions. That account's JWT carries an `authorization` block: every connection with a ticket is handed
 * by the server to the callout service (fleet/nats-callout.ts) on `$SYS.REQ.USER.AUTH`, with the ticket, the
 * nonce signature and the TLS client certificate chain the server verified. The callout checks that the
 * certificate names the ticket's tenant and device and is not revoked, then answers with a user JWT of the
 * device's own account `DEVICE_<tenant>.<device>` (ids from the registry) for the server-chosen user nkey,
 * signed by that account's scoped device key (nats-device-accounts.ts). So a certificate and creds of two
 * different devices, or a revoked device's unexpired pair, get no connection. Revoked ticket keys are listed
 * in this account's revocations, so the server refuses such a ticket before it even asks the callout.
 *
 * `allowed_accounts` is `["*"]` (jwt.AnyAccount, nats-server >= 2.10: accepted only as the single entry). An
 * explicit list of one account per device would not scale: every new device would re-push this JWT, whose
 * size grows by ~60 bytes per device (10,000 devices: ~600 KB, beyond the 1 MB default max_payload at
 * ~16,000). "*" widens nothing an attacker without the cloud's keys can use: in operator mode the server
 * places the user in the account that ISSUED the user JWT, and only if the signer is one of that account's
 * keys (auth_callout.go: hasIssuer, then the scoped template). VIGIL and SYS have no key the callout signs
 * with; the callout signs only with per-device keys (fleet/nats-callout.ts issueDeviceUser). Whoever holds
 * the callout's and VIGIL's signing keys (the cloud) could place a user in VIGIL with or without "*".
 *
 * `auth_users` (connections that skip the callout): only the callout service's own user, whose fixed nkey is
 * listed in the account JWT. Cloud service users and the SYS user live in the VIGIL and SYS accounts, which
 * have no callout: they keep working while the callout service is down (devices then cannot connect).
 */
import {
  checkKey,
  createAccount,
  createUser,
  encodeAccount,
  encodeUser,
  type Account,
  type SigningKey,
  type UserPermissionsLimits,
} from '@nats-io/jwt';
import type { KeyPair } from '@nats-io/nkeys';
import { isValidSubjectToken } from '@vigil/proto';
import type { NatsAuthority, NatsKey } from './nats-auth.js';
import { nativeKeyPair } from './nkey-crypto.js';

export const DEVICE_AUTH_ACCOUNT_NAME = 'VIGIL_DEVICE_AUTH';
/** Where nats-server 2.10 sends authorization requests (in the account holding the `authorization` block). */
export const AUTH_CALLOUT_SUBJECT = '$SYS.REQ.USER.AUTH';
export const TICKET_TENANT_TAG = 'vigil-tenant';
export const TICKET_DEVICE_TAG = 'vigil-device';
/** jwt.AnyAccount: the callout may place users in any account (nats-server >= 2.10, the only entry). */
export const ANY_ACCOUNT = '*';

/** The online part of the device auth account (persisted inside the NatsAuthority, 0600). */
export interface DeviceAuthAccount {
  name: string;
  publicKey: string;
  jwt: string;
  /** Signs device tickets (scoped: a ticket carries no permission at all). */
  ticketSigningKey: NatsKey;
  /** Signs the callout service's user and its authorization responses (scoped: subscribe to requests only). */
  calloutSigningKey: NatsKey;
  /** The callout service's user nkey: the only `auth_users` entry. */
  calloutUser: NatsKey;
}

export interface DeviceTicketRequest {
  tenantId: string;
  deviceId: string;
  userPublicKey: string;
  expiresInSeconds: number;
  now?: Date;
}

/** Creates the account with fresh keys; the identity seed goes offline with the others. */
export async function createDeviceAuthAccount(
  operatorSigningKey: NatsKey,
): Promise<{ account: DeviceAuthAccount; offline: NatsKey }> {
  const id = newKey(createAccount);
  const account: DeviceAuthAccount = {
    name: DEVICE_AUTH_ACCOUNT_NAME,
    publicKey: id.publicKey,
    jwt: '',
    ticketSigningKey: newKey(createAccount),
    calloutSigningKey: newKey(createAccount),
    calloutUser: newKey(createUser),
  };
  account.jwt = await encodeDeviceAuthAccount(account, operatorSigningKey);
  return { account, offline: id };
}

/**
 * The account JWT: the callout configuration, and two scoped signing keys. Signed by the operator signing key.
 * `revocations`: ticket user keys -> unix seconds.
 */
export async function encodeDeviceAuthAccount(
  acc: DeviceAuthAccount,
  operatorSigningKey: NatsKey,
  revocations: Record<string, number> = {},
): Promise<string> {
  const base: Partial<UserPermissionsLimits> = {
    subs: -1,
    data: -1,
    payload: -1,
    bearer_token: false,
    allowed_connection_types: ['STANDARD'],
  };
  const ticket: SigningKey = {
    kind: 'user_scope',
    key: acc.ticketSigningKey.publicKey,
    role: 'device-ticket',
    template: { ...base, pub: { allow: [], deny: ['>'] }, sub: { allow: [], deny: ['>'] } },
  };
  // A response permission (one reply per request) is what lets it answer into the server's reply inbox.
  const callout: SigningKey = {
    kind: 'user_scope',
    key: acc.calloutSigningKey.publicKey,
    role: 'auth-callout',
    template: {
      ...base,
      pub: { allow: [], deny: ['>'] },
      sub: { allow: [AUTH_CALLOUT_SUBJECT], deny: [] },
      resp: { max: 1, ttl: 0 },
    },
  };
  const claims: Partial<Account> = {
    description: 'Vigil device tickets: every connection goes through the auth callout',
    limits: { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: 0 },
    signing_keys: [ticket, callout],
    default_permissions: { pub: { deny: ['>'] }, sub: { deny: ['>'] } },
    authorization: {
      auth_users: [acc.calloutUser.publicKey],
      // Any account whose own key signed the user JWT (see the header): one account per device.
      allowed_accounts: [ANY_ACCOUNT],
    },
    revocations: { ...revocations },
  };
  return encodeAccount(acc.name, acc.publicKey, claims, { signer: seedPair(operatorSigningKey) });
}

/**
 * A device ticket: what enrollment and renewal hand a device as its `natsUserJwt`. Name `<tenant>/<device>`,
 * tags naming both, for the device's own nkey; it proves nothing alone (the callout also wants the nonce
 * signed with the seed and the certificate of the same device).
 */
export async function issueDeviceTicket(authority: NatsAuthority, req: DeviceTicketRequest): Promise<string> {
  for (const id of [req.tenantId, req.deviceId])
    if (!isValidSubjectToken(id)) throw new Error(`invalid tenant or device id ${JSON.stringify(id)}`);
  checkKey(req.userPublicKey, 'U', false);
  const exp = ticketExpiry(authority, req.expiresInSeconds, req.now);
  const da = authority.deviceAuth;
  return encodeUser(
    `${req.tenantId}/${req.deviceId}`,
    req.userPublicKey,
    da.publicKey,
    { tags: [`${TICKET_TENANT_TAG}:${req.tenantId}`, `${TICKET_DEVICE_TAG}:${req.deviceId}`] },
    { signer: seedPair(da.ticketSigningKey), scopedUser: true, exp },
  );
}

/** The callout service's own user JWT (its fixed nkey is the account's only auth user). */
export async function issueCalloutUser(authority: NatsAuthority, now = new Date()): Promise<string> {
  const da = authority.deviceAuth;
  return encodeUser(
    'service/auth-callout',
    da.calloutUser.publicKey,
    da.publicKey,
    {},
    {
      signer: seedPair(da.calloutSigningKey),
      scopedUser: true,
      exp: Math.floor(now.getTime() / 1000) + authority.account.maxUserLifetimeSeconds,
    },
  );
}

function ticketExpiry(authority: NatsAuthority, seconds: number, now = new Date()): number {
  const max = authority.account.maxUserLifetimeSeconds;
  if (!Number.isInteger(seconds) || seconds <= 0 || seconds > max)
    throw new Error(`expiresInSeconds must be an integer in 1..${max}, got ${seconds}`);
  return Math.floor(now.getTime() / 1000) + seconds;
}

function newKey(create: () => ReturnType<typeof createAccount>): NatsKey {
  const kp = create();
  return { publicKey: kp.getPublicKey(), seed: new TextDecoder().decode(kp.getSeed()) };
}

// The account's few signing keys, each imported once: importing a seed (~0.4 ms) cost more than the
// signature of a device ticket. Bounded: the ticket and callout keys of the current and a rotated authority.
const signers = new Map<string, KeyPair>();
const SIGNERS_MAX = 8;

/** Signs with OpenSSL (nkey-crypto.ts): tweetnacl takes ~70 ms per signature on a loaded host. */
function seedPair(key: NatsKey): KeyPair {
  let kp = signers.get(key.seed);
  if (!kp) {
    kp = nativeKeyPair(key.seed);
    if (signers.size >= SIGNERS_MAX) signers.delete(signers.keys().next().value!);
    signers.set(key.seed, kp);
  }
  return kp;
}
