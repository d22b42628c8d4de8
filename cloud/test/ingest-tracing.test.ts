import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { headers } from '@nats-io/transport-node';
import { SpanKind, SpanStatusCode, type Link } from '@opentelemetry/api';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DetectionEvent } from '@vigil/proto';
import { useDatabase } from '@vigil/testkit';
import { createTracing, registerContextManager } from '../src/lib/tracing.js';
import { evtSubject, makeEvent, useIngestStack, type TestDevice } from './support/ingest-stack.js';

// Cloud side of tracing, on the real stack (nats-server with mTLS + JetStream, PostgreSQL, startCloud): the
// transaction is `vigil.ingest.batch` (a root), linked to each event's device context from the NATS header (or
// the payload), with a `db.insert` child; a dead-lettered message gets a `vigil.ingest.event` span under its
// device's context. Spans land in the SDK's own InMemorySpanExporter, handed to startCloud as its tracer.

const gw1: TestDevice = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' };
const exporter = new InMemorySpanExporter();
/**
 * The order in which spans ended. The SDK calls a processor's onEnd synchronously inside span.end() (OTel
 * spec, SpanProcessor.OnEnd), so this is the program's own order of end() calls: a causal order, unlike span
 * timestamps. Those cannot order two spans: the SDK (2.x) anchors each span on Date.now() (whole
 * milliseconds) when it starts and adds performance.now() deltas, so two spans' clocks differ by up to 1 ms,
 * in one trace or not (an event span was seen ending 26 us "before" the INSERT it waited for).
 */
const endOrder = new Map<string, number>();
const recordEnds: SpanProcessor = {
  onStart: () => undefined,
  onEnd: (s) => void endOrder.set(s.spanContext().spanId, endOrder.size),
  forceFlush: () => Promise.resolve(),
  shutdown: () => Promise.resolve(),
};
const provider = new BasicTracerProvider({
  spanProcessors: [new SimpleSpanProcessor(exporter), recordEnds],
});

const hex = (n: number): string =>
  Array.from({ length: n }, () => Math.floor(Math.random() * 16).toString(16)).join('');

describe('ingest: trace context from the edge to the database', () => {
  let undoContext: () => void = () => undefined;
  beforeAll(() => {
    // As main does: without a context manager the log mixin sees no span (the spans are right regardless).
    undoContext = registerContextManager();
  });
  afterAll(() => undoContext());
  const dbUrl = useDatabase();
  const stack = useIngestStack({
    devices: [gw1],
    registered: [gw1],
    databaseUrl: dbUrl,
    deps: { tracer: provider.getTracer('test') },
    logLevel: 'debug',
  });

  /** Publishes `ev` as gw-1 with the given W3C headers and waits for its commit receipt. */
  async function publishCommitted(ev: DetectionEvent, traceparent?: string): Promise<void> {
    const link = await stack.device(gw1);
    const h = headers();
    if (traceparent !== undefined) h.set('traceparent', traceparent);
    await link.js.publish(evtSubject(gw1), DetectionEvent.encode(ev).finish(), {
      msgID: ev.eventId,
      headers: h,
    });
    await expect.poll(() => link.receipted.has(ev.eventId), { timeout: 15_000 }).toBe(true);
  }

  /** The finished batch span linked to `eventId`, its link to the event and the batch's db.insert. */
  async function spansOf(
    eventId: string,
  ): Promise<{ link: Link; batch: ReadableSpan; insert: ReadableSpan }> {
    const linkTo = (s: ReadableSpan) =>
      s.name === 'vigil.ingest.batch'
        ? s.links.find((l) => l.attributes?.['vigil.event.id'] === eventId)
        : undefined;
    // The batch span ends after the acks and the receipts: wait for it.
    await expect.poll(() => exporter.getFinishedSpans().some((s) => linkTo(s) !== undefined)).toBe(true);
    const spans = exporter.getFinishedSpans();
    const batch = spans.find((s) => linkTo(s) !== undefined)!;
    const insert = spans.find(
      (s) => s.name === 'db.insert' && s.parentSpanContext?.spanId === batch.spanContext().spanId,
    )!;
    expect(insert).toBeDefined();
    return { link: linkTo(batch)!, batch, insert };
  }

  /** Whether any finished batch span links to `eventId`. */
  const linked = (eventId: string): boolean =>
    exporter
      .getFinishedSpans()
      .some(
        (s) =>
          s.name === 'vigil.ingest.batch' &&
          s.links.some((l) => l.attributes?.['vigil.event.id'] === eventId),
      );

  it('links vigil.ingest.batch to the traceparent header; db.insert is its child', async () => {
    const traceId = hex(32);
    const parentId = hex(16);
    const ev = makeEvent(gw1);
    await publishCommitted(ev, `00-${traceId}-${parentId}-01`);
    const { link, batch, insert } = await spansOf(ev.eventId);

    // The batch is its own trace (many parents: links), linked to the device's span of the event.
    expect(link.context.traceId).toBe(traceId);
    expect(link.context.spanId).toBe(parentId);
    expect(link.context.isRemote).toBe(true);
    expect(batch.parentSpanContext).toBeUndefined();
    expect(batch.kind).toBe(SpanKind.CONSUMER);
    expect(batch.status.code).not.toBe(SpanStatusCode.ERROR);
    expect(batch.attributes).toMatchObject({
      'messaging.system': 'nats',
      'messaging.operation.type': 'process',
      'vigil.batch.events': 1,
    });
    expect(insert.spanContext().traceId).toBe(batch.spanContext().traceId);
    expect(insert.attributes).toMatchObject({
      'db.system': 'postgresql',
      'db.operation': 'INSERT',
      'db.system.name': 'postgresql',
      'db.operation.name': 'INSERT',
      'vigil.db.rows_inserted': 1,
    });
    expect(insert.attributes['db.operation.batch.size']).toBeGreaterThanOrEqual(1);
    // The batch span covers the commit: it ends after the INSERT, in the order of end() calls.
    const ended = (s: ReadableSpan) => endOrder.get(s.spanContext().spanId)!;
    expect(ended(insert)).toBeLessThan(ended(batch));
    // No span per committed event.
    expect(
      exporter
        .getFinishedSpans()
        .some((s) => s.name === 'vigil.ingest.event' && s.attributes['vigil.event.id'] === ev.eventId),
    ).toBe(false);

    // Logs written inside the batch span carry its ids (pino mixin).
    const line = stack
      .logs()
      .split('\n')
      .filter((l) => l.includes('"batch committed"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l['span_id'] === batch.spanContext().spanId);
    expect(line).toBeDefined();
    expect(line!['trace_id']).toBe(batch.spanContext().traceId);
  });

  it('gives a dead-lettered message its own vigil.ingest.event span under the device context', async () => {
    const traceId = hex(32);
    const parentId = hex(16);
    const link = await stack.device(gw1);
    const h = headers();
    h.set('traceparent', `00-${traceId}-${parentId}-01`);
    // Not a DetectionEvent: dead-lettered as undecodable.
    await link.js.publish(evtSubject(gw1), new Uint8Array([0xff, 0xff, 0xff]), {
      msgID: hex(16),
      headers: h,
    });
    const isIt = (s: ReadableSpan) => s.name === 'vigil.ingest.event' && s.spanContext().traceId === traceId;
    await expect.poll(() => exporter.getFinishedSpans().some(isIt), { timeout: 15_000 }).toBe(true);
    const span = exporter.getFinishedSpans().find(isIt)!;
    expect(span.parentSpanContext?.spanId).toBe(parentId);
    expect(span.status.code).toBe(SpanStatusCode.ERROR);
    expect(span.attributes).toMatchObject({
      'vigil.dead_letter.reason': 'undecodable',
      'vigil.tenant.id': 'acme',
      'vigil.device.id': 'gw-1',
    });
  });

  it('falls back to the payload trace when there is no header', async () => {
    const traceId = hex(32);
    const parentId = hex(16);
    const ev = makeEvent(gw1, { trace: { traceparent: `00-${traceId}-${parentId}-01`, tracestate: 'v=1' } });
    await publishCommitted(ev);
    const { link } = await spansOf(ev.eventId);
    expect(link.context.traceId).toBe(traceId);
    expect(link.context.spanId).toBe(parentId);
    expect(link.context.traceState?.get('v')).toBe('1');
  });

  it('ignores and counts a malformed traceparent: the event is still committed, not linked', async () => {
    const before = await stack.metric('vigil_cloud_ingest_trace_context_invalid_total', '{source="header"}');
    const ev = makeEvent(gw1);
    await publishCommitted(ev, '00-not-a-trace-context-01');
    // The receipt came after the batch span ended (its end follows the receipts' publish): not linked.
    expect(linked(ev.eventId)).toBe(false);
    expect(await stack.metric('vigil_cloud_ingest_trace_context_invalid_total', '{source="header"}')).toBe(
      before + 1,
    );
    // All zeros is well-formed but invalid (W3C): also ignored, and the payload's valid one is used instead.
    const traceId = hex(32);
    const ev2 = makeEvent(gw1, { trace: { traceparent: `00-${traceId}-${hex(16)}-01`, tracestate: '' } });
    await publishCommitted(ev2, `00-${'0'.repeat(32)}-${'0'.repeat(16)}-01`);
    expect((await spansOf(ev2.eventId)).link.context.traceId).toBe(traceId);
    expect(await stack.metric('vigil_cloud_ingest_trace_context_invalid_total', '{source="header"}')).toBe(
      before + 2,
    );
  });
});

describe('OTLP/HTTP export (cloud)', () => {
  let server: Server;
  const requests: Array<{ url: string; type: string; body: Buffer }> = [];
  beforeAll(async () => {
    // A fake collector (an outside party): records what the exporter sends.
    server = createServer((req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        requests.push({
          url: req.url ?? '',
          type: req.headers['content-type'] ?? '',
          body: Buffer.concat(chunks),
        });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('posts spans with service.name vigil-cloud to tracing.otlpUrl', async () => {
    const { port } = server.address() as AddressInfo;
    const tracing = createTracing(
      { enabled: true, otlpUrl: `http://127.0.0.1:${port}/v1/traces`, sampleRatio: 1 },
      { serviceName: 'vigil-cloud' },
    );
    tracing.tracer.startSpan('vigil.ingest.batch').end();
    await tracing.shutdown(); // flushes the batch processor
    expect(requests).toHaveLength(1);
    expect(requests[0]).toMatchObject({ url: '/v1/traces', type: 'application/json' });
    expect(requests[0]!.body.length).toBeGreaterThan(0);
    expect(requests[0]!.body.toString('utf8')).toContain('vigil-cloud');
  });
});
