import { X509Certificate } from 'node:crypto';
import { checkKey } from '@nats-io/jwt';
import {
  deviceUri,
  inspectCsr,
  issueFromCsrAsync,
  loadCa,
  PkiError,
  verifyCsrOnce,
  type CertKeyPem,
  type LoadedCa,
  type VerifiedCsr,
} from '@vigil/certs';
import type { EnrollRequest, EnrollResponse, RenewRequest, RenewResponse } from '@vigil/proto';
import type { Kysely, Transaction } from 'kysely';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { deviceRef, type AuditLog } from '../audit/audit-log.js';
import { VigilError } from '../lib/errors.js';
import type { Database } from '../storage/tables.js';
import { EnrollmentTokenInvalidError, type EnrollmentTokens } from './enrollment.js';
import type { NatsAuthority } from './nats-auth.js';
import { issueDeviceTicket } from './nats-device-auth.js';

/** Device ids: what certs' assertId and NATS subject tokens both accept. */
const DEVICE_ID_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;

export type IdentityErrorCode =
  | 'IDENTITY_INVALID_ARGUMENT'
  | 'DEVICE_EXISTS'
  | 'DEVICE_REVOKED'
  | 'CLIENT_CERT_REQUIRED'
  | 'CERT_UNKNOWN'
  | 'RENEW_TOO_SOON'
  | 'NATS_KEY_IN_USE';

export class IdentityError extends VigilError {
  constructor(code: IdentityErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, false, options);
  }
}

export interface IdentityServiceOptions {
  ca: CertKeyPem;
  /** Issues NATS user JWTs; undefined = the NATS server authorizes by TLS alone (no JWT is returned). */
  authority: () => NatsAuthority | undefined;
  certificateTtlSeconds: number;
  minRenewIntervalSeconds: number;
  natsUrls: readonly string[];
  /** Public JWKS (JSON) of the config signing keys, handed to devices at enroll and renew. */
  configSigningJwks?: string | undefined;
}

/** The peer of a Renew call: the client certificate that TLS verified against the fleet CA (DER). */
export interface PeerCertificate {
  raw: Buffer;
}

/**
 * Enrollment and renewal of device identities: checks the request, issues a client certificate from the fleet
 * CA (CN = device id, URI SAN spiffe://vigil/tenant/<t>/device/<d>) and a NATS device ticket (a user JWT of the
 * device auth account for the device's own nkey: fleet/nats-device-auth.ts), and records both in the certificate registry, all in one transaction with the token's consumption (a
 * refused enrollment leaves the token usable). With an audit log, each enrollment and renewal also appends its
 * `device.enroll` / `device.renew` entry in that same transaction. Transport-free: fleet/grpc-server.ts maps it
 * onto gRPC.
 */
export class DeviceIdentityService {
  private readonly requests: Counter<'method' | 'result'>;
  private readonly caChain: string[];
  /** The CA parsed and checked once: re-parsing its key per request cost more than the signature itself. */
  private readonly ca: LoadedCa;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly tokens: EnrollmentTokens,
    private readonly opts: IdentityServiceOptions,
    private readonly log: Logger,
    metrics: Registry,
    private readonly now: () => Date = () => new Date(),
    private readonly audit?: AuditLog,
  ) {
    this.caChain = [opts.ca.certPem];
    this.ca = loadCa(opts.ca);
    this.requests = new Counter({
      name: 'vigil_cloud_identity_requests_total',
      help: 'DeviceService calls by method (enroll, renew) and result (ok or the refusal code)',
      labelNames: ['method', 'result'],
      registers: [metrics],
    });
  }

  async enroll(req: EnrollRequest): Promise<EnrollResponse> {
    return this.counted('enroll', async () => {
      const now = this.now();
      const { deviceId, csr } = this.checkCsr(req.csrPem, undefined);
      const natsKey = this.checkNatsKey(req.natsPublicKey, true);
      if (req.hardwareId.length > 256) throw invalid('hardware_id must be at most 256 characters');
      return this.db.transaction().execute(async (tx) => {
        const scope = await this.tokens.consumeToken(req.token, deviceId, now, tx);
        // A row made by an operator ahead of time (never enrolled, not revoked) may be claimed; any other
        // existing device id is taken: a second box must not take over a device's identity and history.
        const claimed = await tx
          .insertInto('devices')
          .values({
            tenant_id: scope.tenantId,
            id: deviceId,
            site_id: scope.siteId,
            hardware_id: req.hardwareId || null,
            enrolled_at: now,
            agent_version: req.agentVersion || null,
            // Bound here rather than by a separate UPDATE in issue(): one statement less per enrollment.
            ...(natsKey ? { nats_public_key: natsKey } : {}),
          })
          .onConflict((oc) =>
            oc
              .columns(['tenant_id', 'id'])
              .doUpdateSet({
                site_id: scope.siteId,
                hardware_id: req.hardwareId || null,
                enrolled_at: now,
                ...(natsKey ? { nats_public_key: natsKey } : {}),
              })
              .where('devices.enrolled_at', 'is', null)
              .where('devices.revoked_at', 'is', null),
          )
          .returning('id')
          .executeTakeFirst()
          .catch(keyConflict);
        if (!claimed)
          throw new IdentityError(
            'DEVICE_EXISTS',
            `device id "${deviceId}" is already enrolled in this tenant: choose another id (--device-id)`,
          );
        await this.requireKeyFree(tx, natsKey, scope.tenantId, deviceId);
        const issued = await this.issue(tx, scope.tenantId, deviceId, csr, natsKey, 'enroll', now, true);
        await this.audit?.append(
          {
            tenantId: scope.tenantId,
            actor: deviceRef(scope.tenantId, deviceId),
            actorKind: 'device',
            action: 'device.enroll',
            resource: deviceRef(scope.tenantId, deviceId),
            outcome: 'allowed',
            detail: {
              site_id: scope.siteId,
              serial: issued.serial,
              not_after: issued.notAfter.toISOString(),
            },
          },
          tx,
        );
        this.log.info(
          { tenant: scope.tenantId, site: scope.siteId, device: deviceId, serial: issued.serial },
          'device enrolled',
        );
        return {
          deviceId,
          tenantId: scope.tenantId,
          siteId: scope.siteId,
          certificatePem: issued.certificatePem,
          caChainPem: this.caChain,
          natsUrls: [...this.opts.natsUrls],
          natsUserJwt: issued.natsUserJwt,
          notAfter: issued.notAfter,
          configSigningJwks: this.opts.configSigningJwks ?? '',
        };
      });
    });
  }

  /**
   * The device a mutual-TLS peer certificate belongs to: its serial is registered, neither it nor the device
   * is revoked, and it has not expired. Throws CLIENT_CERT_REQUIRED, CERT_UNKNOWN or DEVICE_REVOKED.
   */
  async authenticateDevice(
    peer: PeerCertificate | undefined,
    db: Kysely<Database> | Transaction<Database> = this.db,
    lock = false,
  ): Promise<{ tenantId: string; deviceId: string; serial: string; natsPublicKey: string }> {
    if (!peer)
      throw new IdentityError(
        'CLIENT_CERT_REQUIRED',
        'this call needs the device certificate (mutual TLS), issued by the fleet CA and not expired',
      );
    const cert = new X509Certificate(peer.raw);
    const serial = cert.serialNumber.toUpperCase();
    let q = db
      .selectFrom('device_certificates as c')
      .innerJoin('devices as d', (j) =>
        j.onRef('d.tenant_id', '=', 'c.tenant_id').onRef('d.id', '=', 'c.device_id'),
      )
      .select([
        'c.tenant_id',
        'c.device_id',
        'c.nats_public_key',
        'c.revoked_at as cert_revoked_at',
        'd.revoked_at as device_revoked_at',
      ])
      .where('c.serial', '=', serial);
    // Serialises renewals of one device, so the rate limit of renew cannot be raced.
    if (lock) q = q.forUpdate('d');
    const row = await q.executeTakeFirst();
    if (!row || new Date(cert.validTo) <= this.now())
      throw new IdentityError('CERT_UNKNOWN', 'the client certificate is not a current device certificate');
    if (row.cert_revoked_at !== null || row.device_revoked_at !== null)
      throw new IdentityError('DEVICE_REVOKED', 'this device has been revoked: it must be enrolled anew');
    return { tenantId: row.tenant_id, deviceId: row.device_id, serial, natsPublicKey: row.nats_public_key };
  }

  async renew(peer: PeerCertificate | undefined, req: RenewRequest): Promise<RenewResponse> {
    return this.counted('renew', async () => {
      const now = this.now();
      if (!peer)
        throw new IdentityError(
          'CLIENT_CERT_REQUIRED',
          'Renew needs the device certificate (mutual TLS), issued by the fleet CA and not expired',
        );
      return this.db.transaction().execute(async (tx) => {
        const auth = await this.authenticateDevice(peer, tx, true);
        const serial = auth.serial;
        const row = {
          tenant_id: auth.tenantId,
          device_id: auth.deviceId,
          nats_public_key: auth.natsPublicKey,
        };
        const { csr } = this.checkCsr(req.csrPem, row.device_id);
        const natsKey = req.natsPublicKey ? this.checkNatsKey(req.natsPublicKey, false) : row.nats_public_key;
        const last = await tx
          .selectFrom('device_certificates')
          .select((eb) => eb.fn.max('issued_at').as('at'))
          .where('tenant_id', '=', row.tenant_id)
          .where('device_id', '=', row.device_id)
          .executeTakeFirst();
        const lastAt = last?.at ? new Date(last.at).getTime() : 0;
        if (now.getTime() - lastAt < this.opts.minRenewIntervalSeconds * 1000)
          throw new IdentityError(
            'RENEW_TOO_SOON',
            `a certificate was issued less than ${this.opts.minRenewIntervalSeconds} s ago; retry later`,
          );
        // Renew may rotate to a fresh key (the agent makes a new one at every renewal), never to a key that
        // another device holds or ever held.
        await this.requireKeyFree(tx, natsKey, row.tenant_id, row.device_id);
        const issued = await this.issue(tx, row.tenant_id, row.device_id, csr, natsKey, 'renew', now);
        await this.audit?.append(
          {
            tenantId: row.tenant_id,
            actor: deviceRef(row.tenant_id, row.device_id),
            actorKind: 'device',
            action: 'device.renew',
            resource: deviceRef(row.tenant_id, row.device_id),
            outcome: 'allowed',
            detail: { serial: issued.serial, previous: serial, not_after: issued.notAfter.toISOString() },
          },
          tx,
        );
        this.log.info(
          { tenant: row.tenant_id, device: row.device_id, serial: issued.serial, previous: serial },
          'device certificate renewed',
        );
        return {
          certificatePem: issued.certificatePem,
          caChainPem: this.caChain,
          natsUserJwt: issued.natsUserJwt,
          notAfter: issued.notAfter,
          configSigningJwks: this.opts.configSigningJwks ?? '',
        };
      });
    });
  }

  /**
   * Checks the CSR's subject (exactly CN=<device id>, and `expected` when given) and key; returns the id and the
   * verified CSR (signed without a second verification).
   */
  private checkCsr(csrPem: string, expected: string | undefined): { deviceId: string; csr: VerifiedCsr } {
    try {
      const subject = inspectCsr(csrPem);
      const cn = subject.commonName;
      if (cn === undefined || !DEVICE_ID_RE.test(cn))
        throw invalid(
          `CSR subject must be exactly CN=<device id> (1-63 of a-z 0-9 _ -, starting with a letter or digit), got ${describeSubject(subject.attributes)}`,
        );
      if (expected !== undefined && cn !== expected)
        throw invalid(`CSR subject CN=${cn} does not name this device (${expected})`);
      if (subject.requestsAttributes)
        throw invalid('CSR must not request extensions or attributes: the cloud assigns the identity');
      return { deviceId: cn, csr: verifyCsrOnce(csrPem) };
    } catch (err) {
      if (err instanceof PkiError) throw invalid(err.message, err);
      throw err;
    }
  }

  private checkNatsKey(key: string, required: boolean): string {
    if (key === '') {
      if (required && this.opts.authority() !== undefined)
        throw invalid('nats_public_key (a NATS user nkey, U...) is required');
      return '';
    }
    try {
      checkKey(key, 'U', false);
    } catch {
      throw invalid('nats_public_key must be a NATS user public nkey (U...)');
    }
    return key;
  }

  /**
   * Refuses (NATS_KEY_IN_USE) a key that another device, of any tenant, is or ever was bound to: the account's
   * revocation list is keyed by user key, so a shared key would let one device's revocation cut the other off.
   * The unique index of migration 0013 backs this against concurrent enrollments (see {@link issue}).
   */
  private async requireKeyFree(
    tx: Transaction<Database>,
    natsKey: string,
    tenantId: string,
    deviceId: string,
  ): Promise<void> {
    if (natsKey === '') return;
    // One round trip for both tables (enrollment is bounded by its statements as much as by its crypto).
    const taken = await tx
      .selectFrom('device_certificates')
      .select('serial as holder')
      .where('nats_public_key', '=', natsKey)
      .where((eb) => eb.or([eb('tenant_id', '<>', tenantId), eb('device_id', '<>', deviceId)]))
      .unionAll(
        tx
          .selectFrom('devices')
          .select('id as holder')
          .where('nats_public_key', '=', natsKey)
          .where((eb) => eb.or([eb('tenant_id', '<>', tenantId), eb('id', '<>', deviceId)])),
      )
      .limit(1)
      .executeTakeFirst();
    if (taken !== undefined) throw natsKeyInUse();
  }

  private async issue(
    tx: Transaction<Database>,
    tenantId: string,
    deviceId: string,
    csr: VerifiedCsr,
    natsKey: string,
    issuedBy: 'enroll' | 'renew',
    now: Date,
    /** The device row already holds `natsKey` (enroll sets it with the row). */
    keyBound = false,
  ): Promise<{ certificatePem: string; natsUserJwt: string; notAfter: Date; serial: string }> {
    const ttl = this.opts.certificateTtlSeconds;
    // The RSA signature on the thread pool: while it runs, other enrollments' statements (one of them holding
    // the audit chain's lock until its COMMIT) keep moving instead of waiting for this event loop.
    const { certPem: certificatePem, x509: x } = await issueFromCsrAsync(this.ca, csr, {
      commonName: deviceId,
      uris: [deviceUri(tenantId, deviceId)],
      validityDays: ttl / 86_400,
      now,
    });
    const authority = this.opts.authority();
    const natsUserJwt =
      authority && natsKey
        ? await issueDeviceTicket(authority, {
            tenantId,
            deviceId,
            userPublicKey: natsKey,
            expiresInSeconds: Math.min(ttl, authority.account.maxUserLifetimeSeconds),
            now,
          })
        : '';
    const serial = x.serialNumber.toUpperCase();
    if (natsKey !== '' && !keyBound)
      await tx
        .updateTable('devices')
        .set({ nats_public_key: natsKey })
        .where('tenant_id', '=', tenantId)
        .where('id', '=', deviceId)
        .execute()
        .catch(keyConflict);
    await tx
      .insertInto('device_certificates')
      .values({
        serial,
        tenant_id: tenantId,
        device_id: deviceId,
        fingerprint_sha256: x.fingerprint256,
        not_before: new Date(x.validFrom),
        not_after: new Date(x.validTo),
        nats_public_key: natsKey,
        issued_at: now,
        issued_by: issuedBy,
      })
      .execute();
    return { certificatePem, natsUserJwt, notAfter: new Date(x.validTo), serial };
  }

  private async counted<T>(method: 'enroll' | 'renew', fn: () => Promise<T>): Promise<T> {
    try {
      const out = await fn();
      this.requests.inc({ method, result: 'ok' });
      return out;
    } catch (err) {
      const code =
        err instanceof EnrollmentTokenInvalidError || err instanceof VigilError ? err.code : 'INTERNAL';
      this.requests.inc({ method, result: code });
      if (code === 'INTERNAL') this.log.error({ err, method }, 'identity request failed');
      else this.log.warn({ method, code, reason: (err as Error).message }, 'identity request refused');
      throw err;
    }
  }
}

/** The partial unique index of migration 0013 (active devices' current NATS keys). */
const NATS_KEY_INDEX = 'devices_nats_public_key_active';

/** Two concurrent enrollments with one key: both passed requireKeyFree, the index refuses the second. */
function keyConflict(err: unknown): never {
  const e = err as { code?: unknown; constraint?: unknown };
  if (e.code === '23505' && e.constraint === NATS_KEY_INDEX) throw natsKeyInUse(err);
  throw err;
}

function natsKeyInUse(cause?: unknown): IdentityError {
  // Names neither the device nor the tenant that holds the key: the caller learns only that it is taken.
  return new IdentityError(
    'NATS_KEY_IN_USE',
    'nats_public_key is already bound to another device: generate a fresh NATS user key for this device',
    { cause },
  );
}

function invalid(message: string, cause?: unknown): IdentityError {
  return new IdentityError('IDENTITY_INVALID_ARGUMENT', message, { cause });
}

function describeSubject(attrs: Array<{ oid: string; value: string }>): string {
  if (attrs.length === 0) return 'an empty subject';
  return attrs.map((a) => `${a.oid}=${JSON.stringify(a.value.slice(0, 64))}`).join(', ');
}
