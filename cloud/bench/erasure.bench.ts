// Scoped erasure of many objects (issue 19: "bounded time for 100,000 objects"), in one run on one machine:
//   node --conditions=@vigil/source --import tsx cloud/bench/erasure.bench.ts [--objects 100000] [--kib 1]
//        [--batch 500] [--concurrency 16] [--held 1000] [--quick]
// --quick: 5,000 objects. Env: DATABASE_URL (an admin URL; default postgres://postgres@127.0.0.1:5432/postgres).
// Prints ONE JSON document on stdout; progress on stderr.
//
// Seeds N objects of one device (--kib KiB of bytes each in a filesystem MediaStore, the media index row and its
// event in PostgreSQL, as ingest leaves them), 1,000 more of another device (must be untouched), and a legal
// hold over the newest --held of the scope; then runs the real ErasureJob (in this process, the cloud's code) on
// one device-scope request until done and reports the wall time, objects/s, batches and the counts, and checks
// that exactly the unheld objects' files are gone.
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Kysely } from 'kysely';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { createDatabase } from '@vigil/testkit';
import { AuditLog } from '../src/audit/audit-log.js';
import { createDb, migrateToLatest } from '../src/index.js';
import { LegalHolds } from '../src/media/holds.js';
import { FsMediaStore } from '../src/media/store.js';
import { ErasureJob } from '../src/privacy/erasure-job.js';
import { ErasureStore } from '../src/privacy/erasure-store.js';
import type { Database } from '../src/storage/tables.js';
import { listStore, seedObjects, type SeedObject } from '../test/support/privacy.js';
import { log, round } from './support.js';

const { values } = parseArgs({
  options: {
    objects: { type: 'string' },
    kib: { type: 'string', default: '1' },
    batch: { type: 'string', default: '500' },
    concurrency: { type: 'string', default: '16' },
    held: { type: 'string', default: '1000' },
    quick: { type: 'boolean', default: false },
  },
});
const N = Number(values.objects ?? (values.quick ? 5_000 : 100_000));
const KIB = Number(values.kib);
const BATCH = Number(values.batch);
const CONCURRENCY = Number(values.concurrency);
const HELD = Math.min(N, Number(values.held));
const OTHER = 1_000;

async function main(): Promise<void> {
  const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const database = await createDatabase(adminUrl, 'vigil_erasure_bench');
  const dir = mkdtempSync(join(tmpdir(), 'vigil-erasure-bench-'));
  const db: Kysely<Database> = createDb(database.url, 8, () => undefined);
  try {
    await migrateToLatest(db as Kysely<unknown>);
    const now = Date.now();
    const objects: SeedObject[] = [];
    // One object every 100 ms back from now: 100,000 span under three hours (three daily partitions at most).
    for (let i = 0; i < N; i++)
      objects.push({
        tenant: 'acme',
        site: 'hq',
        device: 'gw-1',
        camera: `cam${i % 4}`,
        track: `t${i % 997}`,
        at: new Date(now - 1000 - i * 100),
      });
    for (let i = 0; i < OTHER; i++)
      objects.push({
        tenant: 'acme',
        site: 'hq',
        device: 'gw-2',
        camera: 'cam0',
        track: 'o',
        at: new Date(now - 1000 - i * 100),
      });
    log(`seeding ${objects.length} objects of ${KIB} KiB ...`);
    const seedStart = performance.now();
    const seeded = await seedObjects(db, join(dir, 'media'), objects, KIB * 1024);
    const seedMs = performance.now() - seedStart;
    log(`seeded in ${round(seedMs / 1000, 1)} s`);
    const audit = new AuditLog(db, pino({ level: 'silent' }), new Registry());
    if (HELD > 0)
      await new LegalHolds(db, audit).place(
        'acme',
        {
          kind: 'camera_range',
          deviceId: 'gw-1',
          cameraId: 'cam0',
          from: objects[HELD - 1]!.at,
          to: new Date(now),
        },
        'bench hold',
        { actor: 'bench', actorKind: 'user' },
      );
    const heldCount = objects.slice(0, HELD).filter((o) => o.camera === 'cam0').length;
    const request = await new ErasureStore(db, audit, () => new Date()).create(
      'acme',
      { kind: 'device', device_id: 'gw-1' },
      'bench',
      'bench',
    );
    const job = new ErasureJob({
      db,
      store: new FsMediaStore(join(dir, 'media')),
      audit,
      log: pino({ level: 'silent' }),
      metrics: new Registry(),
      batchSize: BATCH,
      storeConcurrency: CONCURRENCY,
      pollIntervalMs: 1000,
    });
    const load = loadavg()[0];
    log(`erasing (batch ${BATCH}, ${CONCURRENCY} deletions in flight) ...`);
    const start = performance.now();
    let mediaMs = 0;
    let batches = 0;
    for (;;) {
      const r = await job.runBatch(request.id);
      batches++;
      if (r.phase === 'media') mediaMs = performance.now() - start;
      if (batches % 50 === 0) log(`  ${batches} batches, ${round((performance.now() - start) / 1000, 1)} s`);
      if (!r.more) break;
    }
    const totalMs = performance.now() - start;
    const row = await db
      .selectFrom('erasure_requests')
      .selectAll()
      .where('id', '=', request.id)
      .executeTakeFirstOrThrow();
    const left = listStore(join(dir, 'media'));
    const expectLeft = OTHER + heldCount;
    const exact =
      left.size === expectLeft &&
      seeded.filter((o) => o.device === 'gw-2').every((o) => left.has(o.key)) &&
      row.media_erased === N - heldCount &&
      row.media_held === heldCount &&
      row.events_erased === N - heldCount;
    console.log(
      JSON.stringify(
        {
          bench: 'erasure',
          objects: N,
          kib: KIB,
          batch: BATCH,
          concurrency: CONCURRENCY,
          held: heldCount,
          untouchedOtherDevice: OTHER,
          seedSeconds: round(seedMs / 1000, 1),
          erasureSeconds: round(totalMs / 1000, 1),
          mediaPhaseSeconds: round(mediaMs / 1000, 1),
          eventsPhaseSeconds: round((totalMs - mediaMs) / 1000, 1),
          objectsPerSecond: round(N / (totalMs / 1000), 0),
          batches,
          counts: {
            media_erased: row.media_erased,
            media_held: row.media_held,
            media_failed: row.media_failed,
            events_erased: row.events_erased,
            events_held: row.events_held,
          },
          filesLeft: left.size,
          exact,
          loadAverage1mAtStart: round(load ?? 0, 1),
        },
        null,
        2,
      ),
    );
    if (!exact) process.exitCode = 1;
  } finally {
    await db.destroy();
    await database.drop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
