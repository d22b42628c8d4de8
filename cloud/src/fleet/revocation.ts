import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { deviceRef, type AuditLog } from '../audit/audit-log.js';
import type { Database } from '../storage/tables.js';
import type { NatsAccountPublisher } from './nats-account.js';
import type { NatsSessionKicker } from './nats-sessions.js';

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
       * NATS access: `cut` = the device's sessions were found and kicked on every server that answered and the
       * account JWT was pushed (it cannot log in again either way: the auth callout reads the registry);
       * `pending` = a kick or the push failed (the push is retried at reconnect and every few minutes; a
       * surviving session ends at the latest when its credentials expire); `tls_only` = NATS runs without
       * per-device JWTs, so access ends when the certificate expires.
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
    /** JWT mode: ends the device's live sessions (callout users: fleet/nats-sessions.ts). */
    private readonly sessions?: NatsSessionKicker,
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
    let kicked: number | undefined;
    if (this.publisher || this.sessions) {
      nats = 'cut';
      // Kick first: it is what ends the live sessions; the push only matters for users of the old scheme.
      try {
        kicked = (await this.sessions?.kickDevice(input.tenantId, input.deviceId))?.kicked;
      } catch (err) {
        nats = 'pending';
        this.log.error(
          { err: (err as Error).message, device: input.deviceId },
          'kicking NATS sessions failed',
        );
      }
      try {
        await this.publisher?.publish();
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
        kicked,
      },
      'device revoked',
    );
    return outcome;
  }
}
