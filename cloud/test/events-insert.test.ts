import type { Kysely, Transaction } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useDatabase } from '@vigil/testkit';
import { createDb, migrateToLatest } from '../src/index.js';
import { textArrayLiteral } from '../src/events/insert.js';
import { EventStore, type CommitWriter, type NewEvent } from '../src/events/store.js';
import type { Database } from '../src/storage/tables.js';
import { uuidV7 } from './api-fixtures.js';

// The batch INSERT (one statement of array parameters through unnest) must store every value exactly as a
// row-by-row insert would: hostile strings, empty and odd arrays, nulls, bytes, big sequence numbers.
describe('EventStore.insertBatchIds (unnest)', () => {
  const dbUrl = useDatabase();
  let db: Kysely<Database>;
  let store: EventStore;
  beforeAll(async () => {
    db = createDb(dbUrl());
    await migrateToLatest(db as Kysely<unknown>);
    store = new EventStore(db);
    await store.ensurePartition('2026-05-01');
  });
  afterAll(() => db.destroy());

  const base = Date.parse('2026-05-01T10:00:00.123Z');
  function row(i: number, over: Partial<NewEvent> = {}): NewEvent {
    const at = new Date(base + i);
    return {
      event_id: uuidV7(at.getTime()),
      occurred_at: at,
      tenant_id: 'acme',
      site_id: 'hq',
      device_id: 'gw-1',
      camera_id: 'cam1',
      track_id: `t-${i}`,
      phase: 'start',
      label: 'person',
      score: 0.75,
      box_x: 0.1,
      box_y: 0.2,
      box_w: 0.3,
      box_h: 0.4,
      zones: [],
      trigger_zone: null,
      model_name: null,
      model_sha256: null,
      snapshot_media_id: null,
      snapshot_sha256: null,
      snapshot_bytes: null,
      priority: 0,
      attributes: '{}',
      payload: Buffer.from([i & 0xff, 0, 0xff]),
      stream_seq: i + 1,
      ...over,
    };
  }

  it('stores hostile values exactly, skips stored rows, and returns only the new ids', async () => {
    const hostile = ['a"b', 'c\\d', 'e,f', '{g}', ' h ', 'NULL', "i'j", 'ü✓', ''];
    const rows = [
      row(1, {
        zones: hostile,
        trigger_zone: 'door "1"',
        model_name: 'yolox\\nano',
        model_sha256: 'ab'.repeat(32),
        snapshot_media_id: 'm-1',
        snapshot_sha256: 'cd'.repeat(32),
        snapshot_bytes: 2_000_000_000,
        priority: 3,
        attributes: JSON.stringify({ 'k"': 'v\\', empty: '' }),
        label: 'it\'s {a} "label"',
        payload: Buffer.alloc(0),
        stream_seq: '9007199254740993',
      }),
      row(2, { score: 0.30000001192092896, zones: ['only'] }),
      row(3),
    ];
    expect((await store.insertBatchIds(rows)).sort()).toEqual(rows.map((r) => r.event_id).sort());

    const stored = await db.selectFrom('events').selectAll().orderBy('occurred_at').execute();
    expect(stored).toHaveLength(3);
    const s1 = stored[0]!;
    expect(s1.zones).toEqual(hostile);
    expect(s1.trigger_zone).toBe('door "1"');
    expect(s1.model_name).toBe('yolox\\nano');
    expect(s1.snapshot_bytes).toBe(2_000_000_000);
    expect(s1.priority).toBe(3);
    expect(s1.attributes).toEqual({ 'k"': 'v\\', empty: '' });
    expect(s1.label).toBe('it\'s {a} "label"');
    expect(Buffer.compare(s1.payload, Buffer.alloc(0))).toBe(0);
    expect(String(s1.stream_seq)).toBe('9007199254740993');
    expect(s1.occurred_at.toISOString()).toBe(rows[0]!.occurred_at.toISOString());
    expect(stored[1]!.zones).toEqual(['only']);
    expect(stored[1]!.score).toBeCloseTo(0.3, 6);
    expect(stored[2]!.zones).toEqual([]);
    expect(stored[2]!.trigger_zone).toBeNull();
    expect(Buffer.compare(stored[2]!.payload, Buffer.from([3, 0, 0xff]))).toBe(0);

    // Again with one new row: only that one is inserted (and only it would get webhook jobs).
    const fresh = row(4);
    const seen: string[][] = [];
    let committed = 0;
    const writer: CommitWriter = {
      write: (_tx: Transaction<Database>, rowsNow: readonly NewEvent[]) => {
        seen.push(rowsNow.map((r) => r.event_id));
        return Promise.resolve();
      },
      committed: () => void committed++,
    };
    expect(await store.insertBatchIds([...rows, fresh], writer)).toEqual([fresh.event_id]);
    expect(seen).toEqual([[fresh.event_id]]);
    expect(committed).toBe(1);
    expect(await store.insertBatchIds(rows)).toEqual([]);
  });

  it('rolls the rows back when the writer fails in the transaction', async () => {
    const r = row(100);
    const writer: CommitWriter = {
      write: () => Promise.reject(new Error('outbox down')),
      committed: () => undefined,
    };
    await expect(store.insertBatchIds([r], writer)).rejects.toThrow('outbox down');
    const found = await db
      .selectFrom('events')
      .select('event_id')
      .where('event_id', '=', r.event_id)
      .execute();
    expect(found).toEqual([]);
  });

  it('writes array literals PostgreSQL parses back to the same strings', () => {
    expect(textArrayLiteral([])).toBe('{}');
    expect(textArrayLiteral(['a"b', 'c\\d'])).toBe('{"a\\"b","c\\\\d"}');
  });
});
