import { sql, type Kysely } from 'kysely';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useDatabase } from '@vigil/testkit';
import { AuditLog, createDb, migrateToLatest, parseCloudConfig } from '../src/index.js';
import { PartitionJob } from '../src/events/partitions.js';
import { EventStore } from '../src/events/store.js';
import type { Database } from '../src/storage/tables.js';
import { insertEvents, uuidV7 } from './api-fixtures.js';

// Event retention drops whole daily partitions (with their events) once their day ended events.retentionDays
// ago: against a real PostgreSQL, with the partition upkeep job as ingest runs it.
describe('events retention (partition drop)', () => {
  const dbUrl = useDatabase();
  let db: Kysely<Database>;
  beforeAll(async () => {
    db = createDb(dbUrl());
    await migrateToLatest(db as Kysely<unknown>);
  });
  afterAll(() => db.destroy());

  const partitions = async (): Promise<string[]> => (await new EventStore(db).partitionDays()).sort();
  const at = (day: string): string => `${day}T12:00:00.000000Z`;
  const seed = (day: string, n: number) =>
    Array.from({ length: n }, (_, i) => ({
      event_id: uuidV7(Date.parse(at(day)) + i),
      tenant_id: 'acme',
      device_id: 'gw-1',
      camera_id: 'cam1',
      label: 'person',
      at: at(day),
    }));

  it('drops the partitions past retention with their events, keeps the rest, records each drop', async () => {
    await insertEvents(db, [...seed('2026-01-10', 3), ...seed('2026-02-20', 2), ...seed('2026-03-01', 1)]);
    const metrics = new Registry();
    const audit = new AuditLog(db, pino({ level: 'silent' }), metrics);
    const now = new Date('2026-03-01T18:00:00Z');
    const job = new PartitionJob(new EventStore(db), pino({ level: 'silent' }), metrics, {
      now: () => now,
      retentionDays: 30,
      audit,
      daysAhead: 1,
      daysBack: 0,
    });
    await job.runOnce();

    const days = await partitions();
    expect(days).not.toContain('2026-01-10');
    expect(days).toEqual(expect.arrayContaining(['2026-02-20', '2026-03-01', '2026-03-02']));
    const left = await db.selectFrom('events').select(['occurred_at']).execute();
    expect(left.map((r) => r.occurred_at.toISOString().slice(0, 10)).sort()).toEqual([
      '2026-02-20',
      '2026-02-20',
      '2026-03-01',
    ]);
    const entries = await db
      .selectFrom('audit_log')
      .selectAll()
      .where('action', '=', 'events.retention')
      .execute();
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ actor: 'system', resource: 'events:2026-01-10', tenant_id: null });
    expect(entries[0]!.detail).toMatchObject({ day: '2026-01-10', rows: 3, retention_days: 30 });
    const dropped = await metrics.getSingleMetric('vigil_cloud_partitions_dropped_total')?.get();
    expect(dropped?.values[0]?.value).toBe(1);

    // A second pass (or another process) finds nothing more to drop.
    await job.runOnce();
    expect(
      await db.selectFrom('audit_log').select('seq').where('action', '=', 'events.retention').execute(),
    ).toHaveLength(1);
    expect(await new EventStore(db).dropPartition('2026-01-10')).toBeNull();
    await expect(new EventStore(db).dropPartition("2026-01-10'; drop table events; --")).rejects.toThrow(
      /not a day/,
    );
    // the events table is intact
    expect((await sql<{ n: string }>`select count(*) as n from events`.execute(db)).rows[0]?.n).toBe('3');
  });

  it('refuses a retention that does not exceed the accepted age of late events', () => {
    const base = {
      database: { url: 'postgres://x' },
      nats: { servers: ['tls://x'], tls: { caFile: 'a', certFile: 'b', keyFile: 'c' } },
      api: { enabled: false },
    };
    expect(() => parseCloudConfig({ ...base, events: { retentionDays: 30 } })).toThrow(
      /events\.retentionDays.*more than ingest\.acceptPastDays/s,
    );
    expect(parseCloudConfig({ ...base, events: { retentionDays: 0 } }).events.retentionDays).toBe(0);
    expect(parseCloudConfig(base).events.retentionDays).toBe(365);
  });
});
