import { readFileSync } from 'node:fs';
import {
  credsAuthenticator,
  type Authenticator,
  type NatsConnection,
  type NodeConnectionOptions,
} from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { AgentConfigError } from '../config/load.js';
import type { AgentConfig } from '../config/schema.js';
import type { IdentityClient } from './client.js';
import { IdentityRenewer } from './renewer.js';
import { defaultIdentityDir, IdentityStore, type DeviceIdentity } from './store.js';

export interface DeviceIds {
  tenantId: string;
  siteId: string;
  deviceId: string;
}

export interface ResolvedIdentity {
  /** Who the agent is: from the config's `device`, else from the enrolled identity. */
  device: DeviceIds;
  /** The enrolled identity, when there is one. */
  identity: DeviceIdentity | undefined;
  store: IdentityStore;
}

/**
 * Works out the agent's identity at start-up. The config's `device` (pre-provisioned: dev stack, tests) and
 * the enrolled identity may both be there, but then they must name the same device: publishing as one
 * device with another device's certificate is refused by NATS and would only show up as silent drops.
 * A stored identity that cannot be used (mismatched key, unreadable file) is an IdentityError naming the file.
 */
export function resolveDeviceIdentity(
  config: Readonly<AgentConfig>,
  onWarning?: (message: string) => void,
): ResolvedIdentity {
  const dir = config.identity.dir ?? defaultIdentityDir(config.dataDir);
  const store = new IdentityStore(dir, { onWarning });
  const identity = store.load();
  const fromConfig = config.device;
  if (!fromConfig && !identity) {
    throw new AgentConfigError(
      `this device is not enrolled: the config has no "device" section and ${dir} holds no identity. ` +
        'Run vigil-agent enroll first (vigil-agent enroll --help)',
      { code: 'NOT_ENROLLED' },
    );
  }
  if (fromConfig && identity) {
    const enrolled = { tenantId: identity.tenantId, siteId: identity.siteId, deviceId: identity.deviceId };
    if (Object.entries(fromConfig).some(([k, v]) => enrolled[k as keyof DeviceIds] !== v)) {
      throw new AgentConfigError(
        `the config's device ${describe(fromConfig)} differs from the enrolled identity ${describe(enrolled)} ` +
          `in ${dir}: remove "device" from the config (the identity names the device), or point ` +
          'identity.dir at the matching identity',
        { code: 'IDENTITY_CONFLICT' },
      );
    }
  }
  const device = fromConfig ?? {
    tenantId: identity!.tenantId,
    siteId: identity!.siteId,
    deviceId: identity!.deviceId,
  };
  return { device: { ...device }, identity, store };
}

function describe(d: DeviceIds): string {
  return `${d.tenantId}/${d.siteId}/${d.deviceId}`;
}

/** How the agent reaches NATS: the config's `nats` if set, else the enrolled identity's, else offline. */
export interface NatsPlan {
  source: 'config' | 'identity';
  options: Pick<NodeConnectionOptions, 'servers' | 'tls' | 'authenticator'>;
}

/**
 * Files, not contents, throughout: nats.js reads tls.caFile/certFile/keyFile again for every connection it
 * makes (NodeTransport.loadClientCerts on each dial), and the creds authenticator below re-reads its file for
 * every CONNECT. The identity's paths go through its `current` symlink, so after a renewal the next
 * connection presents the new certificate and JWT; the agent then forces one with nc.reconnect().
 */
export function natsPlan(
  config: Readonly<AgentConfig>,
  identity: DeviceIdentity | undefined,
): NatsPlan | undefined {
  if (config.nats) {
    const { servers, tls, credsFile } = config.nats;
    return {
      source: 'config',
      options: {
        servers: [...servers],
        tls: { ...tls },
        ...(credsFile ? { authenticator: rereadingCreds(credsFile) } : {}),
      },
    };
  }
  if (!identity || identity.natsUrls.length === 0) return undefined;
  const f = identity.files;
  return {
    source: 'identity',
    options: {
      servers: [...identity.natsUrls],
      tls: { caFile: f.ca, certFile: f.cert, keyFile: f.key },
      authenticator: rereadingCreds(f.creds),
    },
  };
}

/** credsAuthenticator over a function: the file is read at each CONNECT, so a renewed JWT is picked up. */
function rereadingCreds(path: string): Authenticator {
  return credsAuthenticator(() => readFileSync(path));
}

/**
 * Starts renewing the identity the agent runs with. `nc` is the connection that uses the identity's files
 * (undefined when NATS is pre-provisioned or off): once a renewal is stored, a forced reconnect presents the
 * new certificate and JWT now rather than whenever the link next drops, long before the old ones expire.
 * The uplink already treats a reconnect like any other (it re-queries receipts and resumes).
 */
export function startIdentityRenewal(p: {
  config: Readonly<AgentConfig>;
  store: IdentityStore;
  identity: DeviceIdentity;
  nc: NatsConnection | undefined;
  registry: Registry;
  log: Logger;
  client?: IdentityClient;
  now?: () => Date;
}): IdentityRenewer {
  const { nc, log } = p;
  const renewer = new IdentityRenewer({
    store: p.store,
    identity: p.identity,
    registry: p.registry,
    logger: log,
    client: p.client,
    endpoint: p.config.identity.grpcEndpoint,
    policy: { atFraction: p.config.identity.renew.atFraction },
    now: p.now,
    onRenewed: async () => {
      if (nc && !nc.isClosed() && !nc.isDraining()) {
        log.info('reconnecting to NATS with the renewed identity');
        await nc.reconnect();
      }
    },
  });
  renewer.start();
  return renewer;
}
