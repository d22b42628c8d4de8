import { sql, type Kysely } from 'kysely';

// Agency alerts, CAP 1.2 (cloud/src/alerts/, issue 16).
//
// - sites.location: where a site is, for CAP `area` ({"circle":{lat,lon,radius_km}} or {"polygon":[[lat,lon],...]}).
// - alert_targets: a tenant's agency endpoints. Authentication is mTLS (client certificate and key PEM, plus the
//   agency's CA) or an RFC 9421 HMAC key; like webhooks.secret these are stored in the clear because every
//   delivery needs them, and the API never returns them. feed_token_sha256: the pull (Atom) feed's bearer token hash.
// - alert_rules: which committed events raise an incident (labels, zones, sites, cameras, schedule, minimum dwell,
//   minimum score), the CAP urgency/severity/certainty, and the targets.
// - alert_incidents: one per (rule, device, camera, track): pending until the dwell is reached, then alerted,
//   then cancelled (track ended, or an operator). `fingerprint` is what an Update compares against.
// - alert_messages: one CAP message per (incident, target, seq), id `<target>:<identifier>`: the identifier (stable across retries, derived
//   from incident + seq), `sent`, msgType and the identifier it references; its delivery state, attempts, the
//   agency's answer, and for a dead letter the reason (an XSD validator message, an HTTP status...).
// - webhook_outbox.subject: the JOBS subject a row goes to (null: the webhook subject, rows written before 0016).
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('sites').addColumn('location', 'jsonb').execute();
  await db.schema.alterTable('webhook_outbox').addColumn('subject', 'text').execute();

  await db.schema
    .createTable('alert_targets')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('url', 'text', (c) => c.notNull())
    .addColumn('auth', 'text', (c) => c.notNull())
    .addColumn('client_cert_pem', 'text')
    .addColumn('client_key_pem', 'text')
    .addColumn('ca_pem', 'text')
    .addColumn('secret', 'text')
    .addColumn('feed_token_sha256', 'text')
    .addColumn('enabled', 'boolean', (c) => c.notNull().defaultTo(true))
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    .addCheckConstraint('alert_targets_auth', sql`auth in ('mtls', 'signature')`)
    .execute();
  await db.schema.createIndex('alert_targets_tenant').on('alert_targets').columns(['tenant_id']).execute();

  await db.schema
    .createTable('alert_rules')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('match', 'jsonb', (c) => c.notNull())
    .addColumn('cap', 'jsonb', (c) => c.notNull())
    .addColumn('target_ids', sql`uuid[]`, (c) => c.notNull())
    .addColumn('enabled', 'boolean', (c) => c.notNull().defaultTo(true))
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('alert_rules_tenant').on('alert_rules').columns(['tenant_id']).execute();

  await db.schema
    .createTable('alert_incidents')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('rule_id', 'uuid', (c) => c.notNull().references('alert_rules.id').onDelete('cascade'))
    .addColumn('site_id', 'text', (c) => c.notNull())
    .addColumn('device_id', 'text', (c) => c.notNull())
    .addColumn('camera_id', 'text', (c) => c.notNull())
    .addColumn('track_id', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('first_seen_at', 'timestamptz', (c) => c.notNull())
    .addColumn('last_event_id', 'uuid', (c) => c.notNull())
    .addColumn('fingerprint', 'text', (c) => c.notNull())
    .addColumn('seq', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
    .addColumn('cancelled_by', 'text')
    .addCheckConstraint('alert_incidents_state', sql`state in ('pending', 'alerted', 'cancelled', 'ended')`)
    .addUniqueConstraint('alert_incidents_track', ['rule_id', 'device_id', 'camera_id', 'track_id'])
    .execute();
  await db.schema
    .createIndex('alert_incidents_tenant')
    .on('alert_incidents')
    .columns(['tenant_id', 'created_at desc'])
    .execute();

  await db.schema
    .createTable('alert_messages')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('identifier', 'text', (c) => c.notNull())
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('incident_id', 'uuid', (c) => c.notNull().references('alert_incidents.id').onDelete('cascade'))
    .addColumn('target_id', 'uuid', (c) => c.notNull().references('alert_targets.id').onDelete('cascade'))
    .addColumn('seq', 'integer', (c) => c.notNull())
    .addColumn('msg_type', 'text', (c) => c.notNull())
    .addColumn('references_id', 'text')
    .addColumn('sent', 'timestamptz', (c) => c.notNull())
    .addColumn('event_id', 'uuid', (c) => c.notNull())
    .addColumn('info', 'jsonb', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull().defaultTo('pending'))
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('http_status', 'integer')
    .addColumn('answer', 'text')
    .addColumn('error', 'text')
    .addColumn('body', 'text')
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
    .addCheckConstraint('alert_messages_state', sql`state in ('pending', 'retrying', 'delivered', 'dead')`)
    .addCheckConstraint('alert_messages_type', sql`msg_type in ('Alert', 'Update', 'Cancel')`)
    .execute();
  await db.schema
    .createIndex('alert_messages_incident')
    .on('alert_messages')
    .columns(['incident_id', 'target_id', 'seq'])
    .unique()
    .execute();
  await db.schema
    .createIndex('alert_messages_target')
    .on('alert_messages')
    .columns(['target_id', 'sent desc'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('alert_messages').execute();
  await db.schema.dropTable('alert_incidents').execute();
  await db.schema.dropTable('alert_rules').execute();
  await db.schema.dropTable('alert_targets').execute();
  await db.schema.alterTable('webhook_outbox').dropColumn('subject').execute();
  await db.schema.alterTable('sites').dropColumn('location').execute();
}
