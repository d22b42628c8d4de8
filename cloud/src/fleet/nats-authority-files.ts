import { createAccount } from '@nats-io/jwt';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readNatsAuthorityFile } from './nats-account.js';
import {
  createNatsAuthority,
  natsServerAuthConfig,
  resignAccounts,
  upgradeNatsAuthority,
  type NatsAuthority,
  type NatsOfflineKeys,
} from './nats-auth.js';
import { createDeviceAuthAccount } from './nats-device-auth.js';

export interface NatsAuthorityFiles {
  /** The online authority (signing keys): the cloud's `nats.auth.authorityFile`, 0600. */
  authorityFile: string;
  /** Identity seeds of operator and accounts: move them offline in production, 0600. */
  offlineKeysFile: string;
  /** The nats-server config fragment (operator, accounts, resolver): `include` it, no secrets. */
  serverConfigFile: string;
  authority: NatsAuthority;
  created: boolean;
  /** The authority predated the auth callout and was upgraded on this run (see upgradeForCallout). */
  upgraded: boolean;
}

/**
 * Streams the VIGIL account may hold: exactly the cloud's own (EVENTS, DEAD_LETTER, TELEMETRY, MEDIA, JOBS).
 * No headroom on purpose: a device can aim a PubAck at `$JS.API.STREAM.RESTORE.<name>`, and nats-server 2.10
 * then starts a restore that waits for chunks forever (a subscription and a temp file per PubAck) unless
 * the account is at its stream limit. Raise it (`maxStreams`) only with a stream of your own to add.
 */
export const ACCOUNT_MAX_STREAMS = 5;

export interface NatsAuthorityOptions {
  /** The account's JetStream stream limit, applied to a new and to an existing authority. */
  maxStreams?: number;
}

/**
 * Creates the NATS operator, accounts and signing keys in `dir` on the first run; later runs load them, add a
 * signing key a newer release needs (the responder's), set the VIGIL account's stream limit, and rewrite the server fragment with freshly signed
 * account JWTs (so a config reload picks up the current permission templates). Secrets 0600. An authority
 * made before the auth callout is upgraded in place (upgradeForCallout).
 */
export async function ensureNatsAuthority(
  dir: string,
  opts: NatsAuthorityOptions = {},
): Promise<NatsAuthorityFiles> {
  const maxStreams = opts.maxStreams ?? ACCOUNT_MAX_STREAMS;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const authorityFile = join(dir, 'authority.json');
  const offlineKeysFile = join(dir, 'offline-keys.json');
  const serverConfigFile = join(dir, 'nats-auth.conf');
  let authority: NatsAuthority;
  let created = false;
  let upgraded = false;
  if (existsSync(authorityFile)) {
    // An older authority gains the responder signing key, and the account JWT the current templates.
    const loaded = readNatsAuthorityFile(authorityFile);
    const limitChanged = loaded.account.jetstream.streams !== maxStreams;
    loaded.account.jetstream = { ...loaded.account.jetstream, streams: maxStreams };
    const responder = await upgradeNatsAuthority(loaded);
    let changed = responder.changed || limitChanged;
    if (responder.authority.deviceAuth) authority = responder.authority as NatsAuthority;
    else {
      const up = await upgradeForCallout(responder.authority);
      authority = up.authority;
      addOfflineKey(offlineKeysFile, up.offlineDeviceAuth);
      upgraded = true;
      changed = true;
    }
    if (changed) writePrivate(authorityFile, JSON.stringify(authority, null, 2));
  } else {
    const made = await createNatsAuthority({ jetstream: { streams: maxStreams } });
    authority = made.authority;
    writePrivate(offlineKeysFile, JSON.stringify(made.offline, null, 2));
    writePrivate(authorityFile, JSON.stringify(authority, null, 2));
    created = true;
  }
  writeAtomic(serverConfigFile, natsServerAuthConfig(authority) + '\n', 0o644);
  return { authorityFile, offlineKeysFile, serverConfigFile, authority, created, upgraded };
}

/**
 * Adds the device auth account to an authority made before the auth callout, and rotates the VIGIL device
 * signing key: device JWTs of the old scheme (VIGIL users held by devices, no callout, no certificate binding)
 * stop working at once, so a device must present a ticket. Agents get one at their next renewal (gRPC over
 * mutual TLS, which does not need NATS); until then they buffer offline. The SYS account is re-signed too
 * (its user may now find and kick sessions).
 */
export async function upgradeForCallout(
  old: Omit<NatsAuthority, 'deviceAuth'>,
): Promise<{ authority: NatsAuthority; offlineDeviceAuth: NatsKeyPair }> {
  const made = await createDeviceAuthAccount(old.operator.signingKey);
  const kp = createAccount();
  const rotated: NatsAuthority = {
    ...old,
    account: {
      ...old.account,
      deviceSigningKey: { publicKey: kp.getPublicKey(), seed: new TextDecoder().decode(kp.getSeed()) },
    },
    deviceAuth: made.account,
  };
  return { authority: await resignAccounts(rotated), offlineDeviceAuth: made.offline };
}

type NatsKeyPair = NatsOfflineKeys['deviceAuth'];

function addOfflineKey(path: string, key: NatsKeyPair): void {
  // The offline file may have been moved away already (as it should in production): keep the new seed apart.
  const target = existsSync(path) ? path : `${path.replace(/\.json$/, '')}.device-auth.json`;
  const current = existsSync(target) ? (JSON.parse(readFileSync(target, 'utf8')) as object) : {};
  writePrivate(target, JSON.stringify({ ...current, deviceAuth: key }, null, 2));
}

function writePrivate(path: string, text: string): void {
  writeAtomic(path, text, 0o600);
}

function writeAtomic(path: string, text: string, mode: number): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, path);
}
