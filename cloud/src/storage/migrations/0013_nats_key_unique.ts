import { sql, type Kysely } from 'kysely';

// A NATS user key belongs to one device in the whole fleet (issue 12, finding 2). The key an active device's
// current JWT is bound to is kept on its row (devices.nats_public_key, set at enroll and renew), and a partial
// unique index makes two active (not revoked) devices with the same key impossible, whatever code writes: a
// tenant's installer could otherwise enroll a device with another tenant's gateway key (public: the `sub` of
// its JWT) and cut that gateway off by revoking the copy (the account's revocation list is keyed by user key).
// identity-service.ts also refuses any key that any other device was ever bound to (revoked ones included),
// with a precise error; this index is the backstop against races and other writers.
//
// Backfill: each device gets the key of its newest certificate. Should two active devices already share a key,
// the one enrolled first keeps it (the later one is the copy: the key was public before it enrolled) and the
// others are left NULL; such a device can no longer renew with that key.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('devices').addColumn('nats_public_key', 'text').execute();
  await sql`
    update devices d set nats_public_key = k.nats_public_key
    from (
      select distinct on (c.nats_public_key) c.tenant_id, c.device_id, c.nats_public_key
      from (
        select distinct on (tenant_id, device_id) tenant_id, device_id, nats_public_key
        from device_certificates order by tenant_id, device_id, issued_at desc, serial desc
      ) c
      join devices dd on dd.tenant_id = c.tenant_id and dd.id = c.device_id and dd.revoked_at is null
      where c.nats_public_key <> ''
      order by c.nats_public_key, dd.enrolled_at nulls last, c.tenant_id, c.device_id
    ) k
    where d.tenant_id = k.tenant_id and d.id = k.device_id`.execute(db);
  await db.schema
    .createIndex('devices_nats_public_key_active')
    .unique()
    .on('devices')
    .column('nats_public_key')
    .where(sql.ref('revoked_at'), 'is', null)
    .execute();
  // For the "ever bound to another device" check at enroll and renew.
  await db.schema
    .createIndex('device_certificates_nats_key_idx')
    .on('device_certificates')
    .column('nats_public_key')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('device_certificates_nats_key_idx').execute();
  await db.schema.dropIndex('devices_nats_public_key_active').execute();
  await db.schema.alterTable('devices').dropColumn('nats_public_key').execute();
}
