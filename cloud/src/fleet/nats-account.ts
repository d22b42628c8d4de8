import { readFileSync, statSync } from 'node:fs';
import { createUser } from '@nats-io/nkeys';
import {
  connect,
  jwtAuthenticator,
  type ConnectionOptions,
  type NatsConnection,
} from '@nats-io/transport-node';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { ConfigError } from '../lib/errors.js';
import type { Database } from '../storage/tables.js';
import {
  issueResponderUser,
  issueServiceUser,
  issueSystemUser,
  pushAccountJwt,
  type NatsAuthority,
} from './nats-auth.js';
import { encodeDeviceAuthAccount } from './nats-device-auth.js';
import { deviceAccountKeys, encodeDeviceAccount } from './nats-device-accounts.js';

/**
 * Reads the NatsAuthority JSON (written by ensureNatsAuthority: the dev stack, tests); refuses a readable-by-all
 * file, and one made before the auth callout (no device auth account: ensureNatsAuthority upgrades it).
 */
export function loadNatsAuthority(path: string): NatsAuthority {
  const a = readNatsAuthorityFile(path);
  if (!a.deviceAuth?.calloutUser?.seed || !a.deviceAuth.ticketSigningKey?.seed)
    throw new ConfigError(
      `nats.auth.authorityFile ${path} predates the auth callout (no device auth account): run the dev stack or ensureNatsAuthority on its directory to upgrade it, then reload nats-server`,
    );
  if (!a.tenantAccountSecret)
    throw new ConfigError(
      `nats.auth.authorityFile ${path} predates per-device accounts (no tenantAccountSecret): run the dev stack or ensureNatsAuthority on its directory to upgrade it, then restart nats-server with the new fragment (full resolver)`,
    );
  return a as NatsAuthority;
}

/** The authority file's JSON after the basic checks (mode, version, signing keys); see loadNatsAuthority. */
export function readNatsAuthorityFile(
  path: string,
): Partial<NatsAuthority> & Omit<NatsAuthority, 'deviceAuth'> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new ConfigError(`nats.auth.authorityFile ${path} cannot be read`, { cause });
  }
  if ((statSync(path).mode & 0o077) !== 0)
    throw new ConfigError(`nats.auth.authorityFile ${path} holds signing keys: chmod 600 it`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new ConfigError(`nats.auth.authorityFile ${path} is not JSON`, { cause });
  }
  const a = parsed as Partial<NatsAuthority>;
  if (
    a.version !== 1 ||
    !a.operator?.jwt ||
    !a.account?.deviceSigningKey?.seed ||
    !a.system?.signingKey?.seed
  )
    throw new ConfigError(`nats.auth.authorityFile ${path} is not a Vigil NATS authority (version 1)`);
  return a as NatsAuthority;
}

/**
 * Connects as a freshly minted user: a new nkey pair per process (its seed never leaves memory) and a user JWT
 * from the authority's scoped service, responder (device requests) or system signing key. The JWT lives the authority's longest user
 * lifetime (90 days by default); a cloud process is expected to restart well within that.
 */
export async function connectWithAuthority(
  authority: NatsAuthority,
  role: 'service' | 'responder' | 'system',
  name: string,
  options: ConnectionOptions,
): Promise<NatsConnection> {
  if (role === 'responder' && !authority.account.responderSigningKey?.seed)
    throw new ConfigError(
      'the NATS authority has no responder signing key (made by an older release): let ensureNatsAuthority (the dev stack runs it at start) upgrade its directory once',
    );
  const user = createUser();
  const issue = { service: issueServiceUser, responder: issueResponderUser, system: issueSystemUser }[role];
  const jwt = await issue(authority, { name, userPublicKey: user.getPublicKey() });
  return connect({ ...options, authenticator: jwtAuthenticator(jwt, user.getSeed()) });
}

/** Device accounts this process remembers as pushed; beyond it the oldest is forgotten (pushed again later). */
export const PUSHED_DEVICES_MAX = 100_000;

/**
 * Keeps the account JWTs on the NATS servers (full resolver) in line with PostgreSQL: VIGIL (exports),
 * VIGIL_DEVICE_AUTH (the callout; `allowed_accounts: ["*"]`, and the revoked ticket keys, so the server refuses
 * a revoked ticket before asking the callout) and one `DEVICE_<tenant>.<device>` account per device
 * (nats-device-accounts.ts). VIGIL and VIGIL_DEVICE_AUTH are rebuilt from the database on every push (every
 * cloud process pushes the same JWTs; the revocation list holds the keys of revoked certificates that have not
 * expired yet, so it stays bounded): at start, after each revocation, whenever the system connection
 * reconnects, and every `refreshMs`. Device accounts are pushed lazily, by `ensureDevice`, just before the
 * callout admits the device, once per device and process (the full resolver keeps them on disk); a reconnect
 * of the system connection forgets what was pushed, so each device's account is pushed again at its next
 * connection. So a reconnect costs two pushes, not one per device, and the pushes that follow are paced by
 * device connections, which the callout bounds (maxInFlight, maxQueued).
 */
export class NatsAccountPublisher {
  private running: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly pushes: Counter<'result'>;
  private readonly devicePushes: Counter<'result'>;
  private readonly devicePushSeconds: Histogram;
  private readonly revoked: Gauge;
  /** Device accounts pushed by this process since the last reconnect (the full resolver keeps them). */
  private readonly pushedDevices = new Set<string>();
  /** Pushes in flight, so that concurrent callouts of one device share one push. */
  private readonly pushing = new Map<string, Promise<void>>();

  constructor(
    private readonly db: Kysely<Database>,
    private readonly authority: NatsAuthority,
    private readonly sys: NatsConnection,
    private readonly log: Logger,
    metrics: Registry,
    private readonly now: () => Date = () => new Date(),
    private readonly refreshMs = 300_000,
  ) {
    this.pushes = new Counter({
      name: 'vigil_cloud_nats_account_pushes_total',
      help: 'Pushes of the fixed NATS account JWTs (VIGIL, device auth) to NATS, by result',
      labelNames: ['result'],
      registers: [metrics],
    });
    this.devicePushes = new Counter({
      name: 'vigil_cloud_nats_device_account_pushes_total',
      help: 'Pushes of DEVICE_<tenant>.<device> account JWTs to NATS (before the callout admits a device), by result',
      labelNames: ['result'],
      registers: [metrics],
    });
    this.devicePushSeconds = new Histogram({
      name: 'vigil_cloud_nats_device_account_push_seconds',
      help: 'Time to sign and push one device account JWT (the server answers once it is stored)',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [metrics],
    });
    this.revoked = new Gauge({
      name: 'vigil_cloud_nats_revoked_users',
      help: 'Revoked device ticket keys listed in the device auth account JWT (revoked, not yet expired)',
      registers: [metrics],
    });
    const pushed = this.pushedDevices;
    new Gauge({
      name: 'vigil_cloud_nats_device_accounts',
      help: `Device accounts pushed by this process since its system connection last (re)connected (at most ${PUSHED_DEVICES_MAX})`,
      registers: [metrics],
      collect() {
        this.set(pushed.size);
      },
    });
  }

  async start(): Promise<void> {
    await this.publish();
    void this.watchReconnects();
    this.timer = setInterval(() => void this.publish().catch(() => undefined), this.refreshMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  /**
   * Resolves once the device's own account is on the servers (the callout calls it before admitting the
   * device; the ids are the registry's). A failed push rejects: the callout then refuses, the device retries.
   */
  async ensureDevice(tenantId: string, deviceId: string): Promise<void> {
    const key = `${tenantId}/${deviceId}`;
    if (this.pushedDevices.has(key)) return;
    const inFlight = this.pushing.get(key);
    if (inFlight) return inFlight;
    const p = this.pushDevice(tenantId, deviceId, key).finally(() => this.pushing.delete(key));
    this.pushing.set(key, p);
    return p;
  }

  private async pushDevice(tenantId: string, deviceId: string, key: string): Promise<void> {
    const end = this.devicePushSeconds.startTimer();
    try {
      const a = this.authority;
      const publicKey = deviceAccountKeys(a, tenantId, deviceId).account.publicKey;
      await pushAccountJwt(this.sys, {
        account: { publicKey, jwt: await encodeDeviceAccount(a, tenantId, deviceId) },
      });
      if (this.pushedDevices.size >= PUSHED_DEVICES_MAX)
        this.pushedDevices.delete(this.pushedDevices.values().next().value!);
      this.pushedDevices.add(key);
      this.devicePushes.inc({ result: 'ok' });
    } catch (err) {
      this.devicePushes.inc({ result: 'error' });
      this.log.error({ err: (err as Error).message, tenantId, deviceId }, 'pushing a device account failed');
      throw err;
    } finally {
      end();
    }
  }

  /** Pushes now; concurrent calls coalesce into at most one more push after the one in flight. */
  publish(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.pushOnce();
        } while (this.again && !this.stopped);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  private async pushOnce(): Promise<void> {
    const a = this.authority;
    const revocations = await this.revocations();
    try {
      // VIGIL first (its exports, which the device accounts import), then the callout's account.
      await pushAccountJwt(this.sys, a);
      const deviceAuthJwt = await encodeDeviceAuthAccount(a.deviceAuth, a.operator.signingKey, revocations);
      await pushAccountJwt(this.sys, { account: { publicKey: a.deviceAuth.publicKey, jwt: deviceAuthJwt } });
      this.pushes.inc({ result: 'ok' });
      this.revoked.set(Object.keys(revocations).length);
      this.log.debug({ revocations: Object.keys(revocations).length }, 'NATS account JWTs pushed');
    } catch (err) {
      this.pushes.inc({ result: 'error' });
      this.log.error({ err: (err as Error).message }, 'pushing the NATS account JWTs failed; will retry');
      throw err;
    }
  }

  private async revocations(): Promise<Record<string, number>> {
    const rows = await this.db
      .selectFrom('device_certificates')
      .select(['nats_public_key', (eb) => eb.fn.max('revoked_at').as('at')])
      .where('revoked_at', 'is not', null)
      .where('not_after', '>', this.now())
      .where('nats_public_key', '<>', '')
      .groupBy('nats_public_key')
      .execute();
    const out: Record<string, number> = {};
    // Rounded up: a JWT issued in the second of the revocation is revoked too (the server compares <=).
    for (const r of rows) if (r.at) out[r.nats_public_key] = Math.ceil(new Date(r.at).getTime() / 1000);
    return out;
  }

  private async watchReconnects(): Promise<void> {
    for await (const s of this.sys.status()) {
      if (this.stopped) return;
      if (s.type === 'reconnect') {
        // Possibly another server, or one with a fresh resolver directory: push the fixed accounts now and
        // each device's account again at its next connection (not all of them here: see the class comment).
        this.pushedDevices.clear();
        await this.publish().catch(() => undefined);
      }
    }
  }
}
