/*
 * The auth callout service (nats-server >= 2.10): answers `$SYS.REQ.USER.AUTH` in the VIGIL_DEVICE_AUTH account
 * for every device connection (nats-device-auth.ts). It connects as that account's only auth user, in a queue
 * group so that any number of cloud processes share the load, handles at most `maxInFlight` requests at once
 * with at most `maxQueued` waiting (more are refused at once as `busy`: the device retries; one that waited past
 * the server's auth timeout is dropped as `late`), and counts every request by result.
 *
 * While no callout service runs, devices cannot connect (the server waits its auth timeout and refuses them;
 * agents keep buffering offline and retry). Cloud services and the SYS user are not affected: their accounts
 * have no callout.
 */
import {
  connect,
  jwtAuthenticator,
  type ConnectionOptions,
  type Msg,
  type NatsConnection,
  type Subscription,
} from '@nats-io/transport-node';
import { encodeAuthorizationResponse } from '@nats-io/jwt';
import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { BoundedWork } from '../lib/bounded-work.js';
import { ConfigError } from '../lib/errors.js';
import type { Database } from '../storage/tables.js';
import { issueDeviceUser, type NatsAuthority } from './nats-auth.js';
import {
  admitDevice,
  CALLOUT_RESULTS,
  checkCalloutRequest,
  type CalloutResult,
  type CheckedRequest,
  type RegistryRecord,
} from './nats-callout-decision.js';
import { AUTH_CALLOUT_SUBJECT, issueCalloutUser } from './nats-device-auth.js';
import { nativeKeyPair } from './nkey-crypto.js';
import type { KeyPair } from '@nats-io/nkeys';

/** nats-server sends callout requests from its system inbox (`$SYS._INBOX.<server hash>.<id>`). */
const SERVER_REPLY_PREFIX = '$SYS._INBOX.';

export const CALLOUT_QUEUE_GROUP = 'vigil-auth-callout';
export const DEFAULT_CALLOUT_MAX_IN_FLIGHT = 32;
export const DEFAULT_CALLOUT_MAX_QUEUED = 1024;
/** nats-server waits about 2-3 s (its auth timeout) for an answer; a request queued longer is dropped. */
export const DEFAULT_CALLOUT_MAX_WAIT_MS = 2_000;

export interface NatsAuthCalloutOptions {
  authority: NatsAuthority;
  db: Kysely<Database>;
  /** Servers and TLS of the cloud's own connection; the authenticator is set here. */
  connection: ConnectionOptions;
  log: Logger;
  metrics: Registry;
  now?: () => Date;
  /**
   * Makes sure the device's own account (DEVICE_<tenant>.<device>) is on the servers before the device is
   * placed in it (NatsAccountPublisher.ensureDevice).
   */
  deviceAccounts: { ensureDevice(tenantId: string, deviceId: string): Promise<void> };
  /** Requests answered at once (each is one PostgreSQL round trip); more wait in a queue. */
  maxInFlight?: number;
  /** Requests waiting; beyond it a request is refused at once as `busy` (the device retries). */
  maxQueued?: number;
  /** A queued request older than this is dropped unanswered (`late`): the server no longer waits for it. */
  maxWaitMs?: number;
}

export class NatsAuthCallout {
  private nc: NatsConnection | undefined;
  private sub: Subscription | undefined;
  private readonly work: BoundedWork<Msg>;
  private readonly results: Counter<'result'>;
  private readonly seconds: Histogram;
  private readonly now: () => Date;
  private readonly maxInFlight: number;
  private readonly responseSigner: KeyPair;

  constructor(private readonly opts: NatsAuthCalloutOptions) {
    this.now = opts.now ?? (() => new Date());
    this.maxInFlight = opts.maxInFlight ?? DEFAULT_CALLOUT_MAX_IN_FLIGHT;
    this.responseSigner = nativeKeyPair(opts.authority.deviceAuth.calloutSigningKey.seed);
    const maxQueued = opts.maxQueued ?? DEFAULT_CALLOUT_MAX_QUEUED;
    this.work = new BoundedWork((msg, at) => this.run(msg, at), {
      maxInFlight: this.maxInFlight,
      maxQueued,
      // The server stopped waiting (its auth timeout): an answer now would be thrown away.
      maxWaitMs: opts.maxWaitMs ?? DEFAULT_CALLOUT_MAX_WAIT_MS,
      onLate: () => this.results.inc({ result: 'late' }),
    });
    this.results = new Counter({
      name: 'vigil_cloud_nats_callout_total',
      help: 'NATS auth callout answers (device connections), by result',
      labelNames: ['result'],
      registers: [opts.metrics],
    });
    for (const result of CALLOUT_RESULTS) this.results.inc({ result }, 0);
    this.seconds = new Histogram({
      name: 'vigil_cloud_nats_callout_seconds',
      help: 'Time to answer one NATS auth callout request',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2],
      registers: [opts.metrics],
    });
    const work = this.work;
    // Read at scrape time: always the current numbers.
    new Gauge({
      name: 'vigil_cloud_nats_callout_in_flight',
      help: 'NATS auth callout requests being answered (bounded by nats.auth.callout.maxInFlight)',
      registers: [opts.metrics],
      collect() {
        this.set(work.inFlight);
      },
    });
    new Gauge({
      name: 'vigil_cloud_nats_callout_queued',
      help: 'NATS auth callout requests waiting (bounded by nats.auth.callout.maxQueued)',
      registers: [opts.metrics],
      collect() {
        this.set(work.queued);
      },
    });
  }

  get running(): boolean {
    return this.sub !== undefined;
  }

  /** Connects as the callout user and starts answering; resolves once the subscription is on the server. */
  async start(): Promise<void> {
    if (this.nc) return;
    const { authority } = this.opts;
    const jwt = await issueCalloutUser(authority, this.now());
    const seed = new TextEncoder().encode(authority.deviceAuth.calloutUser.seed);
    const nc = await connect({
      ...this.opts.connection,
      name: `${this.opts.connection.name ?? 'vigil-cloud'}-auth-callout`,
      authenticator: jwtAuthenticator(jwt, seed),
      maxReconnectAttempts: -1,
    });
    // nats-server 2.9 ignores the account's `authorization` block: devices would be admitted (into an account
    // where they can do nothing) without their certificate ever being checked. Refuse to run on it.
    const version = nc.info?.version ?? '0.0.0';
    if (!atLeast(version, [2, 10])) {
      await nc.close();
      throw new ConfigError(
        `the NATS auth callout needs nats-server >= 2.10; ${nc.getServer()} runs ${version}`,
      );
    }
    this.nc = nc;
    this.sub = nc.subscribe(AUTH_CALLOUT_SUBJECT, {
      queue: CALLOUT_QUEUE_GROUP,
      callback: (err, msg) => {
        if (!err) this.onRequest(msg);
      },
    });
    await nc.flush();
    this.opts.log.info(
      {
        queue: CALLOUT_QUEUE_GROUP,
        maxInFlight: this.maxInFlight,
        maxQueued: this.opts.maxQueued ?? DEFAULT_CALLOUT_MAX_QUEUED,
      },
      'NATS auth callout ready',
    );
  }

  /** Stops taking requests, lets those in flight finish, closes the connection. */
  async stop(): Promise<void> {
    const nc = this.nc;
    if (!nc) return;
    this.sub?.unsubscribe();
    this.sub = undefined;
    await this.work.idle();
    this.nc = undefined;
    await nc.drain().catch(() => undefined);
  }

  /** Runs a request now, queues it (bounded), or refuses it as busy. */
  private onRequest(msg: Msg): void {
    if (this.work.submit(msg) === 'busy') void this.refuseBusy(msg);
  }

  private async run(msg: Msg, arrived: number): Promise<void> {
    const result = await this.handle(msg).catch((err: unknown) => {
      this.opts.log.error({ err: (err as Error).message }, 'NATS auth callout could not answer');
      return 'error' as const;
    });
    this.results.inc({ result });
    this.seconds.observe((performance.now() - arrived) / 1000);
  }

  private async refuseBusy(msg: Msg): Promise<void> {
    const checked = checkCalloutRequest(msg.string(), this.trust(), this.now());
    const to = checked.ok ? checked.request : checked.to;
    this.results.inc({ result: 'busy' });
    await this.answer(msg, to, { error: 'auth callout busy' }, 'busy', 'busy').catch(() => undefined);
  }

  private async handle(msg: Msg): Promise<CalloutResult> {
    const now = this.now();
    const checked = checkCalloutRequest(msg.string(), this.trust(), now);
    if (!checked.ok) {
      await this.answer(msg, checked.to, { error: checked.message }, checked.reason, checked.message);
      return checked.reason;
    }
    try {
      return await this.decide(msg, checked.request, now);
    } catch (err) {
      this.opts.log.error({ err: (err as Error).message }, 'NATS auth callout failed; the device is refused');
      await this.answer(
        msg,
        checked.request,
        { error: 'auth callout error' },
        'error',
        'error',
        checked.request,
      );
      return 'error';
    }
  }

  private async decide(msg: Msg, req: CheckedRequest, now: Date): Promise<CalloutResult> {
    const record = await lookupRegistry(this.opts.db, req);
    const admission = admitDevice(req, record, now);
    if (!admission.ok) {
      await this.answer(msg, req, { error: admission.message }, admission.reason, admission.message, req);
      return admission.reason;
    }
    // Tenant and device are the registry's (admitDevice checked the certificate row names them): the device's
    // own account must exist before the server looks it up.
    await this.opts.deviceAccounts.ensureDevice(req.tenantId, req.deviceId);
    // A user of DEVICE_<tenant>.<device>, never of VIGIL: signed by that account's scoped key (its template names
    // the device's subjects), for the nkey the server chose, ending no later than the ticket and the certificate.
    const jwt = await issueDeviceUser(this.opts.authority, {
      tenantId: req.tenantId,
      deviceId: req.deviceId,
      userPublicKey: req.userNkey,
      expiresInSeconds: Math.min(
        Math.floor((admission.expiresAt.getTime() - now.getTime()) / 1000),
        this.opts.authority.account.maxUserLifetimeSeconds,
      ),
      now,
    });
    await this.answer(msg, req, { jwt }, 'admitted', 'admitted', req);
    return 'admitted';
  }

  /** Answers the server (a refusal carries its reason in `error`; the server logs it, the client sees none). */
  private async answer(
    msg: Msg,
    to: { serverId: string; userNkey: string } | undefined,
    data: { jwt?: string; error?: string },
    result: CalloutResult,
    message: string,
    who?: CheckedRequest,
  ): Promise<void> {
    const fields = { result, tenant: who?.tenantId, device: who?.deviceId, serial: who?.certSerial };
    if (result === 'admitted') this.opts.log.debug(fields, 'NATS auth callout: device admitted');
    else this.opts.log.warn({ ...fields, reason: message }, 'NATS auth callout: device refused');
    // An unreadable request gets no answer: the server refuses the connection at its auth timeout.
    if (!to || !msg.reply) return;
    // Only the server asks on this subject, and it waits on its own system inbox: answer nowhere else (the
    // callout user's response permission would let it publish to any reply subject it was handed).
    if (!msg.reply.startsWith(SERVER_REPLY_PREFIX)) {
      this.opts.log.warn(
        { reply: msg.reply.slice(0, 200) },
        'NATS auth callout: reply outside the server inbox',
      );
      return;
    }
    const da = this.opts.authority.deviceAuth;
    const response = await encodeAuthorizationResponse(to.userNkey, to.serverId, da.publicKey, data, {
      signer: this.responseSigner,
    });
    msg.respond(response);
  }

  private trust(): { deviceAuthAccount: string; ticketSigningKey: string } {
    const da = this.opts.authority.deviceAuth;
    return { deviceAuthAccount: da.publicKey, ticketSigningKey: da.ticketSigningKey.publicKey };
  }
}

function atLeast(version: string, min: [number, number]): boolean {
  const [major = 0, minor = 0] = version.split('.').map((n) => Number.parseInt(n, 10));
  return major > min[0] || (major === min[0] && minor >= min[1]);
}

/** The registry's view for step 2 of the decision: the certificate by serial, the ticket key on this device. */
export async function lookupRegistry(db: Kysely<Database>, req: CheckedRequest): Promise<RegistryRecord> {
  const cert = await db
    .selectFrom('device_certificates as c')
    .innerJoin('devices as d', (j) =>
      j.onRef('d.tenant_id', '=', 'c.tenant_id').onRef('d.id', '=', 'c.device_id'),
    )
    .select([
      'c.tenant_id',
      'c.device_id',
      'c.not_after',
      'c.revoked_at',
      'd.revoked_at as device_revoked_at',
    ])
    .where('c.serial', '=', req.certSerial)
    .executeTakeFirst();
  const key = await db
    .selectFrom('device_certificates')
    .select([sql<string>`count(*)`.as('n'), (eb) => eb.fn.max('revoked_at').as('revoked_at')])
    .where('tenant_id', '=', req.tenantId)
    .where('device_id', '=', req.deviceId)
    .where('nats_public_key', '=', req.ticketKey)
    .executeTakeFirstOrThrow();
  return {
    certificate: cert && {
      tenantId: cert.tenant_id,
      deviceId: cert.device_id,
      notAfter: new Date(cert.not_after),
      revokedAt: cert.revoked_at && new Date(cert.revoked_at),
      deviceRevokedAt: cert.device_revoked_at && new Date(cert.device_revoked_at),
    },
    keyIssuedToDevice: Number(key.n) > 0,
    keyRevokedAt: key.revoked_at ? new Date(key.revoked_at) : null,
  };
}
