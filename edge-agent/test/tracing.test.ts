import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { context, trace } from '@opentelemetry/api';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DetectionEvent } from '@vigil/proto';
import { asset, usePki } from '@vigil/testkit';
import { createTracing, injectTraceHeaders } from '../src/lib/tracing.js';
import { runAgent } from './helpers/agent-harness.js';
import { createEventsStream } from './helpers/receipt-responder.js';
import { startRig } from './helpers/uplink-harness.js';
import {
  connectCloud,
  DEVICE,
  eventPayload,
  eventSubject,
  newId,
  useMtlsNats,
} from './helpers/uplink-env.js';

// Edge side of tracing: the pipeline's `vigil.event` span is the context the event carries, and the uplink
// sends that context as NATS headers under a `vigil.uplink.publish` span. Spans land in the SDK's own
// InMemorySpanExporter; the OTLP exporter talks to a fake collector (an HTTP server of the test).

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/;

function memoryTracer(): { exporter: InMemorySpanExporter; provider: BasicTracerProvider } {
  const exporter = new InMemorySpanExporter();
  return {
    exporter,
    provider: new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
  };
}

const named = (spans: ReadableSpan[], name: string) => spans.filter((s) => s.name === name);

const source = asset('videos/one-by-one-person-detection.mp4');
const model = asset('models/yolox_nano.onnx');

describe.skipIf(!source || !model)('pipeline: every event carries its vigil.event span context', () => {
  let dir: string;
  let clip: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'vigil-trace-'));
    // 4 s of the clip where one person walks through (see pipeline-synthetic.test.ts): a start event soon.
    clip = join(dir, 'person.mp4');
    execFileSync('ffmpeg', ['-v', 'error', '-y', '-ss', '32', '-t', '4', '-i', source!, '-an', clip]);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('sets event.trace to the recorded span (trace id, span id, sampled)', async () => {
    const { exporter, provider } = memoryTracer();
    const run = await runAgent(
      {
        models: [{ name: 'yolox', type: 'yolox', path: model! }],
        snapshots: { enabled: false },
        cameras: [
          {
            id: 'cam1',
            url: clip,
            realtime: true,
            loop: false,
            width: 640,
            height: 360,
            fps: 10,
            detect: { model: 'yolox', labels: ['person'] },
          },
        ],
      },
      { tracer: provider.getTracer('test') },
    );
    try {
      await expect.poll(() => run.events.length, { timeout: 30_000, interval: 100 }).toBeGreaterThan(0);
      await run.agent.stop();
    } finally {
      await run.dispose();
    }
    const spans = named(exporter.getFinishedSpans(), 'vigil.event');
    expect(spans.length).toBe(run.events.length);
    for (const { event } of run.events) {
      const m = TRACEPARENT.exec(event.trace?.traceparent ?? '');
      expect(m, event.trace?.traceparent).not.toBeNull();
      const span = spans.find((s) => s.attributes['vigil.event.id'] === event.eventId);
      expect(span).toBeDefined();
      expect(m![1]).toBe(span!.spanContext().traceId);
      expect(m![2]).toBe(span!.spanContext().spanId);
      expect(event.trace?.traceparent.endsWith('-01')).toBe(true); // sampleRatio 1 by default: sampled
      expect(span!.parentSpanContext).toBeUndefined(); // the root of the event's trace
      expect(span!.attributes).toMatchObject({ 'vigil.camera.id': 'cam1', 'vigil.event.label': 'person' });
      expect(['start', 'end', 'zone_enter', 'zone_exit']).toContain(span!.attributes['vigil.event.phase']);
    }
  }, 60_000);
});

describe('uplink: trace context as NATS headers', () => {
  const pki = usePki({ devices: [DEVICE], services: ['cloud'] });
  const nats = useMtlsNats(pki);
  let cloud: NatsConnection;
  beforeAll(async () => {
    cloud = await connectCloud(pki(), nats());
  });
  afterAll(async () => {
    await cloud?.close();
  });

  it('publishes with the payload traceparent and records vigil.uplink.publish under the event span', async () => {
    await createEventsStream(cloud);
    const { exporter, provider } = memoryTracer();
    const tracer = provider.getTracer('test');
    // The event as the pipeline makes it: its span's context in `trace`.
    const eventSpan = tracer.startSpan('vigil.event', { root: true });
    const tc = injectTraceHeaders(trace.setSpan(context.active(), eventSpan))!;
    eventSpan.end();
    const id = newId();
    const payload = DetectionEvent.encode({
      ...DetectionEvent.decode(eventPayload(id)),
      trace: { traceparent: tc.traceparent, tracestate: '' },
    }).finish();

    const seen: Array<{ traceparent: string | undefined; payload: DetectionEvent }> = [];
    const sub = cloud.subscribe(eventSubject(), {
      callback: (err, msg) => {
        if (!err)
          seen.push({
            traceparent: msg.headers?.get('traceparent'),
            payload: DetectionEvent.decode(msg.data),
          });
      },
    });
    const rig = await startRig({
      pki: pki(),
      server: nats(),
      cloud,
      tracer,
      beforeStart: (b) =>
        b.outbox.append({ id, priority: 1, kind: 'event', subject: eventSubject(), payload }),
    });
    try {
      await expect.poll(() => rig.outbox.stats().depth, { timeout: 15_000 }).toBe(0);
    } finally {
      await rig.dispose();
      sub.unsubscribe();
    }
    expect(seen).toHaveLength(1);
    expect(seen[0]!.traceparent).toBe(tc.traceparent);
    expect(seen[0]!.traceparent).toBe(seen[0]!.payload.trace?.traceparent);

    const [publish, ...more] = named(exporter.getFinishedSpans(), 'vigil.uplink.publish');
    expect(more).toHaveLength(0);
    expect(publish!.spanContext().traceId).toBe(eventSpan.spanContext().traceId);
    expect(publish!.parentSpanContext?.spanId).toBe(eventSpan.spanContext().spanId);
    expect(publish!.attributes).toMatchObject({
      'vigil.event.id': id,
      'messaging.system': 'nats',
      'messaging.destination.name': eventSubject(),
      'vigil.uplink.outcome': 'acked',
      'vigil.uplink.duplicate': false,
    });
  }, 30_000);
});

describe('OTLP/HTTP export', () => {
  let server: Server;
  const requests: Array<{ method: string; url: string; type: string; body: Buffer }> = [];
  beforeAll(async () => {
    // A fake collector: stores each request and answers as a collector does (200, empty partial success).
    server = createServer((req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const { method = '', url = '' } = req;
        requests.push({ method, url, type: req.headers['content-type'] ?? '', body: Buffer.concat(chunks) });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('sends the agent spans to tracing.otlpUrl', async () => {
    const { port } = server.address() as AddressInfo;
    const tracing = createTracing(
      { enabled: true, otlpUrl: `http://127.0.0.1:${port}/v1/traces`, sampleRatio: 1 },
      { serviceName: 'vigil-agent' },
    );
    const span = tracing.tracer.startSpan('vigil.event', { attributes: { 'vigil.event.id': 'e-1' } });
    span.end();
    await tracing.forceFlush();
    await tracing.shutdown();
    expect(requests).toHaveLength(1);
    const [r] = requests;
    expect(r).toMatchObject({ method: 'POST', url: '/v1/traces', type: 'application/json' });
    expect(r!.body.length).toBeGreaterThan(0);
    const body = r!.body.toString('utf8');
    expect(body).toContain('vigil-agent'); // resource service.name
    expect(body).toContain(span.spanContext().traceId);
  });

  it('makes ids that propagate even when sampled out (ratio 0) and nothing without tracing', () => {
    const off = createTracing({ enabled: true, sampleRatio: 0 }, { serviceName: 'vigil-agent' });
    const span = off.tracer.startSpan('vigil.event');
    expect(span.isRecording()).toBe(false);
    expect(injectTraceHeaders(trace.setSpan(context.active(), span))?.traceparent).toMatch(/-00$/);
    const disabled = createTracing({ enabled: false, sampleRatio: 1 }, { serviceName: 'vigil-agent' });
    expect(
      injectTraceHeaders(trace.setSpan(context.active(), disabled.tracer.startSpan('x'))),
    ).toBeUndefined();
  });
});
