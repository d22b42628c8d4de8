import {
  context,
  defaultTextMapGetter,
  defaultTextMapSetter,
  diag,
  DiagLogLevel,
  isSpanContextValid,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  trace,
  type Context,
  type SpanContext,
  type Tracer,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import type { Logger } from 'pino';

/*
 * Tracing of the cloud (DESIGN.md, Observability): manual spans only (require hooks do not work with our
 * tsx/ESM setup); the edge's W3C trace context arrives in NATS headers and in the DetectionEvent (`trace`).
 * Nothing here is a module singleton: the composition root builds one `Tracing` and hands its tracer out.
 * The same file exists on the edge side (edge-agent/src/lib/tracing.ts): edge and cloud share no code.
 */

export interface TracingConfig {
  enabled: boolean;
  /** OTLP/HTTP traces endpoint (http://host:4318/v1/traces); absent: spans are made, not exported. */
  otlpUrl?: string;
  /** Root spans kept (children follow their parent's decision). */
  sampleRatio: number;
}

export interface TracingOptions {
  serviceName: string;
  serviceVersion?: string;
  /** Extra processors (tests: a SimpleSpanProcessor over an InMemorySpanExporter). */
  spanProcessors?: SpanProcessor[];
  /**
   * Spans waiting for export. Past it the SDK drops new spans and logs "Dropped N spans because maxQueueSize
   * reached" through the OTel diag logger (routed to the log by `main`): that warning is the drop counter.
   */
  maxQueueSize?: number;
  exportTimeoutMs?: number;
  /**
   * Links one span may keep (the SDK's default is 128 and it drops the rest, logging "Dropped N links because
   * linkCountLimit reached"). The ingest batch span links every event of its transaction, so `main` passes
   * the largest batch (ingest.batchSize); never below the SDK's default.
   */
  maxLinksPerSpan?: number;
}

/** The OTel SDK's default link limit per span (OTEL_SPAN_LINK_COUNT_LIMIT). */
export const DEFAULT_LINK_COUNT_LIMIT = 128;

export interface Tracing {
  readonly tracer: Tracer;
  /** Exports what is queued (no-op when disabled). */
  forceFlush(): Promise<void>;
  /** Flushes and stops exporting; call once at shutdown. */
  shutdown(): Promise<void>;
}

export function createTracing(config: Readonly<TracingConfig>, opts: TracingOptions): Tracing {
  if (!config.enabled) {
    // A proxy provider without a delegate yields no-op spans: no ids are made, a parent's are passed on.
    const tracer = new ProxyTracerProvider().getTracer(opts.serviceName);
    return { tracer, forceFlush: () => Promise.resolve(), shutdown: () => Promise.resolve() };
  }
  const processors: SpanProcessor[] = [...(opts.spanProcessors ?? [])];
  if (config.otlpUrl !== undefined)
    processors.push(
      new BatchSpanProcessor(
        new OTLPTraceExporter({ url: config.otlpUrl, timeoutMillis: opts.exportTimeoutMs ?? 10_000 }),
        { maxQueueSize: opts.maxQueueSize ?? 2048, maxExportBatchSize: 512, scheduledDelayMillis: 2_000 },
      ),
    );
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({
      [ATTR_SERVICE_NAME]: opts.serviceName,
      ...(opts.serviceVersion ? { [ATTR_SERVICE_VERSION]: opts.serviceVersion } : {}),
    }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.sampleRatio) }),
    spanLimits: { linkCountLimit: Math.max(DEFAULT_LINK_COUNT_LIMIT, opts.maxLinksPerSpan ?? 0) },
    spanProcessors: processors,
  });
  return {
    tracer: provider.getTracer(opts.serviceName, opts.serviceVersion),
    forceFlush: () => provider.forceFlush(),
    shutdown: () => provider.shutdown(),
  };
}

/**
 * Makes `context.with` effective process-wide (AsyncLocalStorage), so that log lines written inside a span
 * carry its ids. Global state: called by `main` only (tests call it themselves). Returns the undo.
 */
export function registerContextManager(): () => void {
  const manager = new AsyncLocalStorageContextManager().enable();
  if (!context.setGlobalContextManager(manager)) {
    manager.disable(); // one is registered already: leave it (and its owner's undo) alone
    return () => undefined;
  }
  return () => context.disable();
}

/**
 * Sends the SDK's own warnings (export failures, "Dropped N spans because maxQueueSize reached") to `log`.
 * Global state like the context manager: `main` only.
 */
export function routeDiagToLogger(log: Logger): void {
  const at =
    (level: 'error' | 'warn' | 'info' | 'debug') =>
    (message: string, ...args: unknown[]) =>
      log[level]({ otel: args.length > 0 ? args.map(String) : undefined }, message);
  diag.setLogger(
    { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug'), verbose: at('debug') },
    { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true },
  );
}

/** pino `mixin`: adds trace_id/span_id to a log line written while a valid span is active, nothing otherwise. */
export function traceLogMixin(): Record<string, string> {
  const sc = trace.getSpanContext(context.active());
  return sc && isSpanContextValid(sc) ? { trace_id: sc.traceId, span_id: sc.spanId } : {};
}

/** The W3C headers (`traceparent`, `tracestate`) as they travel in the proto's TraceContext and NATS headers. */
export interface TraceHeaders {
  traceparent: string;
  tracestate: string;
}

const propagator = new W3CTraceContextPropagator();

/** `ctx`'s span as W3C headers; undefined when it has no valid span (tracing disabled). */
export function injectTraceHeaders(ctx: Context): TraceHeaders | undefined {
  const carrier: Record<string, string> = {};
  propagator.inject(ctx, carrier, defaultTextMapSetter);
  const traceparent = carrier['traceparent'];
  return traceparent ? { traceparent, tracestate: carrier['tracestate'] ?? '' } : undefined;
}

/** A remote parent context from W3C headers; undefined when `traceparent` is absent or malformed. */
export function extractTraceContext(h: Partial<TraceHeaders>): Context | undefined {
  if (!h.traceparent) return undefined;
  const ctx = propagator.extract(ROOT_CONTEXT, h, defaultTextMapGetter);
  const sc: SpanContext | undefined = trace.getSpanContext(ctx);
  return sc && isSpanContextValid(sc) ? ctx : undefined;
}
