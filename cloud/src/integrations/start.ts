import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { CloudConfig } from '../config/schema.js';
import type { NewEvent } from '../events/store.js';
import { WebhookDispatcher } from './dispatcher.js';
import { ensureJobs } from './jobs.js';
import type { Resolver } from './ssrf.js';
import type { WebhookStore } from './store.js';
import { WebhookWorker } from './worker.js';

export interface IntegrationsRole {
  /** For ingest's onCommitted hook. */
  onCommitted(rows: readonly NewEvent[]): void;
  stop(): Promise<void>;
}

/**
 * Ensures JOBS and its `webhooks` consumer (always, like ingest's streams), then, when integrations.enabled,
 * starts the dispatcher (fed by ingest) and the delivery worker. Stop after ingest: the dispatcher finishes
 * what ingest handed it, then the worker the jobs in hand.
 */
export async function startIntegrations(deps: {
  nc: NatsConnection;
  store: WebhookStore;
  config: Pick<CloudConfig, 'integrations' | 'streams'>;
  log: Logger;
  metrics: Registry;
  now?: (() => Date) | undefined;
  /** DNS for the SSRF guard (tests); default the system resolver. */
  resolve?: Resolver | undefined;
}): Promise<IntegrationsRole> {
  const log = deps.log.child({ component: 'integrations' });
  await ensureJobs(await jetstreamManager(deps.nc), deps.config);
  if (!deps.config.integrations.enabled) {
    log.info('integrations disabled: JOBS ensured, webhooks are neither dispatched nor delivered here');
    return { onCommitted: () => undefined, stop: () => Promise.resolve() };
  }
  const js = jetstream(deps.nc);
  const dispatcher = new WebhookDispatcher(js, deps.store, log, deps.metrics, deps.now);
  const worker = new WebhookWorker({
    js,
    store: deps.store,
    config: deps.config,
    log,
    metrics: deps.metrics,
    resolve: deps.resolve,
  });
  worker.start();
  return {
    onCommitted: (rows) => dispatcher.onCommitted(rows),
    stop: async () => {
      await dispatcher.stop();
      await worker.stop();
    },
  };
}
