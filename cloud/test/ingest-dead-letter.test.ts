import type { StoredMsg } from '@nats-io/jetstream';
import { describe, expect, it } from 'vitest';
import { DetectionEvent } from '@vigil/proto';
import { useDatabase } from '@vigil/testkit';
import { DEAD_LETTER_STREAM, DLQ_HEADERS, EVENTS_STREAM, type DeadLetterReason } from '../src/index.js';
import { evtSubject, makeEvent, useIngestStack, uuidv7, type TestDevice } from './support/ingest-stack.js';

const gw1: TestDevice = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' };
const gw2: TestDevice = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-2' };
const stranger: TestDevice = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-9' };
const DAY = 86_400_000;

describe('ingest: poison messages go to DEAD_LETTER and the consumer keeps going', () => {
  const dbUrl = useDatabase();
  const stack = useIngestStack({
    devices: [gw1, gw2, stranger],
    registered: [gw1, gw2],
    databaseUrl: dbUrl,
  });

  it('dead-letters each kind of poison with its reason and the original bytes, then stores what follows', async () => {
    const a = await stack.device(gw1);
    const c = await stack.device(stranger);
    const enc = (ev: DetectionEvent): Uint8Array => DetectionEvent.encode(ev).finish();
    const old = new Date(Date.now() - 40 * DAY);
    const poison: Array<{ reason: DeadLetterReason; subject: string; data: Uint8Array; dlqSubject: string }> =
      [
        {
          reason: 'undecodable',
          subject: evtSubject(gw1),
          data: Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]),
          dlqSubject: 'vigil.dlq.events.acme.gw-1',
        },
        {
          reason: 'invalid_event_id',
          subject: evtSubject(gw1),
          data: enc(makeEvent(gw1, { eventId: 'not-a-uuid' })),
          dlqSubject: 'vigil.dlq.events.acme.gw-1',
        },
        {
          // gw-1's certificate, gw-1's subject, a payload naming gw-2.
          reason: 'subject_mismatch',
          subject: evtSubject(gw1),
          data: enc(makeEvent(gw2)),
          dlqSubject: 'vigil.dlq.events.acme.gw-1',
        },
        {
          reason: 'subject_mismatch',
          subject: evtSubject(gw1, 'cam2'),
          data: enc(makeEvent(gw1)),
          dlqSubject: 'vigil.dlq.events.acme.gw-1',
        },
        {
          // Issue 12 finding 3: gw-1 is registered at hq; an event filed under another site of the tenant.
          reason: 'site_mismatch',
          subject: evtSubject(gw1),
          data: enc(makeEvent(gw1, { siteId: 'plant' })),
          dlqSubject: 'vigil.dlq.events.acme.gw-1',
        },
        {
          reason: 'site_mismatch',
          subject: evtSubject(gw1),
          data: enc(makeEvent(gw1, { siteId: '' })),
          dlqSubject: 'vigil.dlq.events.acme.gw-1',
        },
        {
          reason: 'unknown_device',
          subject: evtSubject(stranger),
          data: enc(makeEvent(stranger)),
          dlqSubject: 'vigil.dlq.events.acme.gw-9',
        },
        {
          reason: 'occurred_at_out_of_range',
          subject: evtSubject(gw1),
          data: enc(makeEvent(gw1, { occurredAt: old, eventId: uuidv7(old.getTime()) })),
          dlqSubject: 'vigil.dlq.events.acme.gw-1',
        },
        {
          reason: 'occurred_at_out_of_range',
          subject: evtSubject(gw1),
          data: enc({ ...makeEvent(gw1), occurredAt: undefined }),
          dlqSubject: 'vigil.dlq.events.acme.gw-1',
        },
        {
          reason: 'id_time_mismatch',
          subject: evtSubject(gw1),
          data: enc(makeEvent(gw1, { eventId: uuidv7(Date.now() - 2 * DAY) })),
          dlqSubject: 'vigil.dlq.events.acme.gw-1',
        },
        {
          reason: 'invalid_event',
          subject: evtSubject(gw1),
          data: enc(makeEvent(gw1, { label: '' })),
          dlqSubject: 'vigil.dlq.events.acme.gw-1',
        },
        {
          reason: 'invalid_event',
          subject: evtSubject(gw1),
          data: enc(makeEvent(gw1, { label: 'per\0son' })),
          dlqSubject: 'vigil.dlq.events.acme.gw-1',
        },
      ];
    const seqs: number[] = [];
    for (const [i, p] of poison.entries()) {
      const link = p.reason === 'unknown_device' ? c : a;
      seqs.push((await link.publishRaw(p.subject, p.data, `poison-${i}`)).seq);
    }
    const good = Array.from({ length: 20 }, () => makeEvent(gw1));
    for (const ev of good) await a.publish(ev);

    await expect.poll(() => stack.rowCount(), { timeout: 15_000 }).toBe(20);
    const jsm = stack.jsm();
    await expect
      .poll(async () => (await jsm.streams.info(DEAD_LETTER_STREAM)).state.messages, { timeout: 15_000 })
      .toBe(poison.length);
    const letters: StoredMsg[] = [];
    for (let seq = 1; seq <= poison.length; seq++)
      letters.push((await jsm.streams.getMessage(DEAD_LETTER_STREAM, { seq }))!);
    const bySeq = new Map(letters.map((m) => [Number(m.header.get(DLQ_HEADERS.originalStreamSeq)), m]));
    for (const [i, p] of poison.entries()) {
      const letter = bySeq.get(seqs[i]!);
      expect(letter, `dead letter for ${p.reason} #${i}`).toBeDefined();
      expect(letter!.header.get(DLQ_HEADERS.reason)).toBe(p.reason);
      expect(letter!.header.get(DLQ_HEADERS.detail)).not.toBe('');
      expect(letter!.header.get(DLQ_HEADERS.originalSubject)).toBe(p.subject);
      expect(Date.parse(letter!.header.get(DLQ_HEADERS.failedAt))).toBeGreaterThan(Date.now() - 60_000);
      expect(letter!.header.get('Nats-Msg-Id')).toBe(`dlq-${seqs[i]}`);
      expect(letter!.subject).toBe(p.dlqSubject);
      expect(Buffer.compare(Buffer.from(letter!.data), Buffer.from(p.data))).toBe(0);
    }
    // Terminated originals leave the work queue; nothing waits for redelivery.
    await expect.poll(async () => (await jsm.streams.info(EVENTS_STREAM)).state.messages).toBe(0);
    expect(await stack.metric('vigil_cloud_ingest_dead_lettered_total', '{reason="subject_mismatch"}')).toBe(
      2,
    );
    expect(await stack.metric('vigil_cloud_ingest_dead_lettered_total', '{reason="undecodable"}')).toBe(1);
    expect(await stack.metric('vigil_cloud_ingest_dead_lettered_total', '{reason="unknown_device"}')).toBe(1);
    expect(await stack.metric('vigil_cloud_ingest_dead_lettered_total', '{reason="site_mismatch"}')).toBe(2);
    expect(await stack.metric('vigil_cloud_ingest_events_inserted_total')).toBe(20);
    // Only the registry's site was ever stored.
    const sites = await stack
      .cloud()
      .db.selectFrom('events')
      .select('site_id')
      .distinct()
      .where('tenant_id', '=', 'acme')
      .execute();
    expect(sites.map((r) => r.site_id)).toEqual(['hq']);
  });

  it('accepts a device as soon as it is registered', async () => {
    const c = await stack.device(stranger);
    await stack.cloud().registry.registerDevice(stranger);
    const ev = makeEvent(stranger);
    await c.publish(ev);
    await expect.poll(() => c.receipted.has(ev.eventId), { timeout: 10_000 }).toBe(true);
  });
});
