import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { CloudConfig } from '../config/schema.js';
import { ConfigError } from '../lib/errors.js';
import type { LeaderGate } from '../scheduler/lease.js';
import type { Database } from '../storage/tables.js';
import { parseKeyFile, type TufKeyFile } from './keys.js';
import { ReleaseRefreshJob } from './refresh-job.js';
import { FsReleaseRepository } from './repository.js';
import type { Releases } from './routes.js';
import { ReleaseService } from './service.js';

export interface StartedReleases extends Releases {
  readonly job: ReleaseRefreshJob | undefined;
  stop(): Promise<void>;
}

/** Builds the release repository from config `releases`; undefined when `releases.dir` is unset. */
export async function startReleases(
  config: CloudConfig['releases'],
  deps: {
    db: Kysely<Database>;
    log: Logger;
    metrics: Registry;
    now?: (() => Date) | undefined;
    /**
     * The scheduler lease when this process has the scheduler role: the refresh job runs behind it. Null: no
     * refresh job here (another process's scheduler role signs). Undefined: the job runs on every tick.
     */
    refreshLeader?: LeaderGate | null;
  },
): Promise<StartedReleases | undefined> {
  if (config.dir === undefined) return undefined;
  const log = deps.log.child({ component: 'releases' });
  let onlineKey: TufKeyFile | undefined;
  if (config.onlineKeyFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(config.onlineKeyFile, 'utf8');
    } catch (cause) {
      throw new ConfigError(`releases.onlineKeyFile: ${config.onlineKeyFile} cannot be read`, { cause });
    }
    try {
      onlineKey = parseKeyFile(text, 'releases.onlineKeyFile');
    } catch (cause) {
      throw new ConfigError((cause as Error).message, { cause });
    }
  } else
    log.warn(
      'releases.onlineKeyFile is not set: the repository is served but its timestamp is never renewed',
    );
  const repo = new FsReleaseRepository(resolve(config.dir));
  await repo.init();
  const service = new ReleaseService({
    repo,
    db: deps.db,
    onlineKey,
    log,
    metrics: deps.metrics,
    now: deps.now,
    timestampExpirySeconds: config.timestampExpirySeconds,
    snapshotExpirySeconds: config.snapshotExpirySeconds,
    maxBundleBytes: config.maxBundleBytes,
  });
  const job =
    onlineKey && deps.refreshLeader !== null
      ? new ReleaseRefreshJob(service, config.refreshIntervalSeconds * 1000, log, deps.metrics, deps.now)
      : undefined;
  job?.start(deps.refreshLeader ?? undefined);
  return {
    service,
    repo,
    publisherTenant: config.publisherTenant,
    job,
    stop: async () => job?.stop(),
  };
}
