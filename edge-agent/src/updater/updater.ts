import { readFileSync, rmSync, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { bundleName, compareSemver } from '@vigil/proto';
import type { Logger } from 'pino';
import { UpdateRefusedError } from '../update/errors.js';
import type { UpdaterConfig } from './config.js';
import {
  REQUEST_FILE,
  STATUS_FILE,
  updateDir,
  updateRequestSchema,
  type UpdateRequest,
  type UpdateState,
  type UpdateStatus,
} from './contract.js';
import { readJsonIfExists, writeJsonAtomic } from './durable.js';
import { BundleRefusedError, UpdaterError } from './errors.js';
import { journalSchema, recover, stateOfStep, type Journal, type JournalStep } from './journal.js';
import type { UpdaterMetrics } from './metrics.js';
import { decideRequest, HealthGate, judgeHealth, requestKey, type GateVerdict } from './plan.js';
import { ReleaseStore } from './releases.js';
import { unpackBundle } from './unpack.js';

/** The part of ReleaseClient the updater uses: a verified download of a signed bundle. */
export interface BundleSource {
  download(
    name: string,
    installed: string,
  ): Promise<{ path: string; release: { version: string; channel: string } }>;
}

export interface ProbeResult {
  status: number | null;
  body: unknown;
  error?: string;
}

export interface UpdaterDeps {
  config: UpdaterConfig;
  source: BundleSource;
  restartAgent: () => Promise<void>;
  probe: () => Promise<ProbeResult>;
  metrics: UpdaterMetrics;
  log: Logger;
  now: () => number;
  sleep: (ms: number) => Promise<void>;
  /** Called after each journal step is durable (fault injection in tests: kill -9 right there). */
  afterStep?: (step: JournalStep) => void;
}

/** A retryable failure (the repository unreachable) is tried again after this, times the attempt. */
const RETRY_DELAY_MS = 30_000;

/**
 * The updater's loop: reads request.json, and for a version to install downloads and verifies it (TUF),
 * unpacks it into releases/<v>, switches `current`, restarts the agent and bakes it against its /healthz,
 * then commits or switches back. Each step is journaled first (journal.ts says what a restart does with it).
 */
export class Updater {
  readonly store: ReleaseStore;
  private readonly journalPath: string;
  private readonly statusPath: string;
  private readonly requestPath: string;
  private stopped = false;
  private wake: (() => void) | undefined;
  private watcher: FSWatcher | undefined;
  private loop: Promise<void> | undefined;
  /** The last invalid request.json seen: counted and logged once, not at every poll. */
  private lastInvalid: string | undefined;

  constructor(private readonly d: UpdaterDeps) {
    const c = d.config;
    this.store = new ReleaseStore(join(c.dataDir, 'releases'), c.packagedRelease);
    this.journalPath = join(c.dataDir, 'journal.json');
    this.statusPath = join(updateDir(c.stateDir), STATUS_FILE);
    this.requestPath = join(updateDir(c.stateDir), REQUEST_FILE);
  }

  start(): void {
    this.store.init();
    const j = this.journal();
    if (!j || ['committed', 'rolled_back', 'failed'].includes(j.step))
      this.writeStatus(j ? stateOfStep(j.step) : 'idle', j);
    try {
      this.watcher = watch(updateDir(this.d.config.stateDir), () => this.wake?.());
      this.watcher.on('error', () => undefined);
    } catch {
      // The directory may not exist yet (the agent creates it): polling alone then.
    }
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.close();
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.tick();
      } catch (err) {
        this.d.log.error({ err }, 'update step failed; retrying at the next poll');
      }
      if (this.stopped) break;
      await Promise.race([
        this.d.sleep(this.d.config.pollSeconds * 1000),
        new Promise<void>((resolve) => (this.wake = resolve)),
      ]);
    }
  }

  /** One pass: finish what the journal says is under way, else act on request.json. */
  async tick(): Promise<void> {
    const j = this.journal();
    const ref = this.currentRef();
    const r = recover(j, ref);
    if (j && r.kind !== 'idle') {
      this.d.log.warn({ step: j.step, target: j.target, recovery: r.kind }, 'resuming an interrupted update');
      switch (r.kind) {
        case 'retry_from_start': {
          rmSync(this.store.stagingDir(j.target), { recursive: true, force: true });
          // Nothing was switched yet: a request that changed meanwhile wins over finishing the old one.
          const now = this.request();
          if (!now || requestKey(now) !== j.requestKey)
            return this.fail(j, 'interrupted, and the request changed meanwhile', false);
          if (r.giveUp)
            return this.fail(j, `the updater died ${j.attempt} times while installing ${j.target}`, false);
          return this.install({ ...j, attempt: j.attempt + 1 });
        }
        case 'switch':
          return this.switchAndBake(j);
        case 'restart_and_bake':
          return this.restartAndBake(j);
        case 'roll_back':
          return this.rollBack(j, r.reason);
        case 'superseded':
          return this.fail(j, `current points at ${r.found}, installed outside the updater`, false);
      }
    }
    const request = this.request();
    const current = this.store.versionOf(ref);
    const decision = decideRequest({
      request,
      current,
      journal: j,
      installed: this.store.installed(),
      nowMs: this.d.now(),
      retryDelayMs: RETRY_DELAY_MS,
    });
    if (decision.kind === 'none' || !request) return;
    const at = new Date(this.d.now()).toISOString();
    const fresh: Journal = {
      v: 1,
      step: decision.kind === 'upgrade' ? 'downloading' : 'staged',
      request,
      requestKey: requestKey(request),
      target: request.version,
      targetRef: request.version,
      previous: current,
      previousRef: ref,
      attempt: 1,
      startedAt: at,
      stepAt: at,
      reason: null,
      retryable: false,
    };
    this.d.log.info({ from: current, to: request.version, how: decision.kind }, 'agent update requested');
    if (decision.kind === 'refuse') return this.fail(fresh, decision.reason, false);
    if (decision.kind === 'switch_local') {
      this.step(fresh, 'staged');
      return this.switchAndBake(fresh);
    }
    return this.install(fresh);
  }

  private async install(j: Journal): Promise<void> {
    this.step(j, 'downloading');
    let path: string;
    try {
      const got = await this.d.source.download(bundleName(j.target), j.previous);
      if (got.release.version !== j.target)
        throw new UpdaterError(
          'CHANNEL_MISMATCH',
          `signed release is ${got.release.version}, not ${j.target}`,
        );
      if (got.release.channel !== j.request.channel)
        throw new UpdaterError(
          'CHANNEL_MISMATCH',
          `release ${j.target} is on channel ${got.release.channel}, the request asks for ${j.request.channel}`,
        );
      path = got.path;
      this.step(j, 'staging');
      const { maxUnpackedBytes, maxEntries } = this.d.config.limits;
      await unpackBundle(path, this.store.stagingDir(j.target), j.target, { maxUnpackedBytes, maxEntries });
      this.store.install(j.target);
    } catch (err) {
      rmSync(this.store.stagingDir(j.target), { recursive: true, force: true });
      const reason =
        err instanceof UpdateRefusedError || err instanceof BundleRefusedError ? err.reason : undefined;
      if (reason) this.d.metrics.refused.inc({ reason });
      const retryable = (err as { retryable?: unknown }).retryable === true;
      this.d.log.error({ err, target: j.target, reason }, 'release refused or not available');
      return this.fail(j, `${reason ? `refused (${reason}): ` : ''}${(err as Error).message}`, retryable);
    }
    rmSync(path, { force: true });
    this.step(j, 'staged');
    return this.switchAndBake(j);
  }

  private async switchAndBake(j: Journal): Promise<void> {
    this.step(j, 'switching');
    this.store.point(j.targetRef);
    this.step(j, 'switched');
    return this.restartAndBake(j);
  }

  private async restartAndBake(j: Journal): Promise<void> {
    try {
      await this.d.restartAgent();
    } catch (err) {
      return this.rollBack(j, `restarting the agent on ${j.target} failed: ${(err as Error).message}`);
    }
    this.step(j, 'baking');
    const verdict = await this.bake(j.target);
    if (this.stopped) return;
    if (verdict.kind === 'rollback') return this.rollBack(j, verdict.reason);
    this.step(j, 'committed');
    this.d.metrics.updates.inc({ result: 'committed' });
    this.d.log.info({ version: j.target, previous: j.previous }, 'agent update committed');
    const gone = this.store.prune(this.d.config.keepReleases, [j.targetRef, j.previousRef], compareSemver);
    if (gone.length) this.d.log.info({ removed: gone }, 'old releases removed');
  }

  private async bake(target: string): Promise<GateVerdict> {
    const h = this.d.config.health;
    const gate = new HealthGate(this.d.now(), h.bakeSeconds * 1000, h.failAfterProbes);
    for (;;) {
      const p = await this.d.probe();
      const verdict = gate.feed(
        judgeHealth(p.status, p.body, target, h.requiredChecks, p.error),
        this.d.now(),
      );
      if (verdict.kind !== 'wait' || this.stopped) return verdict;
      await this.d.sleep(h.probeSeconds * 1000);
    }
  }

  private async rollBack(j: Journal, reason: string): Promise<void> {
    this.d.log.error({ target: j.target, back_to: j.previous, reason }, 'rolling back the agent update');
    this.step(j, 'rolling_back', reason);
    this.store.point(j.previousRef);
    // The old release ran before: restarting it is all that is left. If even that fails the journal stays
    // at rolling_back and the next pass tries again.
    await this.d.restartAgent();
    this.step(j, 'rolled_back', reason);
    this.d.metrics.updates.inc({ result: 'rolled_back' });
  }

  private fail(j: Journal, reason: string, retryable: boolean): void {
    this.step({ ...j, retryable }, 'failed', reason);
    this.d.metrics.updates.inc({ result: 'failed' });
  }

  /** Journals a step (durably, before its effects), mirrors it in status.json, then the fault hook. */
  private step(j: Journal, step: JournalStep, reason?: string): void {
    j.step = step;
    j.stepAt = new Date(this.d.now()).toISOString();
    if (reason !== undefined) j.reason = reason;
    writeJsonAtomic(this.journalPath, j);
    this.writeStatus(stateOfStep(step), j);
    this.d.afterStep?.(step);
  }

  private writeStatus(state: UpdateState, j: Journal | undefined): void {
    const current = this.store.versionOf(this.currentRef());
    const switched = j && ['switched', 'baking', 'committed', 'rolling_back', 'rolled_back'].includes(j.step);
    const status: UpdateStatus = {
      state,
      current,
      // The version that ran before the last switch (for rolled_back: the release it came back from).
      previous: !j || !switched ? null : j.step === 'rolled_back' ? j.target : j.previous,
      target: j && state !== 'idle' ? j.target : null,
      reason: j && state !== 'idle' ? j.reason : null,
      updatedAt: new Date(this.d.now()).toISOString(),
    };
    writeJsonAtomic(this.statusPath, status);
    this.d.metrics.setState(state);
  }

  private currentRef(): string {
    const ref = this.store.currentRef();
    if (ref === undefined)
      throw new UpdaterError('NO_CURRENT_RELEASE', `${this.store.currentLink} is missing`);
    return ref;
  }

  journal(): Journal | undefined {
    try {
      const data = readJsonIfExists(this.journalPath);
      return data === undefined ? undefined : journalSchema.parse(data);
    } catch (err) {
      // Written by rename only, so never torn; a damaged one must not stop the updater from serving.
      this.d.log.error({ err }, 'journal.json unreadable: ignored');
      return undefined;
    }
  }

  private request(): UpdateRequest | undefined {
    let text: string;
    try {
      text = readFileSync(this.requestPath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    // Bounded: the contract's fields are short; anything larger is not a request.
    let why: string | undefined;
    let data: unknown;
    if (text.length > 4096) why = `${text.length} bytes`;
    else
      try {
        data = JSON.parse(text);
      } catch {
        why = 'not JSON';
      }
    const r = why === undefined ? updateRequestSchema.safeParse(data) : undefined;
    if (r?.success) {
      this.lastInvalid = undefined;
      return r.data;
    }
    why ??= r?.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    if (this.lastInvalid !== text) {
      this.lastInvalid = text;
      this.d.metrics.requestsInvalid.inc();
      this.d.log.warn({ why }, 'request.json does not match the contract: ignored');
    }
    return undefined;
  }
}
