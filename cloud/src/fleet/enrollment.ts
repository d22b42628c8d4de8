import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Kysely, Selectable } from 'kysely';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { VigilError } from '../lib/errors.js';
import type { Database, EnrollmentTokensTable } from '../storage/tables.js';

/** Every enrollment token starts with this, so that leaked tokens are easy to recognize (and to scan for). */
export const ENROLLMENT_TOKEN_PREFIX = 'vgl_et_';
export const MIN_TOKEN_TTL_SECONDS = 60;
export const MAX_TOKEN_TTL_SECONDS = 7 * 24 * 3600;
export const DEFAULT_TOKEN_TTL_SECONDS = 24 * 3600;

/** Why a token was refused: logged and counted, never told to the caller. */
export type EnrollmentRejection = 'unknown' | 'reused' | 'expired' | 'malformed';

const REJECTIONS_METRIC = 'vigil_cloud_enrollment_token_rejections_total';

/** One generic error for every refused token, so that a caller learns nothing about which tokens exist. */
export class EnrollmentTokenInvalidError extends VigilError {
  constructor() {
    super('ENROLLMENT_TOKEN_INVALID', 'The enrollment token is invalid, expired or already used.', false);
  }
}

/** A token as listed: everything but the secret (which is not stored anywhere). */
export interface EnrollmentToken {
  id: string;
  tenantId: string;
  siteId: string;
  createdBy: string;
  createdAt: Date;
  expiresAt: Date;
  usedAt: Date | null;
  usedByDevice: string | null;
  note: string | null;
}

export interface CreateTokenInput {
  tenantId: string;
  siteId: string;
  /** 60 s .. 7 days; default 24 h. */
  ttlSeconds?: number | undefined;
  createdBy: string;
  note?: string | undefined;
  /** The creation time (tests inject it); default now. */
  now?: Date | undefined;
}

export interface EnrollmentScope {
  tenantId: string;
  siteId: string;
}

const sha256 = (secret: string): Buffer => createHash('sha256').update(secret, 'utf8').digest();

function toToken(r: Omit<Selectable<EnrollmentTokensTable>, 'token_sha256'>): EnrollmentToken {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    siteId: r.site_id,
    createdBy: r.created_by,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    usedAt: r.used_at,
    usedByDevice: r.used_by_device,
    note: r.note,
  };
}

/**
 * Enrollment tokens: minted by an admin or installer for one site of a tenant, consumed exactly once by a
 * gateway's Enroll call before they expire. Only the SHA-256 of a secret is stored.
 */
export class EnrollmentTokens {
  private readonly rejections: Counter<'reason'>;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly log: Logger,
    metrics: Registry,
  ) {
    // The API and (later) the gRPC service share one registry: register the counter once.
    this.rejections =
      (metrics.getSingleMetric(REJECTIONS_METRIC) as Counter<'reason'> | undefined) ??
      new Counter({
        name: REJECTIONS_METRIC,
        help: 'Enrollment tokens refused, by reason (unknown, reused, expired, malformed)',
        labelNames: ['reason'],
        registers: [metrics],
      });
  }

  /** Mints a token; the returned `secret` is the only copy there will ever be. */
  async createToken(input: CreateTokenInput): Promise<{ secret: string; token: EnrollmentToken }> {
    const ttl = input.ttlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS;
    if (!Number.isInteger(ttl) || ttl < MIN_TOKEN_TTL_SECONDS || ttl > MAX_TOKEN_TTL_SECONDS)
      throw new VigilError(
        'VALIDATION_FAILED',
        `ttlSeconds must be an integer from ${MIN_TOKEN_TTL_SECONDS} to ${MAX_TOKEN_TTL_SECONDS}`,
      );
    const now = input.now ?? new Date();
    const secret = ENROLLMENT_TOKEN_PREFIX + randomBytes(32).toString('base64url');
    const row = await this.db.transaction().execute(async (tx) => {
      // Decision: a missing tenant or site is created rather than refused with a 404. There is no API to
      // create sites yet, and an installer standing at a new site must be able to mint a token for it; the
      // caller is already authorized for the tenant, and a site is only a name inside it.
      await tx
        .insertInto('tenants')
        .values({ id: input.tenantId, name: input.tenantId })
        .onConflict((oc) => oc.doNothing())
        .execute();
      await tx
        .insertInto('sites')
        .values({ tenant_id: input.tenantId, id: input.siteId, name: input.siteId })
        .onConflict((oc) => oc.doNothing())
        .execute();
      return tx
        .insertInto('enrollment_tokens')
        .values({
          id: randomUUID(),
          tenant_id: input.tenantId,
          site_id: input.siteId,
          token_sha256: sha256(secret),
          created_by: input.createdBy,
          created_at: now,
          expires_at: new Date(now.getTime() + ttl * 1000),
          note: input.note ?? null,
        })
        .returningAll()
        .executeTakeFirstOrThrow();
    });
    const token = toToken(row);
    this.log.info(
      { tokenId: token.id, tenant: token.tenantId, site: token.siteId, createdBy: token.createdBy },
      'enrollment token created',
    );
    return { secret, token };
  }

  /** A tenant's tokens, newest first; used ones only with `includeUsed`. Never the secrets. */
  async listTokens(tenantId: string, opts: { includeUsed?: boolean } = {}): Promise<EnrollmentToken[]> {
    let q = this.db
      .selectFrom('enrollment_tokens')
      .select([
        'id',
        'tenant_id',
        'site_id',
        'created_by',
        'created_at',
        'expires_at',
        'used_at',
        'used_by_device',
        'note',
      ])
      .where('tenant_id', '=', tenantId);
    if (opts.includeUsed !== true) q = q.where('used_at', 'is', null);
    const rows = await q.orderBy('created_at', 'desc').orderBy('id').execute();
    return rows.map(toToken);
  }

  /**
   * Marks the token used by `deviceId` and returns its scope, atomically (one UPDATE: two concurrent
   * enrollments with the same token cannot both succeed). Pass a transaction as `db` to make the consumption
   * part of a larger unit (enrollment: a refused device id rolls the token back to unused). Throws {@link EnrollmentTokenInvalidError} for
   * an unknown, reused or expired token alike; the reason is only logged and counted.
   */
  async consumeToken(
    secret: string,
    deviceId: string,
    now: Date = new Date(),
    db: Kysely<Database> = this.db,
  ): Promise<EnrollmentScope> {
    if (!secret.startsWith(ENROLLMENT_TOKEN_PREFIX) || secret.length > 128) this.reject('malformed');
    const hash = sha256(secret);
    const row = await db
      .updateTable('enrollment_tokens')
      .set({ used_at: now, used_by_device: deviceId })
      .where('token_sha256', '=', hash)
      .where('used_at', 'is', null)
      .where('expires_at', '>', now)
      .returning(['id', 'tenant_id', 'site_id'])
      .executeTakeFirst();
    if (row) {
      this.log.info(
        { tokenId: row.id, tenant: row.tenant_id, site: row.site_id, device: deviceId },
        'enrollment token consumed',
      );
      return { tenantId: row.tenant_id, siteId: row.site_id };
    }
    // Only after the UPDATE failed: why (for the log and the metric, never for the caller).
    const seen = await db
      .selectFrom('enrollment_tokens')
      .select(['id', 'used_at'])
      .where('token_sha256', '=', hash)
      .executeTakeFirst();
    return this.reject(seen === undefined ? 'unknown' : seen.used_at !== null ? 'reused' : 'expired', {
      tokenId: seen?.id,
      device: deviceId,
    });
  }

  private reject(reason: EnrollmentRejection, ctx: Record<string, unknown> = {}): never {
    this.rejections.inc({ reason });
    this.log.warn({ ...ctx, reason }, 'enrollment token refused');
    throw new EnrollmentTokenInvalidError();
  }
}
