/**
 * The agent's side of remote config: receives SignedConfigs (pushed on `cfg`, or as the reply to its
 * ConfigStatus poll on `status`), verifies them, plans, applies through the journal, waits for health, and
 * commits or rolls back; every outcome is reported as a whole-state ConfigStatus. One config is handled at
 * a time (a chain), so a push and a poll reply of the same version cannot race.
 */
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { DeviceHealth } from '@vigil/proto';
import {
  ConfigStatus,
  configStatusOf,
  DeviceConfig,
  reportAfter,
  SignedConfig,
  startReport,
  subjectFor,
  type ConfigEvent,
  type ConfigReport,
} from '@vigil/proto';
import type { AgentConfig } from '../config/schema.js';
import type { ConfigJournal, JournalEntry } from './journal.js';
import { planConfig, type ConfigPlan } from './plan.js';
import { applyDeviceConfig, ConfigInvalidError, modelFilePath } from './translate.js';
import { ConfigRejectedError, verifySignedConfig, type ConfigTrustSet } from './verify.js';
import { ensureModelFiles, type ModelFetcher } from './models.js';

export type HealthVerdict = { ok: true } | { ok: false; reason: string; fatal?: boolean };

/** What the manager needs from the running agent. */
export interface ConfigHost {
  running(): AgentConfig;
  apply(target: AgentConfig, plan: ConfigPlan): Promise<void>;
  health(target: AgentConfig, plan: ConfigPlan): HealthVerdict;
  deviceHealth(): DeviceHealth;
}

export interface RemoteConfigOptions {
  nc: NatsConnection | undefined;
  device: { tenantId: string; deviceId: string };
  bootstrap: Readonly<AgentConfig>;
  journal: ConfigJournal;
  trust: () => ConfigTrustSet | undefined;
  host: ConfigHost;
  registry: Registry;
  log: Logger;
  now: () => Date;
  pollMs: number;
  healthTimeoutMs: number;
  fetchModel?: ModelFetcher;
  /** From startRemoteConfig(): what runs, and the version an interrupted apply left behind. */
  start: RemoteStart;
  /** Called with each config once it is applied (the agent section goes to the updater link). */
  onApplied?: ((body: DeviceConfig) => void) | undefined;
}

export interface RemoteStart {
  /** The config to start with: the bootstrap, or the bootstrap with applied.json over it. */
  config: AgentConfig;
  applied: JournalEntry | undefined;
  highWater: bigint;
  /** A version whose apply was interrupted (kill -9): reported as rolled back. */
  interrupted: bigint | undefined;
}

const EMPTY_BODY = (): DeviceConfig => DeviceConfig.fromPartial({});

/**
 * Reads the journal at start: a pending.json means an apply was interrupted; the old config (applied.json,
 * or the bootstrap) runs whole, pending.json is dropped and its version recorded as the high-water mark.
 */
export function startRemoteConfig(
  bootstrap: Readonly<AgentConfig>,
  journal: ConfigJournal,
  log: Logger,
): RemoteStart {
  let applied: JournalEntry | undefined;
  try {
    applied = journal.applied();
  } catch (err) {
    log.error(
      { err, file: journal.appliedPath },
      'the applied remote config is unreadable: running the local one',
    );
  }
  let highWater = applied?.highWater ?? 0n;
  let interrupted: bigint | undefined;
  if (journal.hasPending()) {
    const pending = journal.pending();
    interrupted = pending?.version;
    if (pending && pending.version > highWater) highWater = pending.version;
    log.warn(
      { version: interrupted?.toString(), applied: applied?.version.toString() ?? 'local' },
      'an apply was interrupted: running the previous config',
    );
    journal.writeApplied({
      version: applied?.version ?? 0n,
      highWater,
      body: applied?.body ?? EMPTY_BODY(),
    });
    journal.dropPending();
  }
  let config: AgentConfig = { ...bootstrap };
  if (applied && applied.version > 0n) {
    try {
      config = applyDeviceConfig(bootstrap, applied.body);
    } catch (err) {
      log.error({ err }, 'the applied remote config does not fit this agent: running the local one');
      applied = undefined;
    }
  }
  return { config, applied, highWater, interrupted };
}

export class RemoteConfigManager {
  highWater: bigint;
  private appliedBody: DeviceConfig;
  /** What every status says (the last outcome and the version that runs): @vigil/proto's config report. */
  private report_: ConfigReport;
  private chain: Promise<unknown> = Promise.resolve();
  private lastJws = '';
  private sub: Subscription | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly rejected: Counter<'reason'>;
  readonly reports: ConfigStatus[] = [];

  constructor(private readonly o: RemoteConfigOptions) {
    const s = o.start;
    this.appliedBody = s.applied?.body ?? EMPTY_BODY();
    this.highWater = s.highWater;
    this.report_ = startReport(s.applied?.version ?? 0n, s.interrupted);
    this.rejected = new Counter({
      name: 'vigil_agent_config_rejected_total',
      help: 'Remote configs refused or failed, by reason',
      labelNames: ['reason'],
      registers: [o.registry],
    });
    const version = (): number => Number(this.appliedVersion);
    new Gauge({
      name: 'vigil_agent_config_version',
      help: 'Version of the remote config the agent runs (0 = the local config)',
      registers: [o.registry],
      collect() {
        this.set(version());
      },
    });
  }

  /** The version of the remote config that runs (0 = the local config). */
  get appliedVersion(): bigint {
    return this.report_.appliedVersion;
  }

  private record(e: ConfigEvent): void {
    this.report_ = reportAfter(this.report_, e);
  }

  start(): void {
    const { nc, device } = this.o;
    if (!nc) return;
    this.sub = nc.subscribe(subjectFor(device.tenantId, device.deviceId, 'cfg'), {
      callback: (err, msg) => {
        if (err) return;
        try {
          void this.enqueue(SignedConfig.decode(msg.data));
        } catch (e) {
          this.o.log.warn({ err: e }, 'undecodable SignedConfig on the cfg subject');
          this.rejectedCount('malformed');
        }
      },
    });
    void this.report();
    this.timer = setInterval(() => void this.report(), this.o.pollMs);
    this.timer.unref();
    void (async () => {
      for await (const s of nc.status()) if (s.type === 'reconnect' && !this.stopped) void this.report();
    })().catch(() => undefined);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.sub?.unsubscribe();
    await this.chain.catch(() => undefined);
  }

  /** The current whole-state report: what every status (after an apply, each poll, a reconnect) sends. */
  status(): ConfigStatus {
    return configStatusOf(this.report_, this.o.device, this.o.host.deviceHealth(), this.o.now());
  }

  /** Handles configs one at a time; resolves when this one is done. */
  enqueue(signed: SignedConfig): Promise<void> {
    const run = this.chain.then(() => this.handle(signed));
    this.chain = run.catch((err: unknown) => this.o.log.error({ err }, 'remote config handling failed'));
    return run;
  }

  /** Sends the status as a request; a newer SignedConfig in the reply is handled. Never throws. */
  async report(): Promise<void> {
    const { nc, device } = this.o;
    if (!nc || nc.isClosed() || this.stopped) return;
    const status = this.status();
    this.reports.push(status);
    if (this.reports.length > 100) this.reports.shift();
    try {
      const reply = await nc.request(
        subjectFor(device.tenantId, device.deviceId, 'status'),
        ConfigStatus.encode(status).finish(),
        { timeout: 5_000 },
      );
      if (reply.data.length > 0) void this.enqueue(SignedConfig.decode(reply.data));
    } catch (err) {
      this.o.log.debug({ err }, 'config status poll got no answer (retried at the next poll)');
    }
  }

  private rejectedCount(reason: string): void {
    this.rejected.inc({ reason });
  }

  private fail(version: bigint, reason: string, label: string): void {
    this.rejectedCount(label);
    this.record({ kind: 'refused', version, reason });
    this.o.log.warn({ version: version.toString(), reason }, 'remote config refused');
  }

  /** Persists a raised high-water mark (a verified version is never accepted again, applied or not). */
  private raiseHighWater(version: bigint): void {
    if (version <= this.highWater) return;
    this.highWater = version;
    this.o.journal.writeApplied({ version: this.appliedVersion, highWater: version, body: this.appliedBody });
  }

  private async handle(signed: SignedConfig): Promise<void> {
    if (this.stopped) return;
    if (signed.jws === this.lastJws) return; // the same delivery twice (push and poll reply)
    this.lastJws = signed.jws;
    const { o } = this;
    const trust = o.trust();
    let body: DeviceConfig;
    try {
      if (!trust)
        throw new ConfigRejectedError(
          'kid',
          'no config signing keys are trusted (enroll or remoteConfig.trustedKeysFile)',
        );
      body = await verifySignedConfig(signed, {
        trust,
        identity: o.device,
        highWater: this.highWater,
        now: o.now(),
      });
    } catch (err) {
      if (!(err instanceof ConfigRejectedError)) throw err;
      this.fail(signed.version, err.message, err.reason);
      void this.report();
      return;
    }
    const version = body.version;
    this.raiseHighWater(version);

    let target: AgentConfig;
    try {
      target = applyDeviceConfig(o.bootstrap, body);
    } catch (err) {
      if (!(err instanceof ConfigInvalidError)) throw err;
      this.fail(version, err.message, 'invalid');
      void this.report();
      return;
    }
    try {
      await ensureModelFiles(o.bootstrap.dataDir, body.models, o.fetchModel, o.log);
    } catch (err) {
      this.fail(version, `model: ${(err as Error).message}`, 'model');
      void this.report();
      return;
    }

    const previous = o.host.running();
    const plan = planConfig(previous, target);
    o.log.info(
      {
        version: version.toString(),
        cameras: {
          add: plan.cameras.add.map((c) => c.id),
          remove: plan.cameras.remove,
          restart: plan.cameras.restart.map((c) => c.id),
          keep: plan.cameras.keep,
        },
        models: {
          load: plan.models.load.map((m) => m.name),
          unload: plan.models.unload,
          keep: plan.models.keep,
        },
      },
      'applying remote config',
    );
    o.journal.writePending({ version, highWater: version, body });
    this.record({ kind: 'applying', version });
    void this.report();

    let verdict: HealthVerdict;
    try {
      await o.host.apply(target, plan);
      verdict = await this.waitHealthy(target, plan);
    } catch (err) {
      verdict = { ok: false, reason: `apply failed: ${(err as Error).message}` };
    }
    if (verdict.ok) {
      o.journal.commit();
      const oldBody = this.appliedBody;
      this.appliedBody = body;
      this.record({ kind: 'applied', version });
      o.log.info({ version: version.toString() }, 'remote config applied');
      try {
        o.onApplied?.(body);
      } catch (err) {
        o.log.error({ err }, 'after-apply hook failed');
      }
      this.pruneModels(body, oldBody);
    } else {
      o.log.warn(
        { version: version.toString(), reason: verdict.reason },
        'remote config unhealthy: rolling back',
      );
      const back = planConfig(o.host.running(), previous);
      try {
        await o.host.apply(previous, back);
      } catch (err) {
        o.log.error({ err }, 'rollback failed');
      }
      o.journal.writeApplied({
        version: this.appliedVersion,
        highWater: this.highWater,
        body: this.appliedBody,
      });
      o.journal.dropPending();
      this.rejectedCount('health');
      this.record({ kind: 'rolled_back', version, reason: verdict.reason });
    }
    void this.report();
  }

  private async waitHealthy(target: AgentConfig, plan: ConfigPlan): Promise<HealthVerdict> {
    const deadline = Date.now() + this.o.healthTimeoutMs;
    let v = this.o.host.health(target, plan);
    while (!v.ok && !v.fatal && Date.now() < deadline && !this.stopped) {
      await new Promise((r) => setTimeout(r, 200));
      v = this.o.host.health(target, plan);
    }
    if (v.ok || v.fatal) return v;
    return { ok: false, reason: `health check failed after ${this.o.healthTimeoutMs / 1000}s: ${v.reason}` };
  }

  /** Deletes model files no longer referenced by the applied config or the one before (kept for rollback). */
  private pruneModels(now: DeviceConfig, before: DeviceConfig): void {
    const dir = join(this.o.bootstrap.dataDir, 'models');
    if (!existsSync(dir)) return;
    const keep = new Set([...now.models, ...before.models].map((m) => m.sha256));
    for (const f of readdirSync(dir))
      if (/^[0-9a-f]{64}$/.test(f) && !keep.has(f))
        rmSync(modelFilePath(this.o.bootstrap.dataDir, f), { force: true });
  }
}
