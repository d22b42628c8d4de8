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
import { Counter, Gauge, type Registry } from 'prom-client';
import { isValidSubjectToken } from '@vigil/proto';
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
import { encodeTenantAccount, tenantAccountKeys } from './nats-tenant-accounts.js';

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
      `nats.auth.authorityFile ${path} predates per-tenant device accounts (no tenantAccountSecret): run the dev stack or ensureNatsAuthority on its directory to upgrade it, then restart nats-server with the new fragment (full resolver)`,
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

/**
 * Keeps the account JWTs on the NATS servers (full resolver) in line with PostgreSQL: VIGIL (exports), one
 * `DEVICES_<tenant>` account per tenant (nats-tenant-accounts.ts) and VIGIL_DEVICE_AUTH, whose JWT lists the
 * tenant accounts the callout may place devices in and the revoked ticket keys (the server then refuses a
 * revoked ticket before asking the callout). Everything is rebuilt from the database on every push, so every
 * cloud process pushes the same JWTs; the revocation list holds the NATS keys of revoked certificates that
 * have not expired yet, so it stays bounded. Pushed at start, after each revocation, whenever the system
 * connection reconnects, every `refreshMs`, and before the callout admits a device of a tenant not pushed yet
 * (`ensureTenant`).
 */
export class NatsAccountPublisher {
  private running: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly pushes: Counter<'result'>;
  private readonly revoked: Gauge;
  private readonly tenantsGauge: Gauge;
  /** Tenants whose account JWT was pushed by this process (the full resolver keeps them across restarts). */
  private readonly pushedTenants = new Set<string>();

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
      help: 'Pushes of the NATS account JWTs (VIGIL, tenant device accounts, device auth) to NATS, by result',
      labelNames: ['result'],
      registers: [metrics],
    });
    this.revoked = new Gauge({
      name: 'vigil_cloud_nats_revoked_users',
      help: 'Revoked device ticket keys listed in the device auth account JWT (revoked, not yet expired)',
      registers: [metrics],
    });
    this.tenantsGauge = new Gauge({
      name: 'vigil_cloud_nats_tenant_accounts',
      help: 'DEVICES_<tenant> accounts pushed to NATS by this process',
      registers: [metrics],
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

  /** Resolves once this tenant's account has been pushed (the callout calls it before admitting a device). */
  async ensureTenant(tenantId: string): Promise<void> {
    if (this.pushedTenants.has(tenantId)) return;
    await this.publish();
    if (!this.pushedTenants.has(tenantId))
      throw new Error(`tenant ${tenantId} has no NATS device account (not in the tenants table)`);
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
    const [revocations, tenants] = await Promise.all([this.revocations(), this.tenants()]);
    try {
      // VIGIL first (its exports), then the tenant accounts importing them, then the callout's allowed list.
      await pushAccountJwt(this.sys, a);
      // New tenants only: the full resolver keeps what was pushed (the set is cleared on reconnect).
      for (const t of tenants) {
        if (this.pushedTenants.has(t)) continue;
        const publicKey = tenantAccountKeys(a, t).account.publicKey;
        await pushAccountJwt(this.sys, { account: { publicKey, jwt: await encodeTenantAccount(a, t) } });
      }
      const accounts = tenants.map((t) => tenantAccountKeys(a, t).account.publicKey);
      const deviceAuthJwt = await encodeDeviceAuthAccount(
        a.deviceAuth,
        a.operator.signingKey,
        accounts,
        revocations,
      );
      await pushAccountJwt(this.sys, { account: { publicKey: a.deviceAuth.publicKey, jwt: deviceAuthJwt } });
      for (const t of tenants) this.pushedTenants.add(t);
      this.pushes.inc({ result: 'ok' });
      this.revoked.set(Object.keys(revocations).length);
      this.tenantsGauge.set(this.pushedTenants.size);
      this.log.debug(
        { revocations: Object.keys(revocations).length, tenants: tenants.length },
        'NATS account JWTs pushed',
      );
    } catch (err) {
      this.pushes.inc({ result: 'error' });
      this.log.error({ err: (err as Error).message }, 'pushing the NATS account JWTs failed; will retry');
      throw err;
    }
  }

  private async tenants(): Promise<string[]> {
    const rows = await this.db.selectFrom('tenants').select('id').orderBy('id').execute();
    // An id that is no subject token can own no device (enrollment checks it): it gets no account.
    return rows.map((r) => r.id).filter(isValidSubjectToken);
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
        // Possibly another server, or one with a fresh resolver directory: push every tenant again.
        this.pushedTenants.clear();
        await this.publish().catch(() => undefined);
      }
    }
  }
}
