import {
  context,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Link,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import { ATTR_DB_OPERATION_NAME, ATTR_DB_SYSTEM_NAME } from '@opentelemetry/semantic-conventions';
import type { JsMsg } from '@nats-io/jetstream';
import { Counter, type Registry } from 'prom-client';
import { extractTraceContext, type TraceHeaders } from '../lib/tracing.js';

/*
 * Spans of the ingest loop, as the OTel messaging conventions have it for batch consumers: per transaction one
 * `vigil.ingest.batch` span (a root: a batch has many parents) with a link to each committed event's device
 * context (`vigil.event` on the edge: W3C context from the NATS header `traceparent`, else from the payload's
 * `trace`), each link carrying the event id, and a `db.insert` child around the INSERT. A span per event was
 * the largest single cost of the loop (~10 % of its CPU, cloud/bench/ingest.bench.ts --cpu-prof); a message
 * that is dead-lettered still gets its own `vigil.ingest.event` span, a child of the device's context (rare,
 * and the error is worth seeing in the device's trace). Parents are passed explicitly: the spans are right even
 * where no context manager is registered (only the log mixin needs one).
 */

export type TraceContextSource = 'header' | 'payload';

/** What the batch span needs of one event: its message (headers) and the payload's trace context. */
export interface TracedEvent {
  msg: JsMsg;
  row: { event_id: string };
  trace?: Partial<TraceHeaders> | undefined;
}

export class IngestTracing {
  private readonly invalid: Counter<'source'> | undefined;

  constructor(
    private readonly tracer: Tracer = new ProxyTracerProvider().getTracer('vigil-cloud'),
    registry?: Registry,
  ) {
    this.invalid = registry
      ? new Counter({
          name: 'vigil_cloud_ingest_trace_context_invalid_total',
          help: 'Malformed W3C trace contexts on events whose batch span is recorded (ignored: the event is stored, not linked)',
          labelNames: ['source'],
          registers: [registry],
        })
      : undefined;
  }

  /** The device's context for `msg`: the header first, then the payload; a malformed one is counted, ignored. */
  parentOf(msg: JsMsg, payload: Partial<TraceHeaders> | undefined): Context | undefined {
    const header = msg.headers?.get('traceparent');
    if (header) {
      const ctx = extractTraceContext({ traceparent: header, tracestate: msg.headers?.get('tracestate') });
      if (ctx) return ctx;
      this.invalid?.inc({ source: 'header' });
    }
    if (payload?.traceparent) {
      const ctx = extractTraceContext(payload);
      if (ctx) return ctx;
      this.invalid?.inc({ source: 'payload' });
    }
    return undefined;
  }

  /**
   * The span of a message that is dead-lettered (a child of the device's context when it has one), ended by
   * end() with the reason.
   */
  startDeadLetter(
    msg: JsMsg,
    who: { tenantId: string | undefined; deviceId: string | undefined; eventId?: string },
    reason: string,
    payloadTrace?: Partial<TraceHeaders>,
  ): Span {
    const parent = this.parentOf(msg, payloadTrace);
    const attributes: Attributes = {
      'messaging.system': 'nats',
      'messaging.operation.type': 'process',
      'messaging.destination.name': msg.subject,
      'vigil.stream.seq': msg.info.streamSequence,
      'vigil.dead_letter.reason': reason,
    };
    if (who.eventId !== undefined) attributes['vigil.event.id'] = who.eventId;
    if (who.tenantId !== undefined) attributes['vigil.tenant.id'] = who.tenantId;
    if (who.deviceId !== undefined) attributes['vigil.device.id'] = who.deviceId;
    return this.tracer.startSpan(
      'vigil.ingest.event',
      { kind: SpanKind.CONSUMER, root: parent === undefined, attributes },
      parent ?? ROOT_CONTEXT,
    );
  }

  /** The transaction's span of `events` messages; `ctx` is the parent of its children. */
  startBatch(events: number): { span: Span; ctx: Context } {
    const span = this.tracer.startSpan(
      'vigil.ingest.batch',
      {
        kind: SpanKind.CONSUMER,
        root: true,
        attributes: {
          'messaging.system': 'nats',
          'messaging.operation.type': 'process',
          'messaging.batch.message_count': events,
          'vigil.batch.events': events,
        },
      },
      ROOT_CONTEXT,
    );
    return { span, ctx: trace.setSpan(ROOT_CONTEXT, span) };
  }

  /**
   * Links the batch span to each event's device context (an event without one has no link). Nothing is parsed
   * when the span is not recorded (tracing off, or the batch sampled out).
   */
  linkEvents(span: Span, events: readonly TracedEvent[]): void {
    if (!span.isRecording()) return;
    const links: Link[] = [];
    for (const e of events) {
      const parent = this.parentOf(e.msg, e.trace);
      const sc = parent && trace.getSpanContext(parent);
      if (sc) links.push({ context: sc, attributes: { 'vigil.event.id': e.row.event_id } });
    }
    span.addLinks(links);
  }

  /** Runs `fn` with `ctx` active, so that its log lines carry the span's ids (with a context manager). */
  within<T>(ctx: Context, fn: () => Promise<T>): Promise<T> {
    return context.with(ctx, fn);
  }

  /** Runs the multi-row INSERT inside a `db.insert` span under the batch. */
  async insert<T extends number | readonly unknown[]>(
    parent: Context,
    rows: number,
    run: () => Promise<T>,
  ): Promise<T> {
    const span = this.tracer.startSpan(
      'db.insert',
      {
        kind: SpanKind.CLIENT,
        attributes: {
          // The older names (what the brief's dashboards query) and the stable ones.
          'db.system': 'postgresql',
          'db.operation': 'INSERT',
          [ATTR_DB_SYSTEM_NAME]: 'postgresql',
          [ATTR_DB_OPERATION_NAME]: 'INSERT',
          'db.collection.name': 'events',
          'db.operation.batch.size': rows,
        },
      },
      parent,
    );
    try {
      const inserted = await run();
      span.setAttribute('vigil.db.rows_inserted', typeof inserted === 'number' ? inserted : inserted.length);
      return inserted;
    } catch (err) {
      fail(span, err);
      throw err;
    } finally {
      span.end();
    }
  }

  /** Ends `span`: ok, or with status error (`err` an Error, or a short reason). */
  end(span: Span, err?: unknown): void {
    if (err !== undefined) fail(span, err);
    span.end();
  }
}

function fail(span: Span, err: unknown): void {
  if (err instanceof Error) span.recordException(err);
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
}
