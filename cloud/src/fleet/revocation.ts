import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { deviceRef, type AuditLog } from '../audit/audit-log.js';
import type { Database } from '../storage/tables.js';
import type { NatsAccountPublisher } from './nats-account.js';

export interface RevokeInput {
  tenantId: string;
  deviceId: string;
  /** The principal who revoked (JWT subject), recorded with the device. */
  by: string;
  reason: string;
}

export type RevokeOutcome =
  | { result: 'missing' }
  | {
      result: 'revoked' | 'already_revoked';
      revokedAt: Date;
      revokedBy: string;
      reason: string | null;
      /** Certificates marked revoked by this call. */
      certificates: number;
      /**
       * NATS access: `cut` = the account JWT listing the device's users was pushed (its connections are closed
       * now and it cannot log in again); `pending` = the push failed and is retried (at reconnect, every few
       * minutes); `tls_only` = NATS runs without per-device JWTs, so access ends when the certificate expires.
       */
      nats: 'cut' | 'pending' | 'tls_only';
    };

/**
 * Revokes a device: the device row and every certificate it holds are marked revoked (so Renew refuses it at
 * once: fleet/identity-service.ts), then its NATS users are revoked by pushing the account JWT. Idempotent:
 * revoking again changes nothing and reports the first revocation. Every call on an existing device appends a
 * `device.revoke` audit entry in the same transaction (who, why, how many certificates it revoked; a repeated
 * revocation is recorded too, with `already_revoked`), so the revocation and its record commit together.
 */
export class DeviceRevoker {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly publisher: NatsAccountPublisher | undefined,
    private readonly audit: AuditLog,
    private readonly log: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async revoke(input: RevokeInput): Promise<RevokeOutcome> {
    const at = this.now();
    const done = await this.db.transaction().execute(async (tx) => {
      const row = await tx
        .updateTable('devices')
        .set({ revoked_at: at, revoked_by: input.by, revoke_reason: input.reason })
        .where('tenant_id', '=', input.tenantId)
        .where('id', '=', input.deviceId)
        .where('revoked_at', 'is', null)
        .returning(['revoked_at', 'revoked_by', 'revoke_reason'])
        .executeTakeFirst();
      const certs = await tx
        .updateTable('device_certificates')
        .set({ revoked_at: at })
        .where('tenant_id', '=', input.tenantId)
        .where('device_id', '=', input.deviceId)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      const certificates = Number(certs.numUpdatedRows);
      const prior = row
        ? undefined
        : await tx
            .selectFrom('devices')
            .select(['revoked_at', 'revoked_by', 'revoke_reason'])
            .where('tenant_id', '=', input.tenantId)
            .where('id', '=', input.deviceId)
            .executeTakeFirst();
      const found = row
        ? { row, certificates, first: true }
        : prior
          ? { row: prior, certificates, first: false }
          : undefined;
      if (found)
        await this.audit.append(
          {
            tenantId: input.tenantId,
            actor: input.by,
            actorKind: 'user',
            action: 'device.revoke',
            resource: deviceRef(input.tenantId, input.deviceId),
            outcome: 'allowed',
            detail: {
              reason: input.reason,
              certificates,
              result: found.first ? 'revoked' : 'already_revoked',
            },
          },
          tx,
        );
      return found;
    });
    if (!done) return { result: 'missing' };
    let nats: 'cut' | 'pending' | 'tls_only' = 'tls_only';
    if (this.publisher) {
      try {
        await this.publisher.publish();
        nats = 'cut';
      } catch {
        nats = 'pending';
      }
    }
    const outcome = {
      result: done.first ? ('revoked' as const) : ('already_revoked' as const),
      revokedAt: done.row.revoked_at ?? at,
      revokedBy: done.row.revoked_by ?? input.by,
      reason: done.row.revoke_reason,
      certificates: done.certificates,
      nats,
    };
    this.log.warn(
      {
        tenant: input.tenantId,
        device: input.deviceId,
        by: input.by,
        reason: input.reason,
        result: outcome.result,
        certificates: outcome.certificates,
        nats,
      },
      'device revoked',
    );
    return outcome;
  }
}
