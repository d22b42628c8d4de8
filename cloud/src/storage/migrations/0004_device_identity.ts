import { sql, type Kysely } from 'kysely';

// Device identity: every certificate the fleet CA issued to a device (serial, validity, the NATS user key
// its JWT was bound to), and revocation of a device (who, when, why). A revoked device keeps its row and
// its events; it can neither renew nor connect to NATS again (fleet/identity-service.ts, fleet/revocation.ts).
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('devices')
    .addColumn('hardware_id', 'text')
    .addColumn('enrolled_at', 'timestamptz')
    .addColumn('revoked_at', 'timestamptz')
    .addColumn('revoked_by', 'text')
    .addColumn('revoke_reason', 'text')
    .execute();

  await db.schema
    .createTable('device_certificates')
    // Hex, upper case, no separators: how X509Certificate#serialNumber prints it.
    .addColumn('serial', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('device_id', 'text', (c) => c.notNull())
    .addColumn('fingerprint_sha256', 'text', (c) => c.notNull().unique())
    .addColumn('not_before', 'timestamptz', (c) => c.notNull())
    .addColumn('not_after', 'timestamptz', (c) => c.notNull())
    .addColumn('nats_public_key', 'text', (c) => c.notNull())
    .addColumn('issued_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    // enroll | renew
    .addColumn('issued_by', 'text', (c) => c.notNull())
    .addColumn('revoked_at', 'timestamptz')
    .addForeignKeyConstraint(
      'device_certificates_device_fkey',
      ['tenant_id', 'device_id'],
      'devices',
      ['tenant_id', 'id'],
      (fk) => fk.onDelete('cascade'),
    )
    .addCheckConstraint('device_certificates_issued_by', sql`issued_by in ('enroll', 'renew')`)
    .execute();
  await db.schema
    .createIndex('device_certificates_device_idx')
    .on('device_certificates')
    .columns(['tenant_id', 'device_id', 'not_after'])
    .execute();
  // The NATS account JWT lists the revoked user keys whose JWTs may still be valid (fleet/revocation.ts).
  await db.schema
    .createIndex('device_certificates_revoked_idx')
    .on('device_certificates')
    .columns(['revoked_at', 'not_after'])
    .where(sql.ref('revoked_at'), 'is not', null)
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('device_certificates').execute();
  await db.schema
    .alterTable('devices')
    .dropColumn('hardware_id')
    .dropColumn('enrolled_at')
    .dropColumn('revoked_at')
    .dropColumn('revoked_by')
    .dropColumn('revoke_reason')
    .execute();
}
