/*
 * Vigil on NATS decentralized (operator/JWT) authorization, for nats-server >= 2.10 (auth callout).
 *
 * Trust chain:
 *   operator identity key (offline) -> operator JWT naming an operator SIGNING key
 *   operator signing key (online)   -> account JWTs (VIGIL, SYSTEM); re-signed to revoke users
 *   account identity keys (offline) -> only the subject of their account JWT; never sign users
 *   DEVICE_<tenant>.<device>        -> one account per device, no JetStream (nats-device-accounts.ts): the
 *                                      device is its only user and reaches VIGIL only through service imports
 *                                      of its own subjects, so a PubAck or an answer returns to it alone
 *   per-device "device" signing key -> its user JWT (scoped: the permissions come from the account JWT)
 *   VIGIL "service" signing key     -> cloud service user JWTs (scoped)
 *   VIGIL "responder" signing key   -> the cloud user that answers device requests (scoped: it may publish
 *                                      on service import replies `_R_.>` and nowhere else)
 *   SYSTEM "system" signing key     -> the user that pushes account JWT updates ($SYS claims update)
 *   VIGIL_DEVICE_AUTH account       -> device tickets and the auth callout (nats-device-auth.ts): a device
 *                                      enters its tenant account only through the callout, which binds its
 *                                      certificate; revoked ticket keys are listed in this account
 *
 * Every user signing key is SCOPED (a `user_scope` signing key with a permission template in the account JWT):
 * a user JWT signed with it carries no permissions of its own (the server refuses one that does) and gets the
 * template, filled in from the user's tags. So the online device key can only mint users of the device shape
 * (vigil.v1 device subjects and an inbox, never the JetStream API, `$SYS`, `_INBOX.>` or replies), and a
 * permission change is one account JWT update. nats-server does not validate tag values, so a leaked device
 * key could still mint `vigil-tenant:*` (every device's subjects): the ids are validated here, at issue.
 *
 * No user has a response permission (`resp`): nats-server lets a user with one publish to ANY reply subject
 * it received, even one its deny list names, so a device choosing the reply subject of its request would make
 * the answering user a confused deputy. Device requests are answered by the responder user, whose only
 * publish right is `_DEVINBOX.>`, and every responder checks the reply against the requesting device's own
 * inbox first (fleet/device-reply.ts).
 *
 * Nothing here does I/O except `pushAccountJwt`, which uses a connection the caller built.
 * Seeds are returned for persistence: store them 0600 and never log them (`describeNatsAuthority` is the
 * loggable view).
 */
import type { NatsConnection } from '@nats-io/transport-node';
import {
  checkKey,
  createAccount,
  createOperator,
  decode,
  encodeAccount,
  encodeOperator,
  encodeUser,
  fmtCreds,
  fromSeed,
  type Account,
  type Operator,
  type SigningKey,
  type User,
  type UserPermissionsLimits,
} from '@nats-io/jwt';
import {
  DEVICE_INBOX_ROOT,
  isValidSubjectToken,
  deviceInboxPrefix as inboxPrefixOf,
  SUBJECT_PREFIX,
} from '@vigil/proto';
import {
  createDeviceAuthAccount,
  encodeDeviceAuthAccount,
  type DeviceAuthAccount,
} from './nats-device-auth.js';
import { nativeKeyPair } from './nkey-crypto.js';
import {
  DEVICE_MAX_SUBSCRIPTIONS,
  issueAccountDeviceUser,
  vigilDeviceExports,
} from './nats-device-accounts.js';

export { DEVICE_MAX_SUBSCRIPTIONS };

/** A public nkey and its seed (the seed is a secret). */
export interface NatsKey {
  publicKey: string;
  seed: string;
}

/** JetStream limits of the VIGIL account (-1 = bounded only by the server's own limits). */
export interface AccountJetStreamLimits {
  memStorage: number;
  diskStorage: number;
  streams: number;
  consumers: number;
}

/** Subjects a cloud service user may use (allow lists; everything else is denied). */
export interface ServicePermissions {
  pubAllow: string[];
  subAllow: string[];
}

/**
 * What the cloud keeps online to issue and revoke NATS users. JSON-serializable: persist it 0600.
 * It holds no account identity seed and not the operator identity seed (see `NatsOfflineKeys`).
 */
export interface NatsAuthority {
  version: 1;
  operator: { name: string; publicKey: string; jwt: string; signingKey: NatsKey };
  system: { name: string; publicKey: string; jwt: string; signingKey: NatsKey };
  /** Root of every device account's keys (nats-device-accounts.ts); base64 of 32 random bytes. */
  tenantAccountSecret: string;
  account: {
    name: string;
    publicKey: string;
    jwt: string;
    /** Unused since devices live in tenant accounts (not in VIGIL's JWT any more); kept for older files. */
    deviceSigningKey: NatsKey;
    serviceSigningKey: NatsKey;
    /** Signs the responder users (RESPONDER_PERMISSIONS). Missing in authorities made before it: see upgradeNatsAuthority. */
    responderSigningKey: NatsKey;
    jetstream: AccountJetStreamLimits;
    servicePermissions: ServicePermissions;
    /** Longest lifetime of any user JWT this authority issues; revocations older than this are pruned. */
    maxUserLifetimeSeconds: number;
    /** User public key -> unix seconds: JWTs of that user issued at or before it are revoked. */
    revocations: Record<string, number>;
  };
  /** Device tickets and the auth callout (nats-device-auth.ts). */
  deviceAuth: DeviceAuthAccount;
}

/** Identity seeds needed only to rotate signing keys or re-root the operator: keep them offline. */
export interface NatsOfflineKeys {
  operator: NatsKey;
  system: NatsKey;
  account: NatsKey;
  deviceAuth: NatsKey;
}

export interface CreateNatsAuthorityOptions {
  operatorName?: string;
  accountName?: string;
  jetstream?: Partial<AccountJetStreamLimits>;
  servicePermissions?: ServicePermissions;
  /** Default 90 days. Device JWTs are renewed well before; a revocation entry lives this long. */
  maxUserLifetimeSeconds?: number;
}

export interface DeviceUserRequest {
  tenantId: string;
  deviceId: string;
  /** The device's own user nkey (it generated the pair and keeps the seed). */
  userPublicKey: string;
  expiresInSeconds: number;
  now?: Date;
}

export interface ServiceUserRequest {
  name: string;
  userPublicKey: string;
  /** Default and cap: the authority's maxUserLifetimeSeconds. */
  expiresInSeconds?: number;
  now?: Date;
}

export const DEFAULT_ACCOUNT_NAME = 'VIGIL';
export const SYSTEM_ACCOUNT_NAME = 'SYS';
export const DEFAULT_MAX_USER_LIFETIME_SECONDS = 90 * 86_400;

/**
 * Tags that the device template reads (nats-server fills in a template only where it is a whole subject
 * token, which every use here is). The server does not validate tag values (a '*' or '.' in one widens the
 * permission): issueDeviceUser validates the ids, so only a leaked device signing key could.
 */
const TENANT_TAG = 'vigil-tenant';
const DEVICE_TAG = 'vigil-device';
const T = `{{tag(${TENANT_TAG})}}`;
const D = `{{tag(${DEVICE_TAG})}}`;

/**
 * The inbox prefix a device connects with (`inboxPrefix` option of nats.js): `_DEVINBOX.<tenant>.<device>`
 * (@vigil/proto deviceInboxPrefix, which the agent uses too). One root token for every device inbox, so that
 * `_DEVINBOX.>` names them all and nothing else, and shares nothing with the `_INBOX.` of other clients.
 */
export function deviceInboxPrefix(tenantId: string, deviceId: string): string {
  checkIds(tenantId, deviceId);
  return inboxPrefixOf(tenantId, deviceId);
}

/**
 * Device permissions as a scoped-signer template. Publish: only its own subjects (events, heartbeats,
 * status, ReceiptQuery requests on its rcpt subject). A JetStream publish needs nothing else: the stream
 * captures the subject and the PubAck goes to the reply inbox, which the device may subscribe to. Subscribe:
 * its config and receipt subjects and its own inbox prefix. No `resp` permission (a device answers no
 * requests), no JetStream API.
 */
export const DEVICE_PERMISSION_TEMPLATE = {
  pubAllow: [`${SUBJECT_PREFIX}.${T}.${D}.>`],
  subAllow: [
    `${SUBJECT_PREFIX}.${T}.${D}.cfg`,
    `${SUBJECT_PREFIX}.${T}.${D}.rcpt`,
    `${DEVICE_INBOX_ROOT}.${T}.${D}.>`,
  ],
} as const;

/**
 * Denied to device subscriptions whatever the tags say: defence in depth should the template ever take a
 * free-text tag again (a device's own subjects never match these).
 */
export const DEVICE_SUB_DENY: readonly string[] = ['_INBOX.>', '$JS.>'];

/**
 * Default service permissions: the Vigil subjects, the JetStream API, acks and flow control, its own
 * `_INBOX.` replies. No response permission and no `_DEVINBOX.>`: this user never answers a device (the
 * responder user does), so no device-chosen reply subject is ever published with these rights.
 */
export const DEFAULT_SERVICE_PERMISSIONS: ServicePermissions = {
  pubAllow: ['vigil.>', '$JS.API.>', '$JS.ACK.>', '$JS.FC.>', '_INBOX.>'],
  subAllow: ['vigil.>', '_INBOX.>', '$JS.EVENT.>'],
};

/** Replies of requests that crossed a service import (nats-server's response mapping prefix). */
export const SERVICE_IMPORT_REPLY = '_R_.>';

/**
 * The responder user: receives device requests (config status, receipt queries) and may publish only into
 * device inboxes. Every responder also checks that the reply is the REQUESTING device's inbox (a device may
 * name another device's inbox), see fleet/device-reply.ts.
 */
export const RESPONDER_PERMISSIONS: ServicePermissions = {
  // Devices live in tenant accounts: their requests reach VIGIL through service imports, whose reply subject
  // is the server's `_R_.…` mapping back into the requesting tenant account. Nothing else is answered.
  pubAllow: [SERVICE_IMPORT_REPLY],
  subAllow: [`${SUBJECT_PREFIX}.*.*.status`, `${SUBJECT_PREFIX}.*.*.rcpt`],
};

/**
 * The system user pushes account JWT updates, and disconnects a revoked device's sessions: it finds them with
 * CONNZ (by user name `<tenant>/<device>`) and kicks them (2.10), because a callout user's nkey is chosen by the
 * server and no account revocation list can name it in advance.
 */
const SYSTEM_USER_PERMISSIONS = {
  pubAllow: ['$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE', '$SYS.REQ.SERVER.PING.CONNZ', '$SYS.REQ.SERVER.*.KICK'],
  subAllow: ['_INBOX.>'],
};

/** Concrete device permissions (the template filled in), e.g. for display and tests. */
export function devicePermissions(tenantId: string, deviceId: string): ServicePermissions {
  checkIds(tenantId, deviceId);
  const fill = (s: string): string => s.replaceAll(T, tenantId).replaceAll(D, deviceId);
  return {
    pubAllow: DEVICE_PERMISSION_TEMPLATE.pubAllow.map(fill),
    subAllow: DEVICE_PERMISSION_TEMPLATE.subAllow.map(fill),
  };
}

/** Creates the operator, the SYSTEM account and the VIGIL account (JetStream enabled) with fresh keys. */
export async function createNatsAuthority(
  opts: CreateNatsAuthorityOptions = {},
): Promise<{ authority: NatsAuthority; offline: NatsOfflineKeys }> {
  const operatorName = opts.operatorName ?? 'vigil';
  const accountName = opts.accountName ?? DEFAULT_ACCOUNT_NAME;
  const maxUserLifetimeSeconds = opts.maxUserLifetimeSeconds ?? DEFAULT_MAX_USER_LIFETIME_SECONDS;
  if (!Number.isInteger(maxUserLifetimeSeconds) || maxUserLifetimeSeconds <= 0) {
    throw new Error(`maxUserLifetimeSeconds must be a positive integer, got ${maxUserLifetimeSeconds}`);
  }
  const operatorId = newKey(createOperator);
  const operatorSigner = newKey(createOperator);
  const systemId = newKey(createAccount);
  const systemSigner = newKey(createAccount);
  const accountId = newKey(createAccount);
  const deviceAuth = await createDeviceAuthAccount(operatorSigner);

  const operatorClaims: Partial<Operator> = {
    system_account: systemId.publicKey,
    signing_keys: [operatorSigner.publicKey],
  };
  const operatorJwt = await encodeOperator(operatorName, seedPair(operatorId), operatorClaims);

  const authority: NatsAuthority = {
    version: 1,
    tenantAccountSecret: newTenantAccountSecret(),
    operator: {
      name: operatorName,
      publicKey: operatorId.publicKey,
      jwt: operatorJwt,
      signingKey: operatorSigner,
    },
    system: { name: SYSTEM_ACCOUNT_NAME, publicKey: systemId.publicKey, jwt: '', signingKey: systemSigner },
    deviceAuth: deviceAuth.account,
    account: {
      name: accountName,
      publicKey: accountId.publicKey,
      jwt: '',
      deviceSigningKey: newKey(createAccount),
      serviceSigningKey: newKey(createAccount),
      responderSigningKey: newKey(createAccount),
      jetstream: {
        memStorage: opts.jetstream?.memStorage ?? -1,
        diskStorage: opts.jetstream?.diskStorage ?? -1,
        streams: opts.jetstream?.streams ?? -1,
        consumers: opts.jetstream?.consumers ?? -1,
      },
      servicePermissions: opts.servicePermissions ?? DEFAULT_SERVICE_PERMISSIONS,
      maxUserLifetimeSeconds,
      revocations: {},
    },
  };
  authority.system.jwt = await encodeSystemAccount(authority);
  authority.account.jwt = await encodeVigilAccount(authority);
  return {
    authority,
    offline: { operator: operatorId, system: systemId, account: accountId, deviceAuth: deviceAuth.offline },
  };
}

/**
 * A user JWT for a device in its own account `DEVICE_<tenant>.<device>` (nats-device-accounts.ts): name
 * `<tenant>/<device>`, signed by that account's scoped device key, whose template names the device's
 * subjects. Devices never receive one: the auth callout issues it
 * for the user nkey the server chose for the connection (fleet/nats-callout.ts), after checking the device's
 * ticket and certificate. Used directly only by tests of the permissions.
 */
export async function issueDeviceUser(authority: NatsAuthority, req: DeviceUserRequest): Promise<string> {
  checkIds(req.tenantId, req.deviceId);
  const exp = expiry(authority, req.expiresInSeconds, req.now);
  return issueAccountDeviceUser(authority, {
    tenantId: req.tenantId,
    deviceId: req.deviceId,
    userPublicKey: userKey(req.userPublicKey),
    exp,
  });
}

/** A user JWT for a cloud service (the scoped service key: DEFAULT_SERVICE_PERMISSIONS or the configured set). */
export async function issueServiceUser(authority: NatsAuthority, req: ServiceUserRequest): Promise<string> {
  checkName(req.name);
  const exp = expiry(authority, req.expiresInSeconds ?? authority.account.maxUserLifetimeSeconds, req.now);
  return encodeUser(
    `service/${req.name}`,
    userKey(req.userPublicKey),
    authority.account.publicKey,
    { tags: ['vigil-role:service'] },
    { signer: seedPair(authority.account.serviceSigningKey), scopedUser: true, exp },
  );
}

/** A user JWT for the responder (RESPONDER_PERMISSIONS: publishes only into device inboxes, no `resp`). */
export async function issueResponderUser(authority: NatsAuthority, req: ServiceUserRequest): Promise<string> {
  checkName(req.name);
  const exp = expiry(authority, req.expiresInSeconds ?? authority.account.maxUserLifetimeSeconds, req.now);
  return encodeUser(
    `responder/${req.name}`,
    userKey(req.userPublicKey),
    authority.account.publicKey,
    { tags: ['vigil-role:responder'] },
    { signer: seedPair(authority.account.responderSigningKey), scopedUser: true, exp },
  );
}

/**
 * Brings an authority made by an older release up to date: adds the responder signing key if it has none
 * and re-signs the account JWT with the current permission templates. `changed`: a key was added, so the
 * caller must persist it (every cloud process must use the same responder key: never upgrade in memory only).
 */
export async function upgradeNatsAuthority<
  T extends Pick<NatsAuthority, 'account' | 'operator'> & Partial<Pick<NatsAuthority, 'tenantAccountSecret'>>,
>(authority: T): Promise<{ authority: T; changed: boolean }> {
  const missing = !(authority.account as Partial<NatsAuthority['account']>).responderSigningKey?.seed;
  // Tenant accounts (devices out of VIGIL): the secret their keys derive from; persisted like the keys.
  const noSecret = !authority.tenantAccountSecret;
  const next: T = {
    ...authority,
    tenantAccountSecret: authority.tenantAccountSecret ?? newTenantAccountSecret(),
    account: {
      ...authority.account,
      responderSigningKey: missing ? newKey(createAccount) : authority.account.responderSigningKey,
    },
  };
  // Re-signed either way (a fresh JWT differs in iat/jti alone, so that says nothing about a change).
  next.account.jwt = await encodeVigilAccount(next);
  return { authority: next, changed: missing || noSecret };
}

/** A SYSTEM account user that may only push account JWT updates (see pushAccountJwt). */
export async function issueSystemUser(authority: NatsAuthority, req: ServiceUserRequest): Promise<string> {
  checkName(req.name);
  const exp = expiry(authority, req.expiresInSeconds ?? authority.account.maxUserLifetimeSeconds, req.now);
  return encodeUser(
    `system/${req.name}`,
    userKey(req.userPublicKey),
    authority.system.publicKey,
    {},
    { signer: seedPair(authority.system.signingKey), scopedUser: true, exp },
  );
}

/** Where the full resolver keeps account JWTs, relative to nats-server's working directory by default. */
export const DEFAULT_RESOLVER_DIR = 'jwt';

/**
 * The nats-server config fragment (append to a config with `tls { verify: true }` and `jetstream {}`):
 * operator, system account and a FULL resolver (account JWTs in `resolverDir`, pushed updates and new accounts
 * taken at run time: the cloud adds a `DEVICE_<tenant>.<device>` account per device), preloaded with the three fixed
 * account JWTs and any `extraAccounts` (public key -> JWT). Holds no seed. The auth callout is configured
 * inside the VIGIL_DEVICE_AUTH account JWT (its `authorization` block), so nothing else is needed here;
 * `verify: true` is, because the callout reads the client certificate chain the server verified.
 * A MEMORY resolver cannot take a new account at run time (nats-server 2.10 answers the push "skipped").
 */
export function natsServerAuthConfig(
  authority: NatsAuthority,
  opts: { resolverDir?: string; extraAccounts?: Record<string, string> } = {},
): string {
  const extra = Object.entries(opts.extraAccounts ?? {}).map(([k, jwt]) => `  ${k}: ${JSON.stringify(jwt)}`);
  return [
    `operator: ${JSON.stringify(authority.operator.jwt)}`,
    `system_account: ${authority.system.publicKey}`,
    // allow_delete false: no one can remove an account by a pushed message.
    `resolver: { type: full, dir: ${JSON.stringify(opts.resolverDir ?? DEFAULT_RESOLVER_DIR)}, allow_delete: false, interval: "2m" }`,
    'resolver_preload: {',
    `  ${authority.account.publicKey}: ${JSON.stringify(authority.account.jwt)}`,
    `  ${authority.system.publicKey}: ${JSON.stringify(authority.system.jwt)}`,
    `  ${authority.deviceAuth.publicKey}: ${JSON.stringify(authority.deviceAuth.jwt)}`,
    ...extra,
    '}',
  ].join('\n');
}

/** A `.creds` file (user JWT + user seed) for clients that load credentials: store it 0600. */
export function credsFile(userJwt: string, seed: string | Uint8Array): Uint8Array {
  const kp = fromSeed(typeof seed === 'string' ? new TextEncoder().encode(seed) : seed);
  if (!kp.getPublicKey().startsWith('U')) throw new Error('credsFile needs a user seed (SU...)');
  const sub = decode<User>(userJwt).sub;
  if (sub !== kp.getPublicKey()) throw new Error('credsFile: the seed does not belong to the JWT subject');
  return fmtCreds(userJwt, kp);
}

/**
 * Revokes every JWT of `userPublicKey` issued at or before `at` (second granularity: a JWT issued in the same
 * second as `at` is revoked too) and re-signs the account JWT. Entries older than maxUserLifetimeSeconds are
 * pruned (every JWT they could revoke has expired), so the list stays bounded. Returns a new authority; apply
 * it with pushAccountJwt and by rewriting natsServerAuthConfig (then reload).
 */
export async function revokeUser(
  authority: NatsAuthority,
  userPublicKey: string,
  at: Date,
  now: Date = at,
): Promise<NatsAuthority> {
  userKey(userPublicKey);
  const nowSec = Math.floor(now.getTime() / 1000);
  const atSec = Math.floor(at.getTime() / 1000);
  const revocations: Record<string, number> = {};
  for (const [key, when] of Object.entries(authority.account.revocations)) {
    if (when + authority.account.maxUserLifetimeSeconds >= nowSec) revocations[key] = when;
  }
  revocations[userPublicKey] = Math.max(atSec, revocations[userPublicKey] ?? 0);
  const next: NatsAuthority = { ...authority, account: { ...authority.account, revocations } };
  next.account.jwt = await encodeVigilAccount(next);
  return next;
}

/**
 * The authority with exactly this revocation list (user public key -> unix seconds; JWTs issued at or before
 * are revoked) and the account JWT re-signed. The cloud keeps revocations in PostgreSQL and rebuilds the list
 * from there (fleet/nats-account.ts), so that every cloud process pushes the same account JWT.
 */
export async function withRevocations(
  authority: NatsAuthority,
  revocations: Record<string, number>,
): Promise<NatsAuthority> {
  for (const k of Object.keys(revocations)) userKey(k);
  const next: NatsAuthority = {
    ...authority,
    account: { ...authority.account, revocations: { ...revocations } },
  };
  next.account.jwt = await encodeVigilAccount(next);
  return next;
}

/**
 * Re-signs every account JWT from the authority's current keys and settings (after a signing key rotation or a
 * change of the system user's permissions). Revocations are kept.
 */
export async function resignAccounts(authority: NatsAuthority): Promise<NatsAuthority> {
  const next: NatsAuthority = { ...authority };
  next.system = { ...authority.system, jwt: await encodeSystemAccount(authority) };
  next.account = { ...authority.account, jwt: await encodeVigilAccount(authority) };
  next.deviceAuth = {
    ...authority.deviceAuth,
    jwt: await encodeDeviceAuthAccount(authority.deviceAuth, authority.operator.signingKey),
  };
  return next;
}

/** The subject on which a SYSTEM user pushes an account JWT (VIGIL's by default) to running servers. */
export function accountUpdateSubject(authority: { account: { publicKey: string } }): string {
  return `$SYS.REQ.ACCOUNT.${authority.account.publicKey}.CLAIMS.UPDATE`;
}

/**
 * Pushes an account JWT (`authority.account`: VIGIL's, or any other account's key and JWT) to the server(s)
 * through a SYSTEM user connection; connected users
 * that it revokes are disconnected at once. Resolves with the server's message, rejects on an error answer.
 * With several servers, each one answers: this waits for the first (run it per server, or rely on reload).
 */
export async function pushAccountJwt(
  nc: Pick<NatsConnection, 'request'>,
  authority: { account: { publicKey: string; jwt: string } },
  timeoutMs = 5_000,
): Promise<string> {
  const reply = await nc.request(accountUpdateSubject(authority), authority.account.jwt, {
    timeout: timeoutMs,
  });
  const body = reply.json<{
    data?: { code?: number; message?: string };
    error?: { code?: number; description?: string };
  }>();
  if (body.data?.code === 200) return body.data.message ?? 'ok';
  throw new Error(
    `account JWT update refused: ${body.error?.code ?? body.data?.code ?? '?'} ${body.error?.description ?? body.data?.message ?? reply.string()}`,
  );
}

/** A loggable summary (public keys and counts only; no seed, no JWT). */
export function describeNatsAuthority(authority: NatsAuthority): Record<string, unknown> {
  return {
    operator: authority.operator.publicKey,
    operatorSigningKey: authority.operator.signingKey.publicKey,
    systemAccount: authority.system.publicKey,
    account: authority.account.publicKey,
    accountName: authority.account.name,
    deviceSigningKey: authority.account.deviceSigningKey.publicKey,
    serviceSigningKey: authority.account.serviceSigningKey.publicKey,
    responderSigningKey: authority.account.responderSigningKey.publicKey,
    deviceAuthAccount: authority.deviceAuth.publicKey,
    calloutUser: authority.deviceAuth.calloutUser.publicKey,
    revocations: Object.keys(authority.account.revocations).length,
  };
}

// ---- internals

/** Account limits: every field spelled out, because one left out counts as 0 for nats-server (0 connections). */
const OPEN_ACCOUNT_LIMITS = {
  subs: -1,
  data: -1,
  payload: -1,
  imports: -1,
  exports: -1,
  wildcards: true,
  conn: -1,
  leaf: -1,
};

/** Users signed by a key without a template get these (none are issued; defence in depth). */
const DENY_ALL = { pub: { deny: ['>'] }, sub: { deny: ['>'] } };

function scoped(
  key: string,
  role: string,
  allow: ServicePermissions,
  extra: Partial<UserPermissionsLimits>,
  subDeny: readonly string[] = [],
): SigningKey {
  // Built by hand rather than newScopedSigner(): that one fills in `resp: {max: 0, ttl: 0}`, which nats-server
  // 2.9.10 reads as "responses allowed" (a device could answer into any requester's _INBOX), checked here.
  const template: Partial<UserPermissionsLimits> = {
    pub: { allow: [...allow.pubAllow], deny: [] },
    sub: { allow: [...allow.subAllow], deny: [...subDeny] },
    subs: -1,
    data: -1,
    payload: -1,
    bearer_token: false,
    allowed_connection_types: ['STANDARD'],
    ...extra,
  };
  return { kind: 'user_scope', key, role, template };
}

async function encodeVigilAccount(a: Pick<NatsAuthority, 'account' | 'operator'>): Promise<string> {
  const acc = a.account;
  const claims: Partial<Account> = {
    description: 'Vigil devices and cloud services',
    limits: {
      ...OPEN_ACCOUNT_LIMITS,
      mem_storage: acc.jetstream.memStorage,
      disk_storage: acc.jetstream.diskStorage,
      streams: acc.jetstream.streams,
      consumer: acc.jetstream.consumers,
    },
    // Devices are not VIGIL users (no device signing key here): each lives in its own account that imports
    // exactly its own part of these (nats-device-accounts.ts).
    exports: vigilDeviceExports(),
    signing_keys: [
      // No `resp` for either (see the header): device requests are answered by the responder user.
      scoped(acc.serviceSigningKey.publicKey, 'service', acc.servicePermissions, {}),
      scoped(acc.responderSigningKey.publicKey, 'responder', RESPONDER_PERMISSIONS, {}),
    ],
    default_permissions: DENY_ALL,
    revocations: { ...acc.revocations },
  };
  return encodeAccount(acc.name, acc.publicKey, claims, { signer: seedPair(a.operator.signingKey) });
}

async function encodeSystemAccount(a: NatsAuthority): Promise<string> {
  const claims: Partial<Account> = {
    limits: { ...OPEN_ACCOUNT_LIMITS },
    signing_keys: [scoped(a.system.signingKey.publicKey, 'system', SYSTEM_USER_PERMISSIONS, {})],
    default_permissions: DENY_ALL,
  };
  return encodeAccount(a.system.name, a.system.publicKey, claims, {
    signer: seedPair(a.operator.signingKey),
  });
}

function newTenantAccountSecret(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64');
}

function newKey(create: () => ReturnType<typeof createAccount>): NatsKey {
  const kp = create();
  return { publicKey: kp.getPublicKey(), seed: new TextDecoder().decode(kp.getSeed()) };
}

/** Signs with OpenSSL (nkey-crypto.ts): tweetnacl takes ~70 ms per signature on a loaded host. */
function seedPair(key: NatsKey): ReturnType<typeof fromSeed> {
  return nativeKeyPair(key.seed);
}

function userKey(publicKey: string): string {
  try {
    checkKey(publicKey, 'U', false);
  } catch {
    throw new Error(`not a NATS user public key (U...): ${JSON.stringify(publicKey.slice(0, 8))}...`);
  }
  return publicKey;
}

function expiry(authority: NatsAuthority, expiresInSeconds: number, now = new Date()): number {
  if (
    !Number.isInteger(expiresInSeconds) ||
    expiresInSeconds <= 0 ||
    expiresInSeconds > authority.account.maxUserLifetimeSeconds
  ) {
    throw new Error(
      `expiresInSeconds must be an integer in 1..${authority.account.maxUserLifetimeSeconds}, got ${expiresInSeconds}`,
    );
  }
  return Math.floor(now.getTime() / 1000) + expiresInSeconds;
}

function checkIds(tenantId: string, deviceId: string): void {
  for (const [role, value] of [
    ['tenant', tenantId],
    ['device', deviceId],
  ] as const) {
    if (!isValidSubjectToken(value)) {
      throw new Error(
        `invalid ${role} id ${JSON.stringify(value)}: must be non-empty and contain no '.', '*', '>' or whitespace`,
      );
    }
  }
}

function checkName(name: string): void {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) {
    throw new Error(`invalid user name ${JSON.stringify(name)}: 1-64 of A-Z a-z 0-9 _ -`);
  }
}
