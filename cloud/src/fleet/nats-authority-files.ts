import { chmodSync, existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadNatsAuthority } from './nats-account.js';
import {
  createNatsAuthority,
  natsServerAuthConfig,
  upgradeNatsAuthority,
  type NatsAuthority,
} from './nats-auth.js';

export interface NatsAuthorityFiles {
  /** The online authority (signing keys): the cloud's `nats.auth.authorityFile`, 0600. */
  authorityFile: string;
  /** Identity seeds of operator and accounts: move them offline in production, 0600. */
  offlineKeysFile: string;
  /** The nats-server config fragment (operator, accounts, resolver): `include` it, no secrets. */
  serverConfigFile: string;
  authority: NatsAuthority;
  created: boolean;
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
 * signing key a newer release needs (the responder's), set the account's stream limit, and rewrite the server fragment with a freshly signed
 * account JWT (so a config reload picks up the current permission templates). Secrets 0600.
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
  if (existsSync(authorityFile)) {
    // An older authority gains the responder signing key, and the account JWT the current templates.
    const loaded = loadNatsAuthority(authorityFile);
    const limitChanged = loaded.account.jetstream.streams !== maxStreams;
    loaded.account.jetstream = { ...loaded.account.jetstream, streams: maxStreams };
    const upgraded = await upgradeNatsAuthority(loaded);
    authority = upgraded.authority;
    if (upgraded.changed || limitChanged) writePrivate(authorityFile, JSON.stringify(authority, null, 2));
  } else {
    const made = await createNatsAuthority({ jetstream: { streams: maxStreams } });
    authority = made.authority;
    writePrivate(offlineKeysFile, JSON.stringify(made.offline, null, 2));
    writePrivate(authorityFile, JSON.stringify(authority, null, 2));
    created = true;
  }
  writeAtomic(serverConfigFile, natsServerAuthConfig(authority) + '\n', 0o644);
  return { authorityFile, offlineKeysFile, serverConfigFile, authority, created };
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
