import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { AuditLog } from '../audit/audit-log.js';
import type { CloudConfig } from '../config/schema.js';
import type { Resolver } from '../integrations/ssrf.js';
import { ConfigError } from '../lib/errors.js';
import type { MediaRepository } from '../media/repository.js';
import { AlertEndSweeper } from './end-sweeper.js';
import { AlertOutbox } from './outbox.js';
import { SnapshotUrls } from './public-routes.js';
import type { AlertStore } from './store.js';
import { AlertWorker } from './worker.js';
import { CapSchema } from './xml.js';
import { EidoSchema } from './eido.js';

export interface AlertsRole {
  /** For ingest: incidents and message jobs in each batch's transaction. */
  outbox: AlertOutbox;
  /** Signed snapshot URLs, when alerts.publicBaseUrl is set. */
  urls: SnapshotUrls | undefined;
  stop(): Promise<void>;
}

/**
 * The alerts capability: the commit hook (always: incidents belong to the commit), and, when
 * integrations.enabled and alerts.capSchemaFile is set, the delivery worker. JOBS and its `alerts` consumer are
 * ensured by startIntegrations, and the shared outbox relay moves the jobs. Stop after ingest.
 */
export function startAlerts(deps: {
  nc: NatsConnection;
  store: AlertStore;
  config: Pick<CloudConfig, 'integrations' | 'alerts'>;
  audit: AuditLog;
  media: MediaRepository;
  log: Logger;
  metrics: Registry;
  now: () => Date;
  nudgeRelay: () => void;
  resolve?: Resolver | undefined;
  /** Runs the end sweeper here (the ingest role: it closes what the commit hook recorded). */
  sweep?: boolean;
}): AlertsRole {
  const log = deps.log.child({ component: 'alerts' });
  const cfg = deps.config.alerts;
  const outbox = new AlertOutbox(
    deps.store,
    cfg.senderDomain,
    log,
    deps.metrics,
    deps.now,
    deps.nudgeRelay,
    cfg.endGraceMs,
  );
  const sweeper = deps.sweep
    ? new AlertEndSweeper(
        deps.store.db,
        cfg.senderDomain,
        cfg.endSweepMs,
        log,
        deps.metrics,
        deps.now,
        deps.nudgeRelay,
      )
    : undefined;
  sweeper?.start();
  const stopSweeper = async () => sweeper?.stop();
  let urls: SnapshotUrls | undefined;
  if (cfg.publicBaseUrl) {
    let key: Buffer;
    if (cfg.urlKeyFile) {
      try {
        key = readFileSync(cfg.urlKeyFile);
      } catch (cause) {
        throw new ConfigError(`alerts.urlKeyFile: ${cfg.urlKeyFile} cannot be read`, { cause });
      }
      if (key.length < 32) throw new ConfigError('alerts.urlKeyFile: the key must be at least 32 bytes');
    } else {
      key = randomBytes(32);
      log.warn(
        'alerts.urlKeyFile not set: snapshot URLs are signed with a per-process key (they stop working on restart)',
      );
    }
    urls = new SnapshotUrls(key, cfg.publicBaseUrl, cfg.snapshotUrlTtlSeconds);
  }
  if (!deps.config.integrations.enabled || !cfg.capSchemaFile) {
    log.info('alert delivery not running here (integrations disabled or alerts.capSchemaFile unset)');
    return { outbox, urls, stop: stopSweeper };
  }
  let schema: CapSchema;
  try {
    schema = CapSchema.fromFile(cfg.capSchemaFile);
  } catch (cause) {
    throw new ConfigError(`alerts.capSchemaFile: ${cfg.capSchemaFile} is not a readable XML schema`, {
      cause,
    });
  }
  let eido: EidoSchema;
  try {
    eido = EidoSchema.fromFile();
  } catch (cause) {
    // Shipped with the code: failing here is a broken build, said at start rather than at the first alert.
    throw new ConfigError('the EIDO JSON Schema (alerts/eido-v1.schema.json) does not load', { cause });
  }
  const worker = new AlertWorker({
    js: jetstream(deps.nc),
    store: deps.store,
    schema,
    eido,
    config: deps.config,
    audit: deps.audit,
    media: deps.media,
    urls,
    log,
    metrics: deps.metrics,
    now: deps.now,
    resolve: deps.resolve,
  });
  worker.start();
  return {
    outbox,
    urls,
    stop: async () => {
      await stopSweeper();
      await worker.stop();
    },
  };
}
