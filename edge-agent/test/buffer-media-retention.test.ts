import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openOutbox, type AppendEntry, type Outbox } from '../src/buffer/index.js';
import { createUuidV7 } from '../src/lib/uuidv7.js';

// Edge retention of held snapshots: by age, then by a size budget (oldest first); events stay.

let dir: string;
let clock: number;
const toClose: { close(): void }[] = [];
const nextId = createUuidV7(() => clock);

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vigil-media-ret-'));
  clock = Date.UTC(2026, 0, 1);
});
afterEach(() => {
  for (const o of toClose.splice(0)) o.close();
  rmSync(dir, { recursive: true, force: true });
});

function outbox(): Outbox {
  const o = openOutbox(join(dir, 'outbox.db'), { now: () => clock });
  toClose.push(o);
  return o;
}
function entry(media: number | undefined): AppendEntry {
  return {
    id: nextId(),
    priority: 1,
    kind: 'event',
    subject: 'vigil.v1.t1.d1.evt.cam',
    payload: new Uint8Array(100).fill(1),
    ...(media ? { media: { contentType: 'image/jpeg', data: new Uint8Array(media).fill(0xd8) } } : {}),
  };
}
/** What is on disk, read by a second connection: media rows and the bytes each event is counted with. */
function onDisk(): { media: string[]; eventBytes: Record<string, number> } {
  const db = new Database(join(dir, 'outbox.db'), { readonly: true });
  try {
    const media = db.prepare<[], string>('SELECT event_id FROM media ORDER BY event_id').pluck().all();
    const rows = db.prepare<[], { id: string; bytes: number }>('SELECT id, bytes FROM events').all();
    return { media, eventBytes: Object.fromEntries(rows.map((r) => [r.id, r.bytes])) };
  } finally {
    db.close();
  }
}

describe('Outbox.dropMedia (edge media retention)', () => {
  it('drops snapshots older than the age limit and keeps their events, counted bytes follow', () => {
    const o = outbox();
    const old = entry(5_000);
    o.append(old);
    clock += 3 * 3_600_000;
    const recent = entry(5_000);
    const noMedia = entry(undefined);
    o.append(recent);
    o.append(noMedia);
    expect(o.stats().bytes).toBe(3 * 100 + 2 * 5_000);

    const dropped = o.dropMedia({ maxAgeMs: 2 * 3_600_000, maxBytes: 1e9 });
    expect(dropped).toEqual({ age: 1, size: 0 });
    const disk = onDisk();
    expect(disk.media).toEqual([recent.id]);
    expect(disk.eventBytes).toEqual({ [old.id]: 100, [recent.id]: 5_100, [noMedia.id]: 100 });
    expect(o.stats()).toMatchObject({ depth: 3, bytes: 3 * 100 + 5_000 });
    // The event is still delivered, now without its image.
    const batch = o.nextBatch(10);
    expect(batch.map((e) => e.id)).toEqual([old.id, recent.id, noMedia.id]);
    expect(batch[0]!.media).toBeUndefined();
    expect(batch[1]!.media?.data.byteLength).toBe(5_000);
  });

  it('keeps held snapshots within the size budget, dropping the oldest first', () => {
    const o = outbox();
    const es = [1, 2, 3, 4, 5].map(() => {
      clock += 1_000;
      const e = entry(10_000);
      o.append(e);
      return e;
    });
    const dropped = o.dropMedia({ maxAgeMs: 3_600_000, maxBytes: 25_000 });
    expect(dropped).toEqual({ age: 0, size: 3 });
    expect(onDisk().media).toEqual([es[3]!.id, es[4]!.id]);
    expect(o.stats()).toMatchObject({ depth: 5, bytes: 5 * 100 + 2 * 10_000 });
    // Within policy now: a second pass drops nothing.
    expect(o.dropMedia({ maxAgeMs: 3_600_000, maxBytes: 25_000 })).toEqual({ age: 0, size: 0 });
  });

  it('survives a reopen: counters are rebuilt from the shrunk rows', () => {
    const o = outbox();
    for (let i = 0; i < 3; i++) o.append(entry(8_000));
    o.dropMedia({ maxAgeMs: 3_600_000, maxBytes: 8_000 });
    const bytes = o.stats().bytes;
    o.close();
    expect(outbox().stats().bytes).toBe(bytes);
    expect(bytes).toBe(3 * 100 + 8_000);
  });
});
