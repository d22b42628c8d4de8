import { ROOT_CONTEXT, SpanKind, SpanStatusCode, type Span, type Tracer } from '@opentelemetry/api';
import { headers, type MsgHdrs } from '@nats-io/transport-node';
import { DetectionEvent } from '@vigil/proto';
import type { OutboxEntry } from '../buffer/index.js';
import { extractTraceContext, type TraceHeaders } from '../lib/tracing.js';

/*
 * Trace context on the uplink: the event's W3C context (made by the pipeline's `vigil.event` span, stored
 * in the payload so the outbox needs no column for it) travels as NATS headers on the event's and its
 * media's publish, and the publish itself is a `vigil.uplink.publish` span under the event's span.
 */

/** One entry's publish: the headers to send and the span that ends with the PubAck (or the failure). */
export interface PublishTrace {
  /** Fresh headers for one publish (JetStream adds Nats-Msg-Id to them, so they are never shared). */
  headers(): MsgHdrs | undefined;
  span: Span;
}

/** The trace context in an outbox entry's DetectionEvent; undefined when it has none or is unreadable. */
export function eventTraceOf(e: Pick<OutboxEntry, 'kind' | 'payload'>): TraceHeaders | undefined {
  if (e.kind !== 'event') return undefined;
  try {
    const t = DetectionEvent.decode(e.payload).trace;
    return t && t.traceparent !== '' ? { traceparent: t.traceparent, tracestate: t.tracestate } : undefined;
  } catch {
    return undefined; // the publish goes on without a trace; the cloud dead-letters such a payload anyway
  }
}

export function startPublishTrace(tracer: Tracer, e: OutboxEntry, attempt: number): PublishTrace {
  const t = eventTraceOf(e);
  // No (valid) event context: a root span of its own, sampled like any new trace.
  const parent = (t && extractTraceContext(t)) ?? ROOT_CONTEXT;
  const span = tracer.startSpan(
    'vigil.uplink.publish',
    {
      kind: SpanKind.PRODUCER,
      attributes: {
        'messaging.system': 'nats',
        'messaging.operation.type': 'send',
        'messaging.destination.name': e.subject,
        'messaging.message.id': e.id,
        'vigil.event.id': e.id,
        'vigil.uplink.attempt': attempt,
        'vigil.uplink.media': e.media !== undefined,
      },
    },
    parent,
  );
  return {
    span,
    headers: () => {
      if (!t) return undefined;
      // The event's own context, verbatim as in the payload: the cloud sees the same parent either way.
      const h = headers();
      h.set('traceparent', t.traceparent);
      if (t.tracestate !== '') h.set('tracestate', t.tracestate);
      return h;
    },
  };
}

export function endPublishSpan(
  span: Span,
  outcome: { duplicate: boolean } | { error: unknown } | 'skipped',
): void {
  if (outcome === 'skipped') span.setAttribute('vigil.uplink.outcome', 'skipped');
  else if ('duplicate' in outcome) {
    span.setAttribute('vigil.uplink.outcome', 'acked');
    span.setAttribute('vigil.uplink.duplicate', outcome.duplicate);
  } else {
    const err = outcome.error;
    span.setAttribute('vigil.uplink.outcome', 'error');
    if (err instanceof Error) span.recordException(err);
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
  }
  span.end();
}
