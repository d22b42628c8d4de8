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
import type { Validation } from './validate.js';

/*
 * Spans of the ingest loop. Per message a `vigil.ingest.event` span, child of the device's `vigil.event`
 * (its W3C context from the NATS header `traceparent`, else from the payload's `trace`); per transaction a
 * `vigil.ingest.batch` span that links to its events (a batch has many parents, so links, not a parent)
 * with a `db.insert` child around the INSERT. Parents are passed explicitly: the spans are right even where
 * no context manager is registered (only the log mixin needs one).
 */

export type TraceContextSource = 'header' | 'payload';

export class IngestTracing {
  private readonly invalid: Counter<'source'> | undefined;

  constructor(
    private readonly tracer: Tracer = new ProxyTracerProvider().getTracer('vigil-cloud'),
    registry?: Registry,
  ) {
    this.invalid = registry
      ? new Counter({
          name: 'vigil_cloud_ingest_trace_context_invalid_total',
          help: 'Malformed W3C trace contexts on events (ignored: the event is stored, its span starts a new trace)',
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

  startEvent(msg: JsMsg, v: Validation): Span {
    const parent = this.parentOf(msg, v.ok ? v.trace : undefined);
    const tenant = v.ok ? v.row.tenant_id : v.tenantId;
    const device = v.ok ? v.row.device_id : v.deviceId;
    // Built in place (no spreads): this runs for every event.
    const attributes: Attributes = {
      'messaging.system': 'nats',
      'messaging.operation.type': 'process',
      'messaging.destination.name': msg.subject,
      'vigil.stream.seq': msg.info.streamSequence,
    };
    if (v.ok) attributes['vigil.event.id'] = v.row.event_id;
    else attributes['vigil.dead_letter.reason'] = v.reason;
    if (tenant !== undefined) attributes['vigil.tenant.id'] = tenant;
    if (device !== undefined) attributes['vigil.device.id'] = device;
    return this.tracer.startSpan(
      'vigil.ingest.event',
      { kind: SpanKind.CONSUMER, root: parent === undefined, attributes },
      parent ?? ROOT_CONTEXT,
    );
  }

  /** The transaction's span, linked to every event in it; `ctx` is the parent of its children. */
  startBatch(events: readonly Span[]): { span: Span; ctx: Context } {
    const links: Link[] = [];
    for (const e of events) {
      const sc = e.spanContext();
      if (trace.isSpanContextValid(sc)) links.push({ context: sc });
    }
    const span = this.tracer.startSpan(
      'vigil.ingest.batch',
      { root: true, links, attributes: { 'vigil.batch.events': events.length } },
      ROOT_CONTEXT,
    );
    return { span, ctx: trace.setSpan(ROOT_CONTEXT, span) };
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
