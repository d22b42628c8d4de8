import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import { startHealthServer } from '../health/http.js';
import { ReleaseClient } from '../update/client.js';
import type { UpdaterConfig } from './config.js';
import { UpdaterError } from './errors.js';
import type { JournalStep } from './journal.js';
import { createUpdaterMetrics } from './metrics.js';
import { releaseSourceOf } from './sources.js';
import { Updater, type ProbeResult } from './updater.js';

/** Runs argv to completion within the timeout; a non-zero exit or a timeout is an error with its stderr. */
export function runCommand(argv: readonly string[], timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = argv as [string, ...string[]];
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: timeoutMs });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    child.on('error', (err) =>
      reject(new UpdaterError('RESTART_FAILED', `${cmd}: ${err.message}`, true, { cause: err })),
    );
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else
        reject(
          new UpdaterError(
            'RESTART_FAILED',
            `${argv.join(' ')} ${signal ? `killed by ${signal} (timeout ${timeoutMs} ms)` : `exited ${code}`}: ${stderr.trim()}`,
            true,
          ),
        );
    });
  });
}

/** GET /healthz: the status and JSON body, or why there was none. */
export async function probeHealth(url: string, timeoutMs: number): Promise<ProbeResult> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    let body: unknown = null;
    try {
      body = JSON.parse(text);
    } catch {
      // A non-JSON answer is judged as a body without version or checks.
    }
    return { status: res.status, body };
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause;
    return { status: null, body: null, error: cause?.code ?? (err as Error).message };
  }
}

/** `VIGIL_UPDATER_FAULT=kill-after:<step>`: SIGKILL itself once that step is journaled (crash tests only). */
export function faultHook(spec: string | undefined, log: Logger): ((step: JournalStep) => void) | undefined {
  const m = spec ? /^kill-after:([a-z_]+)$/.exec(spec) : null;
  if (!m) return undefined;
  log.warn({ fault: spec }, 'fault injection armed: this process will kill itself');
  return (step) => {
    if (step === m[1]) process.kill(process.pid, 'SIGKILL');
  };
}

export interface RunningUpdater {
  updater: Updater;
  httpPort: number;
  stop(): Promise<void>;
}

/** Composition root of vigil-updater. */
export async function startUpdater(config: UpdaterConfig): Promise<RunningUpdater> {
  const log = pino({ name: 'vigil-updater', level: config.log.level });
  const registry = new Registry();
  const metrics = createUpdaterMetrics(registry);
  const { source, initialRoot } = releaseSourceOf(config);
  const client = new ReleaseClient({
    metadataDir: join(config.dataDir, 'metadata'),
    downloadDir: join(config.dataDir, 'downloads'),
    initialRoot,
    source,
    maxBundleBytes: config.limits.maxBundleBytes,
    metrics: registry,
  });
  const probeTimeout = Math.max(1000, config.health.probeSeconds * 1000);
  const updater = new Updater({
    config,
    source: client,
    restartAgent: () => runCommand(config.restart.command, config.restart.timeoutSeconds * 1000),
    probe: () => probeHealth(config.health.url, probeTimeout),
    metrics,
    log,
    now: Date.now,
    sleep: (ms) => sleep(ms),
    afterStep: faultHook(process.env.VIGIL_UPDATER_FAULT, log),
  });
  updater.start();
  const { server, port } = await startHealthServer(config.http.host, config.http.port, registry, () => {
    const j = updater.journal();
    return {
      ok: true,
      current: updater.store.currentRef() ?? null,
      step: j?.step ?? 'idle',
      target: j?.target ?? null,
    };
  });
  log.info({ releases: updater.store.dir, http: port }, 'vigil-updater started');
  return {
    updater,
    httpPort: port,
    stop: async () => {
      await updater.stop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
