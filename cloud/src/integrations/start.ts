import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { CloudConfig } from '../config/schema.js';
import type { Database } from '../storage/tables.js';
import { STREAM_ADMIN_TIMEOUT_MS } from '../ingest/streams.js';
import { ensureJobs } from './jobs.js';
import { WebhookOutbox } from './outbox.js';
import { OutboxRelay } from './relay.js';
import type { Resolver } from './ssrf.js';
import type { WebhookStore } from './store.js';
import { WebhookWorker } from './worker.js';

export interface IntegrationsRole {
  /** For ingest: writes each batch's webhook jobs in the batch's transaction (always, whatever `enabled`). */
  outbox: WebhookOutbox;
  /** Jobs were committed to the outbox by another writer (alerts): relay now. */
  nudge(): void;
  stop(): Promise<void>;
}

/**
 * Ensures JOBS and its `webhooks` consumer (always, like ingest's streams) and makes the outbox writer that
 * ingest commits jobs with (always: the jobs belong to the commit, wherever they are relayed). When
 * integrations.enabled, starts the outbox relay (outbox -> JOBS) and the delivery worker (JOBS -> HTTP); a
 * process with it disabled leaves its jobs to the relay of another. Stop after ingest.
 */
export async function startIntegrations(deps: {
  nc: NatsConnection;
  db: Kysely<Database>;
  store: WebhookStore;
  config: Pick<CloudConfig, 'integrations' | 'streams'>;
  log: Logger;
  metrics: Registry;
  now?: (() => Date) | undefined;
  /** DNS for the SSRF guard (tests); default the system resolver. */
  resolve?: Resolver | undefined;
}): Promise<IntegrationsRole> {
  const log = deps.log.child({ component: 'integrations' });
  await ensureJobs(await jetstreamManager(deps.nc, { timeout: STREAM_ADMIN_TIMEOUT_MS }), deps.config);
  const js = jetstream(deps.nc);
  const enabled = deps.config.integrations.enabled;
  const relay = enabled
    ? new OutboxRelay({ db: deps.db, js, log, metrics: deps.metrics, now: deps.now })
    : undefined;
  const outbox = new WebhookOutbox(deps.db, deps.store, log, deps.metrics, deps.now, () => relay?.nudge());
  if (!relay) {
    log.info(
      'integrations disabled: JOBS ensured, webhook jobs are outboxed but relayed and delivered elsewhere',
    );
    return { outbox, nudge: () => undefined, stop: () => Promise.resolve() };
  }
  relay.start();
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
    outbox,
    nudge: () => relay.nudge(),
    stop: async () => {
      await relay.stop();
      await worker.stop();
    },
  };
}
