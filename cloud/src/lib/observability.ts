import { pino, type Logger } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { traceLogMixin } from './tracing.js';

/** Lines written inside an active span carry its trace_id and span_id (see traceLogMixin). */
export function createLogger(level: string, name: string): Logger {
  return pino({ name, level, base: { service: name }, mixin: traceLogMixin });
}

/** One metrics registry per app instance (no global default registry: tests run several apps at once). */
export function createMetricsRegistry(prefix: string): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix });
  return registry;
}
