// Scoped erasure survives kill -9 mid-job. The cloud runs as a real child process; a failpoint kills it with
// SIGKILL in its third batch, after that batch's media bytes were deleted and before its tombstones, cursor and
// counters committed (the worst place: files gone, rows still live). A clean restart must resume and complete
// exactly: every in-scope object erased once (counts equal the objects, nothing counted twice), held ones kept
// and reported, nothing outside the scope touched (the store is listed, the rows read back).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Kysely } from 'kysely';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { natsConfig, printLogsOnFailure, useDatabase, useNats, usePki } from '@vigil/testkit';
import { AuditLog } from '../src/audit/audit-log.js';
import { createDb } from '../src/index.js';
import { LegalHolds } from '../src/media/holds.js';
import { ErasureStore } from '../src/privacy/erasure-store.js';
import { migrateToLatest } from '../src/storage/migrate.js';
import type { Database } from '../src/storage/tables.js';
import { spawnCloud, type CloudProcess } from './support/cloud-process.js';
import { listStore, seedObjects, type SeedObject } from './support/privacy.js';

const BATCH = 20;
const HOUR = 3_600_000;

describe('scoped erasure: kill -9 mid-job, then resume', () => {
  const pki = usePki({ services: ['cloud'] });
  const nats = useNats({
    config: (ctx) =>
      natsConfig({
        tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
      })(ctx),
  });
  const databaseUrl = useDatabase();
  const dir = mkdtempSync(join(tmpdir(), 'vigil-erasure-crash-'));
  const storeDir = join(dir, 'media');
  let db: Kysely<Database> | undefined;
  let current: CloudProcess | undefined;
  const outputs: string[] = [];
  printLogsOnFailure('cloud processes', () => [...outputs, current?.output() ?? ''].join('\n----\n'));
  afterAll(async () => {
    await current?.stop();
    await db?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  const start = (failpoints: string[] = []): CloudProcess => {
    if (current) outputs.push(current.output());
    const c = pki().services.cloud!;
    current = spawnCloud(
      dir,
      {
        http: { port: 0 },
        database: { url: databaseUrl() },
        nats: {
          servers: [`tls://localhost:${nats().port}`],
          tls: { caFile: pki().caCert, certFile: c.cert, keyFile: c.key },
        },
        api: { enabled: false },
        tracing: { enabled: false },
        media: { dir: storeDir, retentionDays: 0 },
        privacy: { erasure: { batchSize: BATCH, pollIntervalSeconds: 1 } },
        // The job runs behind the scheduler lease: the restarted process takes over once the killed one's
        // lease expires (ttl), so a short one keeps the resume within the test's time.
        scheduler: { leaseTtlSeconds: 3, renewIntervalSeconds: 1 },
      },
      { failpoints },
    );
    return current;
  };

  it('completes exactly after a crash between the byte deletions and the commit of a batch', async () => {
    db = createDb(databaseUrl(), 2, () => undefined);
    await migrateToLatest(db as Kysely<unknown>);
    const now = Date.now();
    const objects: SeedObject[] = [];
    // 150 in the last hour of gw-1/cam1 (the scope), 50 older ones and 40 of another camera (outside).
    for (let i = 0; i < 150; i++)
      objects.push({
        tenant: 'acme',
        site: 'hq',
        device: 'gw-1',
        camera: 'cam1',
        track: `t${i}`,
        at: new Date(now - 1000 - i * 20_000),
      });
    for (let i = 0; i < 50; i++)
      objects.push({
        tenant: 'acme',
        site: 'hq',
        device: 'gw-1',
        camera: 'cam1',
        track: 'old',
        at: new Date(now - HOUR - 60_000 - i * 1000),
      });
    for (let i = 0; i < 40; i++)
      objects.push({
        tenant: 'acme',
        site: 'hq',
        device: 'gw-1',
        camera: 'cam2',
        track: 'c2',
        at: new Date(now - 1000 - i * 60_000),
      });
    const seeded = await seedObjects(db, storeDir, objects);
    const audit = new AuditLog(db, pino({ level: 'silent' }), new Registry());
    // Objects 100..109 of the scope are held (their capture times form one range).
    const heldRange = { from: objects[109]!.at, to: new Date(objects[100]!.at.getTime() + 1) };
    await new LegalHolds(db, audit).place(
      'acme',
      { kind: 'camera_range', deviceId: 'gw-1', cameraId: 'cam1', ...heldRange },
      'case 9',
      { actor: 'counsel', actorKind: 'user' },
    );
    const request = await new ErasureStore(db, audit, () => new Date()).create(
      'acme',
      {
        kind: 'camera',
        device_id: 'gw-1',
        camera_id: 'cam1',
        from: new Date(now - HOUR).toISOString(),
        to: new Date(now).toISOString(),
      },
      'DSR-1',
      'admin@acme',
    );

    // First run: killed in its third media batch (two committed, the third's bytes deleted, not committed).
    const first = start(['erasure.after_store_delete@3']);
    const exit = await first.exited(180_000);
    expect(exit.signal).toBe('SIGKILL');
    const mid = await db
      .selectFrom('erasure_requests')
      .selectAll()
      .where('id', '=', request.id)
      .executeTakeFirstOrThrow();
    expect(mid.state).toBe('running');
    expect(mid.batches).toBe(2);
    expect(mid.media_erased + mid.media_held).toBe(2 * BATCH);
    const liveRows = await db
      .selectFrom('media')
      .select('storage_key')
      .where('deleted_at', 'is', null)
      .execute();
    const onDisk = listStore(storeDir);
    const dangling = liveRows.filter((r) => !onDisk.has(r.storage_key!)).length;
    expect(dangling, 'the killed batch deleted bytes of rows that are still live').toBeGreaterThan(0);

    // Restart: the job resumes from the committed cursor and finishes.
    start();
    const deadline = Date.now() + 180_000;
    let done = mid;
    while (done.state !== 'done') {
      if (Date.now() > deadline) throw new Error(`not done: ${JSON.stringify(done)}`);
      await new Promise((r) => setTimeout(r, 250));
      done = await db
        .selectFrom('erasure_requests')
        .selectAll()
        .where('id', '=', request.id)
        .executeTakeFirstOrThrow();
    }
    const inScope = seeded.slice(0, 150);
    const held = inScope.slice(100, 110);
    const erased = inScope.filter((o) => !held.includes(o));
    expect({
      media_erased: done.media_erased,
      media_held: done.media_held,
      media_failed: done.media_failed,
      events_erased: done.events_erased,
      events_held: done.events_held,
    }).toEqual({ media_erased: 140, media_held: 10, media_failed: 0, events_erased: 140, events_held: 10 });
    const erasedKeys = new Set(erased.map((o) => o.key));
    expect(listStore(storeDir)).toEqual(
      new Set(seeded.filter((o) => !erasedKeys.has(o.key)).map((o) => o.key)),
    );
    const tomb = await db
      .selectFrom('media')
      .select('media_id')
      .where('deleted_at', 'is not', null)
      .execute();
    expect(new Set(tomb.map((r) => r.media_id))).toEqual(new Set(erased.map((o) => o.mediaId)));
    const erasedEvents = await db
      .selectFrom('events')
      .select('event_id')
      .where('erased_at', 'is not', null)
      .execute();
    expect(new Set(erasedEvents.map((r) => r.event_id))).toEqual(new Set(erased.map((o) => o.eventId)));
    const complete = await db
      .selectFrom('audit_log')
      .select(['detail'])
      .where('action', '=', 'erasure.complete')
      .where('resource', '=', `erasure:acme/${request.id}`)
      .execute();
    expect(complete).toHaveLength(1);
    console.log(
      `[erasure-crash] killed after ${mid.batches} committed batches with ${dangling} live rows missing their bytes; ` +
        `resumed: ${done.media_erased} erased, ${done.media_held} held, ${done.media_failed} failed, ${done.batches} batches in all`,
    );
  }, 240_000); // two cloud starts, a kill and a lease takeover: its own waits are bounded at 180 s
});
