import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { describe, expect, it } from 'vitest';
import { useDatabase } from '@vigil/testkit';
import { makeEvent, publishAll, useIngestStack, type TestDevice } from './support/ingest-stack.js';

// The batch span links every event of its transaction (to the event's device context). The OTel SDK keeps 128 links per span by default and
// drops the rest (warning "Dropped N links because linkCountLimit reached"), while a batch holds up to
// ingest.batchSize (500) events: startCloud sizes the limit from the config. The spans come from the
// provider startCloud builds itself (its real limits), through an extra in-memory processor.
//
// A batch larger than 128 is made deterministic: the events wait in EVENTS while no cloud consumes (the
// stack's cloud runs with ingest off), then a second cloud with ingest on starts and takes them at once
// (its fetch takes one message, then everything pending behind it, up to batchSize).

const gw1: TestDevice = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' };
const EVENTS = 300;

describe('ingest tracing: a batch span links all of its events', () => {
  const dbUrl = useDatabase();
  const stack = useIngestStack({
    devices: [gw1],
    registered: [gw1],
    databaseUrl: dbUrl,
    config: { ingest: { enabled: false } },
  });

  it(`keeps ${EVENTS} links on the batch span of a ${EVENTS}-event batch (SDK default: 128)`, async () => {
    const link = await stack.device(gw1);
    // Each event with its device's context (in the payload, as agents store it), one trace per event.
    const hex = (n: number): string =>
      Array.from({ length: n }, () => Math.floor(Math.random() * 16).toString(16)).join('');
    const events = Array.from({ length: EVENTS }, () =>
      makeEvent(gw1, { trace: { traceparent: `00-${hex(32)}-${hex(16)}-01`, tracestate: '' } }),
    );
    await publishAll(events, 64, (ev) => link.publish(ev));

    const exporter = new InMemorySpanExporter();
    await stack.startCloud(
      { ingest: { enabled: true, batchSize: 500 } },
      { spanProcessors: [new SimpleSpanProcessor(exporter)] },
    );
    await expect.poll(() => stack.rowCount(), { timeout: 20_000 }).toBe(EVENTS);
    const batches = () => exporter.getFinishedSpans().filter((s) => s.name === 'vigil.ingest.batch');
    // Batch spans end after the acks, just after the commit.
    const committedEvents = () =>
      batches().reduce((n, b) => n + (b.attributes['vigil.batch.events'] as number), 0);
    await expect.poll(committedEvents).toBe(EVENTS);

    const sizes = batches().map((b) => b.attributes['vigil.batch.events'] as number);
    // Precondition of the test: at least one batch larger than the SDK's default limit.
    expect(Math.max(...sizes)).toBeGreaterThan(128);
    for (const b of batches()) {
      expect(b.links).toHaveLength(b.attributes['vigil.batch.events'] as number);
      expect(b.droppedLinksCount).toBe(0);
    }
    // Every event linked once, to its own device context.
    const byEvent = new Map(
      batches().flatMap((b) => b.links.map((l) => [l.attributes?.['vigil.event.id'], l])),
    );
    expect(byEvent.size).toBe(EVENTS);
    for (const ev of events) {
      const traceId = ev.trace!.traceparent.split('-')[1];
      expect(byEvent.get(ev.eventId)?.context.traceId).toBe(traceId);
    }
    // No span per committed event.
    expect(exporter.getFinishedSpans().filter((s) => s.name === 'vigil.ingest.event')).toHaveLength(0);
    console.log(`[tracing] batch sizes ${sizes.join(', ')}; links kept: ${byEvent.size}`);
  }, 60_000);
});
