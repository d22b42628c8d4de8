import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { CommitReceipt, DetectionEvent, ReceiptQuery, subjectFor } from '@vigil/proto';
import { useDatabase } from '@vigil/testkit';
import {
  DEAD_LETTER_STREAM,
  ensureIngestConsumer,
  ensureStreams,
  EVENTS_STREAM,
  INGEST_CONSUMER,
  MAX_RECEIPT_QUERY_IDS,
  parseCloudConfig,
} from '../src/index.js';
import {
  evtSubject,
  makeEvent,
  publishAll,
  useIngestStack,
  uuidv7,
  type TestDevice,
} from './support/ingest-stack.js';

const gw1: TestDevice = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' };
const gw2: TestDevice = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-2' };

/** Protobuf varint. */
function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}

describe('ingest: EVENTS -> PostgreSQL -> receipts', () => {
  const dbUrl = useDatabase();
  // A fetch that waited to fill a batch would hold a lone event FETCH_EXPIRES_MS: far longer than the
  // lone-event test below waits, so it proves the event did not wait for a batch however slow the machine.
  const FETCH_EXPIRES_MS = 30_000;
  const stack = useIngestStack({
    devices: [gw1, gw2],
    registered: [gw1, gw2],
    databaseUrl: dbUrl,
    config: { ingest: { fetchExpiresMs: FETCH_EXPIRES_MS } },
  });

  async function settled(): Promise<void> {
    // Everything delivered and acked: nothing left in the work queue.
    await expect
      .poll(async () => (await stack.jsm().streams.info(EVENTS_STREAM)).state.messages, { timeout: 20_000 })
      .toBe(0);
    const info = await stack.jsm().consumers.info(EVENTS_STREAM, INGEST_CONSUMER);
    expect(info.num_ack_pending).toBe(0);
  }

  it('stores 500 events from 2 devices exactly once, whatever JetStream dedupes or not, with receipts', async () => {
    const a = await stack.device(gw1);
    const b = await stack.device(gw2);
    const events = [
      ...Array.from({ length: 250 }, (_, i) => makeEvent(gw1, { trackId: `a${i}` })),
      ...Array.from({ length: 250 }, (_, i) => makeEvent(gw2, { trackId: `b${i}` })),
    ];
    const linkOf = (ev: DetectionEvent) => (ev.deviceId === gw1.deviceId ? a : b);

    await publishAll(events, 200, (ev) => linkOf(ev).publish(ev));
    await expect.poll(() => stack.rowCount(), { timeout: 20_000 }).toBe(500);
    await settled();

    // Same msg ids again: JetStream's duplicate window drops them.
    const again: boolean[] = [];
    await publishAll(events, 200, async (ev) => again.push((await linkOf(ev).publish(ev)).duplicate));
    expect(again.filter(Boolean)).toHaveLength(500);

    // Dedupe bypassed (another msg id, same bytes): JetStream stores them, PostgreSQL keeps one row each.
    const stored: boolean[] = [];
    await publishAll(events, 200, async (ev) =>
      stored.push((await linkOf(ev).publish(ev, `${ev.eventId}-again`)).duplicate),
    );
    expect(stored.filter(Boolean)).toHaveLength(0);
    await expect
      .poll(() => stack.metric('vigil_cloud_ingest_events_duplicate_total'), { timeout: 20_000 })
      .toBe(500);
    await settled();
    const { rows } = await sql<{ n: string; ids: string }>`
      select count(*) as n, count(distinct event_id) as ids from events`.execute(stack.cloud().db);
    expect(rows[0]).toEqual({ n: '500', ids: '500' });
    expect(await stack.metric('vigil_cloud_ingest_events_inserted_total')).toBe(500);
    expect(await stack.metric('vigil_cloud_ingest_events_received_total')).toBe(1000);
    // Freshness (capture -> commit) is observed once per inserted event, never for the 500 duplicates;
    // these were committed well within the 30 s SLO threshold.
    expect(await stack.metric('vigil_cloud_event_freshness_seconds_count')).toBe(500);
    expect(await stack.metric('vigil_cloud_event_freshness_seconds_bucket', '{le="30"}')).toBe(500);

    // Rows carry the event, the original bytes and the stream sequence.
    const first = events[0]!;
    const row = await stack
      .cloud()
      .db.selectFrom('events')
      .selectAll()
      .where('event_id', '=', first.eventId)
      .executeTakeFirstOrThrow();
    expect(row).toMatchObject({
      tenant_id: 'acme',
      site_id: 'hq',
      device_id: 'gw-1',
      camera_id: 'cam1',
      track_id: 'a0',
      phase: 'start',
      label: 'person',
      zones: ['door'],
      model_name: 'yolox-nano',
      priority: 2,
      attributes: { duration_ms: '120' },
    });
    expect(row.occurred_at.getTime()).toBe(first.occurredAt!.getTime());
    expect(Buffer.compare(row.payload, Buffer.from(DetectionEvent.encode(first).finish()))).toBe(0);
    expect(Number(row.stream_seq)).toBeGreaterThan(0);

    // Every device got receipts covering all of its ids (and only its ids).
    for (const [link, device] of [
      [a, gw1],
      [b, gw2],
    ] as const) {
      const mine = events.filter((e) => e.deviceId === device.deviceId).map((e) => e.eventId);
      await expect.poll(() => mine.filter((id) => !link.receipted.has(id)).length).toBe(0);
      expect(link.receipted.size).toBe(250);
      expect(link.receipts.every((r) => r.tenantId === 'acme' && r.deviceId === device.deviceId)).toBe(true);
      const seqs = link.receipts.map((r) => r.sequence);
      expect([...seqs].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0))).toEqual(seqs);
    }
    expect(await stack.metric('vigil_cloud_ingest_receipts_sent_total')).toBeGreaterThanOrEqual(4);
  });

  it('keeps up with a burst (measured rate)', async () => {
    const a = await stack.device(gw1);
    const b = await stack.device(gw2);
    const before = await stack.rowCount();
    const n = 10_000;
    const events = Array.from({ length: n }, (_, i) =>
      makeEvent(i % 2 === 0 ? gw1 : gw2, { trackId: `burst-${i}` }),
    );
    const started = performance.now();
    await publishAll(events, 500, (ev) => (ev.deviceId === gw1.deviceId ? a : b).publish(ev));
    const published = performance.now();
    await expect.poll(() => stack.rowCount(), { timeout: 60_000, interval: 100 }).toBe(before + n);
    const stored = performance.now();
    await settled();
    console.log(
      `[ingest] ${n} events: published in ${Math.round(published - started)} ms, all committed after ` +
        `${Math.round(stored - started)} ms = ${Math.round((n / (stored - started)) * 1000)} events/s end to end`,
    );
    const m = async (n: string) => stack.metric(n);
    console.log(
      `[ingest] batches ${await m('vigil_cloud_ingest_batch_size_count')} avg size ${(await m('vigil_cloud_ingest_batch_size_sum')) / (await m('vigil_cloud_ingest_batch_size_count'))}, commit avg ms ${(1000 * (await m('vigil_cloud_ingest_commit_seconds_sum'))) / (await m('vigil_cloud_ingest_commit_seconds_count'))}`,
    );
    await expect
      .poll(
        () => events.filter((e) => !(e.deviceId === gw1.deviceId ? a : b).receipted.has(e.eventId)).length,
      )
      .toBe(0);
  });

  it('answers a ReceiptQuery with exactly the committed subset of the asking device', async () => {
    const a = await stack.device(gw1);
    const b = await stack.device(gw2);
    const mine = [makeEvent(gw1), makeEvent(gw1), makeEvent(gw1)];
    const theirs = makeEvent(gw2);
    for (const ev of mine) await a.publish(ev);
    await b.publish(theirs);
    await expect
      .poll(
        async () =>
          (
            await stack
              .cloud()
              .db.selectFrom('events')
              .select('event_id')
              .where(
                'event_id',
                'in',
                [...mine, theirs].map((e) => e.eventId),
              )
              .execute()
          ).length,
      )
      .toBe(4);

    // A lone event is committed and receipted without waiting for a batch to fill.
    const lone = makeEvent(gw1);
    const sent = performance.now();
    await a.publish(lone);
    await expect
      .poll(() => a.receipted.has(lone.eventId), { interval: 5, timeout: FETCH_EXPIRES_MS / 2 })
      .toBe(true);
    console.log(`[ingest] lone event: publish -> receipt in ${Math.round(performance.now() - sent)} ms`);

    const unknown = [uuidv7(), uuidv7(Date.now() - 86_400_000)];
    const asked = [
      mine[0]!.eventId,
      unknown[0]!,
      mine[1]!.eventId,
      theirs.eventId,
      unknown[1]!,
      mine[2]!.eventId,
    ];
    const ask = async (eventIds: string[]): Promise<CommitReceipt> => {
      const reply = await a.nc.request(
        subjectFor('acme', 'gw-1', 'rcpt'),
        ReceiptQuery.encode(
          ReceiptQuery.fromPartial({ tenantId: 'acme', deviceId: 'gw-1', eventIds }),
        ).finish(),
        { timeout: 5_000 },
      );
      return CommitReceipt.decode(reply.data);
    };
    const answer = await ask(asked);
    expect(answer).toMatchObject({ tenantId: 'acme', deviceId: 'gw-1' });
    expect(answer.eventIds).toEqual(mine.map((e) => e.eventId));
    expect(answer.committedAt).toBeInstanceOf(Date);
    expect(answer.sequence).toBeGreaterThan(0n);

    // Too many ids at once: an empty answer, counted.
    const big = await ask(Array.from({ length: MAX_RECEIPT_QUERY_IDS + 1 }, () => mine[0]!.eventId));
    expect(big.eventIds).toEqual([]);
    expect(await stack.metric('vigil_cloud_ingest_receipt_queries_total', '{result="too_large"}')).toBe(1);
    expect(await stack.metric('vigil_cloud_ingest_receipt_queries_total', '{result="answered"}')).toBe(1);
  });

  it('stores an event with a field from a newer agent, unknown field included', async () => {
    const a = await stack.device(gw1);
    const ev = makeEvent(gw1, { label: 'car' });
    const extra = Buffer.from('from the future', 'utf8');
    const tag = (900 << 3) | 2; // field 900, length-delimited
    const bytes = Buffer.concat([
      DetectionEvent.encode(ev).finish(),
      Buffer.from([...varint(tag), ...varint(extra.length)]),
      extra,
    ]);
    await a.publishRaw(evtSubject(gw1), bytes, ev.eventId);
    const byId = () => stack.cloud().db.selectFrom('events').selectAll().where('event_id', '=', ev.eventId);
    await expect.poll(() => byId().executeTakeFirst(), { timeout: 10_000 }).toBeDefined();
    const row = await byId().executeTakeFirstOrThrow();
    expect(row.label).toBe('car');
    expect(Buffer.compare(row.payload, bytes)).toBe(0);
    const decoded = DetectionEvent.decode(row.payload);
    expect(decoded._unknownFields?.[tag]).toEqual([Buffer.from([...varint(extra.length), ...extra])]);
    // Re-encoding the decoded event forwards the unknown field unchanged.
    expect(Buffer.compare(Buffer.from(DetectionEvent.encode(decoded).finish()), bytes)).toBe(0);
  });

  it('creates streams and consumer as contracted, and updates them idempotently', async () => {
    const jsm = stack.jsm();
    const events = (await jsm.streams.info(EVENTS_STREAM)).config;
    expect(events).toMatchObject({
      subjects: ['vigil.v1.*.*.evt.*'],
      storage: 'file',
      retention: 'workqueue',
      discard: 'new',
      max_bytes: 1024 ** 3,
      max_msg_size: 1024 ** 2,
      duplicate_window: 600e9,
      num_replicas: 1,
    });
    expect((await jsm.streams.info(DEAD_LETTER_STREAM)).config).toMatchObject({
      subjects: ['vigil.dlq.>'],
      storage: 'file',
      retention: 'limits',
      max_age: 30 * 86_400e9,
      max_bytes: 1024 ** 3,
    });
    expect((await jsm.consumers.info(EVENTS_STREAM, INGEST_CONSUMER)).config).toMatchObject({
      durable_name: 'ingest',
      ack_policy: 'explicit',
      ack_wait: 30e9,
      max_deliver: -1,
      max_ack_pending: 2000,
    });

    const base = {
      database: { url: 'postgres://x/y' },
      nats: { servers: ['x'], tls: { caFile: 'a', certFile: 'b', keyFile: 'c' } },
      api: { enabled: false },
    };
    const changed = parseCloudConfig({
      ...base,
      streams: { eventsMaxBytes: 64 * 1024 ** 2 },
      ingest: { maxAckPending: 1000 },
    });
    await ensureStreams(jsm, changed);
    await ensureStreams(jsm, changed);
    await ensureIngestConsumer(jsm, changed);
    expect((await jsm.streams.info(EVENTS_STREAM)).config.max_bytes).toBe(64 * 1024 ** 2);
    expect((await jsm.consumers.info(EVENTS_STREAM, INGEST_CONSUMER)).config.max_ack_pending).toBe(1000);
    const defaults = parseCloudConfig(base);
    await ensureStreams(jsm, defaults);
    await ensureIngestConsumer(jsm, defaults);
    expect((await jsm.streams.info(EVENTS_STREAM)).config.max_bytes).toBe(1024 ** 3);
    expect((await jsm.consumers.info(EVENTS_STREAM, INGEST_CONSUMER)).config.max_ack_pending).toBe(2000);
  });
});
