// Outbox throughput against raw better-sqlite3, in one run on one machine:
//   node --conditions=@vigil/source --import tsx edge-agent/bench/outbox.bench.ts
// Env: OUTBOX_BENCH_DIR (default: a fresh dir under os.tmpdir(), removed afterwards; put it on the device's real
// storage to measure that), OUTBOX_BENCH_MS (per sample, default 1000), OUTBOX_BENCH_REPEATS (default 5 interleaved
// rounds; medians are reported). Prints one JSON document on stdout.
//
// Every figure is in events per second, all with journal_mode=WAL and synchronous=FULL (one fsync per commit):
//   raw            one prepared INSERT per row, autocommit (one row per transaction): the floor of what SQLite
//                  costs for the same bytes; the baseline of ratioToRaw
//   append         Outbox.append, one event per transaction
//   appendMany100  Outbox.appendMany of 100 events, one transaction (group commit)
//   drain          nextBatch(500) + ack(ids of the batch) until a pre-filled outbox is empty
// Each runs for a 300-byte event and for a 300-byte event with a 30 KB snapshot.
import { mkdtempSync, rmSync, statfsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openOutbox, type AppendEntry, type Outbox, type Priority } from '../src/buffer/index.js';
import { createUuidV7 } from '../src/lib/uuidv7.js';

interface Variant {
  name: string;
  payloadBytes: number;
  mediaBytes: number;
  drainEvents: number;
}

interface Result {
  name: string;
  opsPerSec: number;
  ratioToRaw: number;
  samples: number[];
}

const durationMs = Number(process.env.OUTBOX_BENCH_MS ?? 1000);
const repeats = Math.max(1, Number(process.env.OUTBOX_BENCH_REPEATS ?? 5));
const ownDir = process.env.OUTBOX_BENCH_DIR === undefined;
const dir = process.env.OUTBOX_BENCH_DIR ?? mkdtempSync(join(tmpdir(), 'vigil-outbox-bench-'));

const variants: Variant[] = [
  { name: '300B', payloadBytes: 300, mediaBytes: 0, drainEvents: 20_000 },
  { name: '300B+30KB media', payloadBytes: 300, mediaBytes: 30_000, drainEvents: 4_000 },
];

const nextId = createUuidV7();
let fileNo = 0;

function freshPath(): string {
  return join(dir, `bench-${process.pid}-${fileNo++}.db`);
}

function removeDb(path: string): void {
  for (const suffix of ['', '-wal', '-shm']) rmSync(path + suffix, { force: true });
}

function makeEntry(v: Variant, payload: Buffer, media: Buffer, i: number): AppendEntry {
  const e: AppendEntry = {
    id: nextId(),
    priority: (i & 3) as Priority,
    kind: 'track.start',
    subject: 'vigil.v1.t1.d1.evt.cam1',
    payload,
  };
  if (v.mediaBytes > 0) e.media = { contentType: 'image/jpeg', data: media };
  return e;
}

/** Calls `step` (which does `perStep` events) until `durationMs` is over; returns events per second. */
function timed(perStep: number, step: (i: number) => void): number {
  for (let i = 0; i < 20; i++) step(i); // warm-up: statement caches, first WAL frames
  let n = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(durationMs) * 1_000_000n;
  let t = start;
  while (t < end) {
    step(n);
    n++;
    t = process.hrtime.bigint();
  }
  return (n * perStep) / (Number(t - start) / 1e9);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function withOutbox<T>(fn: (o: Outbox) => T): T {
  const path = freshPath();
  const o = openOutbox(path, {
    synchronous: 'FULL',
    maxEvents: 50_000_000,
    maxBytes: 64 * 1024 * 1024 * 1024,
    maxPayloadBytes: 1024 * 1024,
  });
  try {
    return fn(o);
  } finally {
    o.close();
    removeDb(path);
  }
}

function benchRaw(v: Variant, payload: Buffer, media: Buffer): number {
  const path = freshPath();
  const db = new Database(path);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL'); // explicit: reopening a WAL file would default to NORMAL in better-sqlite3
    // The same columns and bytes as the outbox, media inline: one table, one statement, no index but the PK.
    db.exec(`CREATE TABLE raw_events (
      id TEXT NOT NULL PRIMARY KEY, priority INTEGER NOT NULL, kind TEXT NOT NULL, subject TEXT NOT NULL,
      bytes INTEGER NOT NULL, created_at INTEGER NOT NULL, media BLOB, payload BLOB NOT NULL) STRICT`);
    const insert = db.prepare<[string, number, string, string, number, number, Buffer | null, Buffer]>(
      'INSERT INTO raw_events VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
    return timed(1, (i) => {
      const e = makeEntry(v, payload, media, i);
      insert.run(
        e.id,
        e.priority,
        e.kind,
        e.subject,
        v.payloadBytes + v.mediaBytes,
        Date.now(),
        v.mediaBytes > 0 ? media : null,
        payload,
      );
    });
  } finally {
    db.close();
    removeDb(path);
  }
}

function benchAppend(v: Variant, payload: Buffer, media: Buffer): number {
  return withOutbox((o) =>
    timed(1, (i) => {
      if (!o.append(makeEntry(v, payload, media, i)).accepted) throw new Error('append refused');
    }),
  );
}

function benchAppendMany(v: Variant, payload: Buffer, media: Buffer): number {
  return withOutbox((o) =>
    timed(100, (i) => {
      const batch = Array.from({ length: 100 }, (_, k) => makeEntry(v, payload, media, i * 100 + k));
      if (!o.appendMany(batch).every((r) => r.accepted)) throw new Error('appendMany refused');
    }),
  );
}

function benchDrain(v: Variant, payload: Buffer, media: Buffer): number {
  return withOutbox((o) => {
    for (let i = 0; i < v.drainEvents; i += 500)
      o.appendMany(Array.from({ length: 500 }, (_, k) => makeEntry(v, payload, media, i + k)));
    const total = o.stats().depth;
    const start = process.hrtime.bigint();
    let drained = 0;
    for (;;) {
      const batch = o.nextBatch(500);
      if (batch.length === 0) break;
      drained += o.ack(batch.map((e) => e.id));
    }
    const secs = Number(process.hrtime.bigint() - start) / 1e9;
    if (drained !== total || o.stats().depth !== 0) throw new Error(`drained ${drained} of ${total}`);
    return drained / secs;
  });
}

function main(): void {
  const machine = {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    loadavg: loadavg().map((x) => Math.round(x * 100) / 100),
    node: process.version,
    sqlite: String(new Database(':memory:').prepare('SELECT sqlite_version()').pluck().get()),
    dir,
    fsType: `0x${statfsSync(dir).type.toString(16)}`,
  };
  const results: Result[] = [];
  try {
    for (const v of variants) {
      const payload = randomBytes(v.payloadBytes);
      const media = randomBytes(v.mediaBytes);
      const cases: [string, () => number][] = [
        ['raw insert (1 row/tx)', () => benchRaw(v, payload, media)],
        ['Outbox.append (1/tx)', () => benchAppend(v, payload, media)],
        ['Outbox.appendMany (100/tx)', () => benchAppendMany(v, payload, media)],
        ['drain nextBatch(500)+ack', () => benchDrain(v, payload, media)],
      ];
      // Interleaved rounds (raw, append, appendMany, drain, raw, …) so that every case sees the same background
      // load; ratioToRaw is the median of the per-round ratios (paired), opsPerSec the median of the samples.
      const samples = cases.map((): number[] => []);
      for (let r = 0; r < repeats; r++) cases.forEach(([, run], k) => samples[k]!.push(Math.round(run())));
      const raw = samples[0]!;
      cases.forEach(([label], k) => {
        const mine = samples[k]!;
        const ops = median(mine);
        results.push({
          name: `${label} [${v.name}]`,
          opsPerSec: ops,
          ratioToRaw: Math.round(median(mine.map((x, r) => x / raw[r]!)) * 100) / 100,
          samples: mine,
        });
        process.stderr.write(`${label} [${v.name}]: ${ops} events/s ${JSON.stringify(mine)}\n`);
      });
    }
  } finally {
    if (ownDir) rmSync(dir, { recursive: true, force: true });
  }
  const config = {
    journalMode: 'wal',
    synchronous: 'FULL',
    durationMs,
    repeats,
    unit: 'events/s, median of interleaved rounds; ratioToRaw = median of per-round ratios',
  };
  process.stdout.write(`${JSON.stringify({ machine, config, results }, null, 2)}\n`);
}

main();
