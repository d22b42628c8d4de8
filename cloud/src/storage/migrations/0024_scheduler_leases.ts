import { sql, type Kysely } from 'kysely';

// Leader leases of the scheduler role (cloud/src/scheduler/lease.ts): one row per lease name, the process that
// holds it, until when (by the database clock, the one clock every cloud process shares) and a fencing token that
// grows by one at every change of holder, so work done under an older token can be told apart and refused. A row
// and plain UPDATEs rather than a session advisory lock: pgbouncer in transaction pooling mode gives each
// statement whatever server connection is free, so a session lock is neither held nor released where it was taken.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('scheduler_leases')
    .addColumn('name', 'text', (c) => c.primaryKey().check(sql`length(name) between 1 and 100`))
    .addColumn('holder', 'text', (c) => c.notNull().check(sql`length(holder) between 1 and 200`))
    .addColumn('token', 'bigint', (c) => c.notNull().check(sql`token > 0`))
    .addColumn('acquired_at', 'timestamptz', (c) => c.notNull())
    .addColumn('renewed_at', 'timestamptz', (c) => c.notNull())
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('scheduler_leases').execute();
}
