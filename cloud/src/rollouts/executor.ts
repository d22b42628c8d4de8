import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import type { AuditLog } from '../audit/audit-log.js';
import type { LeaderGate } from '../scheduler/lease.js';
import type { ConfigBody } from '../config-ota/body.js';
import type { DeviceConfigState, VersionedBody } from '../config-ota/issuer.js';
import type { ConfigKind, Database } from '../storage/tables.js';
import { whileHoldingLock } from '../storage/leader-lock.js';
import { PeriodicJob, type RunContext } from '../scheduler/periodic.js';
import {
  failureOf,
  outcomeOf,
  plan,
  type DeviceObservation,
  type Health,
  type PlannerAction,
  type RolloutSpec,
  type RolloutState,
} from './planner.js';
import { NO_KNOWN_GOOD, RESTORE_STATUS, restoreOf, restoreTarget } from './restore.js';
import { agentRestore, agentState, withAgent, type AgentTarget } from './agent.js';
import type { RolloutDeviceRow, RolloutRow, RolloutStore } from './store.js';

/** What the executor needs of config-ota's ConfigIssuer. */
export interface RolloutIssuer {
  issue(input: {
    tenantId: string;
    deviceIds: string[];
    body: ConfigBody;
    rolloutId?: string | undefined;
    kind?: ConfigKind | undefined;
    actor: string;
  }): Promise<Array<{ deviceId: string; version: bigint }>>;
  desiredAndReported(tenantId: string, deviceIds: string[]): Promise<DeviceConfigState[]>;
  effectiveConfigBody(tenantId: string, deviceId: string): Promise<ConfigBody | null>;
  /** What each device runs and its last known good config, with their bodies. */
  knownConfigs(
    tenantId: string,
    deviceIds: string[],
  ): Promise<{ applied: Map<string, VersionedBody>; good: Map<string, VersionedBody> }>;
  /** Makes these versions the devices' last known good (when newer). */
  promoteKnownGood(
    tenantId: string,
    rows: ReadonlyArray<{ deviceId: string; version: bigint }>,
  ): Promise<void>;
}

/** The PostgreSQL advisory lock key the rollout leader holds while it ticks ('vigil-rollouts'). */
export const ROLLOUT_LEADER_LOCK = BigInt('7601290244163952425');

export interface RolloutExecutorOptions {
  db: Kysely<Database>;
  store: RolloutStore;
  issuer: RolloutIssuer;
  audit: AuditLog;
  log: Logger;
  now?: (() => Date) | undefined;
  /** Tick period; default 1000 ms. */
  intervalMs?: number | undefined;
  /** Where the runner's metrics go (scheduler/periodic.ts); default a registry of its own. */
  metrics?: Registry | undefined;
  /**
   * The scheduler lease (scheduler/lease.ts): ticks only while this process leads, checked again before each
   * rollout's step. Without it, a transaction-held advisory lock (a single process or tests).
   */
  leader?: LeaderGate | undefined;
}

/**
 * Runs every active rollout: each tick (one cloud process at a time: the scheduler's lease, or an advisory lock,
 * through the shared runner scheduler/periodic.ts) reads the
 * devices' reported config state and heartbeat signals, asks the planner (rollouts/planner.ts) and executes its
 * actions through the ConfigIssuer.
 *
 * A rollback returns each device the rollout issued to (failed ones included) to its last known good config:
 * a new version (versions are monotonic) carrying that version's body. A device without a known good config
 * gets the body it ran when its wave was issued, if it ran a remote config then; otherwise it is left as it is
 * and reported `not_restored` (there is no body of its local bootstrap config to send). When a rollout
 * completes, the devices its gates passed get its version as their last known good.
 */
export class RolloutExecutor {
  private readonly job: PeriodicJob<void>;
  private readonly now: () => Date;
  private readonly log: Logger;

  constructor(private readonly opts: RolloutExecutorOptions) {
    this.now = opts.now ?? (() => new Date());
    this.log = opts.log.child({ component: 'rollouts' });
    this.job = new PeriodicJob(
      {
        name: 'rollouts',
        intervalMs: opts.intervalMs ?? 1000,
        leader: opts.leader,
        // Without the scheduler's lease (direct use): a transaction-held lock (storage/leader-lock.ts), which,
        // unlike a session lock, survives pgbouncer's transaction pooling.
        exclusive: (work) => whileHoldingLock(opts.db, ROLLOUT_LEADER_LOCK, work),
        log: this.log,
        metrics: opts.metrics ?? new Registry(),
      },
      (ctx) => this.tick(ctx),
    );
  }

  start(): void {
    this.job.start();
  }

  async stop(): Promise<void> {
    await this.job.stop();
  }

  /** One tick if this process leads (or gets the leader lock); false when it does not. */
  async tickAsLeader(): Promise<boolean> {
    return (await this.job.runOnce()).ran;
  }

  /** Advances every active rollout by one step. */
  async tick(ctx?: RunContext): Promise<void> {
    for (const r of await this.opts.store.active()) {
      // A stale leader (lease lapsed mid-tick) stops between steps: at most one step overlaps the new leader's.
      if (ctx && !ctx.live()) return;
      try {
        await this.step(r);
      } catch (err) {
        this.log.error({ err, rollout: r.id }, 'rollout step failed; retried on the next tick');
      }
    }
  }

  private async step(r: RolloutRow): Promise<void> {
    const spec = r.spec as unknown as RolloutSpec;
    const rows = await this.opts.store.devices(r.id);
    const now = this.now();
    const observations = await this.observe(r, rows, now);
    await this.recordStatuses(r, spec, rows, observations, now);
    const p = plan(
      {
        state: r.state as RolloutState,
        currentWave: r.current_wave,
        waveStartedAt: r.wave_started_at,
        spec,
        abortReason: r.abort_reason,
      },
      observations,
      now,
    );
    let state = r.state;
    for (const action of p.actions) {
      const ok = await this.execute(r, state, rows, observations, action, now);
      if (!ok) return; // the state changed under us (an operator): plan again next tick
      if (action.type === 'transition') state = action.to;
    }
  }

  private async observe(r: RolloutRow, rows: RolloutDeviceRow[], now: Date): Promise<DeviceObservation[]> {
    void now;
    const issued = rows.filter((d) => d.issued_version !== null);
    const ids = issued.map((d) => d.device_id);
    const [states, signals] = await Promise.all([
      ids.length > 0 ? this.opts.issuer.desiredAndReported(r.tenant_id, ids) : Promise.resolve([]),
      this.opts.store.signals(r.tenant_id, ids),
    ]);
    const stateOf = new Map(states.map((s) => [s.deviceId, s]));
    const signalOf = new Map(signals.map((s) => [s.id, s]));
    return rows.map((d): DeviceObservation => {
      if (d.issued_version === null)
        return {
          deviceId: d.device_id,
          wave: null,
          issuedAt: null,
          state: 'unknown',
          health: 'unknown',
          signalled: false,
          restore: 'none',
        };
      const v = BigInt(d.issued_version);
      const s = stateOf.get(d.device_id);
      const sig = signalOf.get(d.device_id);
      let state: DeviceObservation['state'] = 'pending';
      let detail: string | undefined;
      if (s) {
        if (s.reportedVersion === v && (s.state === 'failed' || s.state === 'rolled_back')) {
          state = s.state;
          detail = s.reason || undefined;
        } else if (s.appliedVersion !== null && s.appliedVersion >= v) state = 'applied';
      }
      const agent = agentOf(r);
      // An agent rollout: applying the config only asks the updater; the device took it when it runs the
      // version (rollouts/agent.ts). A config it refused still fails it.
      if (agent && state !== 'failed' && state !== 'rolled_back')
        ({ state, detail } = agentState(sig, agent.version, d.issued_at));
      let restore = restoreOf(d, s);
      if (agent) restore = agentRestore(restore, sig, d.previous_agent_version, null);
      // Evidence: a heartbeat the device sent while it ran this version (its config_version says so), not one
      // sent before the apply. The agent heartbeats on its own period, so this may take one period.
      const fresh = sig?.config_version != null && BigInt(sig.config_version) >= v;
      let health: Health = s?.health ?? 'unknown';
      if (fresh && sig.last_health !== null && worse(sig.last_health as Health, health))
        health = sig.last_health as Health;
      return {
        deviceId: d.device_id,
        wave: d.wave,
        issuedAt: d.issued_at,
        state,
        detail,
        health,
        fps: fresh && sig.mean_fps !== null ? sig.mean_fps : undefined,
        baselineFps: d.baseline_fps ?? undefined,
        inferenceMs: fresh && sig.mean_inference_ms !== null ? sig.mean_inference_ms : undefined,
        baselineInferenceMs: d.baseline_inference_ms ?? undefined,
        eventRate: fresh && sig.events_per_minute !== null ? sig.events_per_minute : undefined,
        signalled: fresh,
        restore,
      };
    });
  }

  private async recordStatuses(
    r: RolloutRow,
    spec: RolloutSpec,
    rows: RolloutDeviceRow[],
    obs: DeviceObservation[],
    now: Date,
  ): Promise<void> {
    const changed: Array<{ deviceId: string; status: string; reason: string | null }> = [];
    obs.forEach((o, i) => {
      const row = rows[i];
      if (!row || o.wave === null) return;
      let status: string;
      let reason: string | null;
      if (o.restore !== 'none') {
        // After the rollback: whether the device runs its restored config (the rollout-time reason is kept).
        status = RESTORE_STATUS[o.restore];
        reason = o.restore === 'not_restored' ? NO_KNOWN_GOOD : row.reason;
      } else {
        status = outcomeOf(spec, o, now);
        reason = failureOf(spec, o, now);
      }
      if (status !== row.status || reason !== row.reason) {
        changed.push({ deviceId: o.deviceId, status, reason });
        row.status = status;
        row.reason = reason;
      }
    });
    if (changed.length > 0) await this.opts.store.recordStatus(r.id, changed);
  }

  private async execute(
    r: RolloutRow,
    from: string,
    rows: RolloutDeviceRow[],
    obs: DeviceObservation[],
    action: PlannerAction,
    now: Date,
  ): Promise<boolean> {
    const actor = `rollout:${r.id}`;
    switch (action.type) {
      case 'transition': {
        const ok = await this.opts.store.transition(r.id, from, action.to, now, {
          wave: action.wave,
          reason: action.reason,
        });
        if (!ok) return false;
        if (action.to === 'completed') await this.promotePassed(r, rows, obs, now);
        this.log.info(
          { rollout: r.id, from, to: action.to, wave: action.wave, reason: action.reason },
          'rollout',
        );
        if (action.to === 'aborted' || action.to === 'completed' || action.to === 'rolled_back')
          await this.opts.audit.append({
            tenantId: r.tenant_id,
            actor,
            actorKind: 'service',
            action: action.to === 'aborted' ? 'rollout.auto_abort' : `rollout.${action.to}`,
            resource: `rollout:${r.tenant_id}/${r.id}`,
            outcome: 'allowed',
            detail: { from, reason: action.reason ?? null, wave: r.current_wave },
          });
        return true;
      }
      case 'issue': {
        if (action.deviceIds.length === 0) return true;
        // What each device runs now: the fallback restore if it has no known good config at rollback time
        // (unless it is another rollout's version that never completed: an aborted rollout's body is no
        // restore target).
        const applied = new Map(
          [...(await this.opts.issuer.knownConfigs(r.tenant_id, action.deviceIds)).applied].filter(
            ([, a]) => a.probation !== true,
          ),
        );
        // Pre-rollout baselines: the devices' last heartbeat signals before the issue.
        const signals = new Map(
          (await this.opts.store.signals(r.tenant_id, action.deviceIds)).map((s) => [s.id, s]),
        );
        // One issue call per distinct body (a body snapshot: one call; effective documents: by device).
        const groups = new Map<string, { body: ConfigBody; ids: string[] }>();
        const agent = agentOf(r);
        // An agent rollout keeps what each device runs and adds the agent section (rollouts/agent.ts).
        const runs = agent
          ? (await this.opts.issuer.knownConfigs(r.tenant_id, action.deviceIds)).applied
          : null;
        for (const id of action.deviceIds) {
          let body: ConfigBody | null;
          if (agent) {
            const base = runs?.get(id)?.body ?? (await this.opts.issuer.effectiveConfigBody(r.tenant_id, id));
            body = base === null ? null : withAgent(base, agent, r.id);
            if (body === null)
              this.log.warn(
                { rollout: r.id, device: id },
                'no config to carry the agent version: not issued',
              );
          } else body = r.body ?? (await this.opts.issuer.effectiveConfigBody(r.tenant_id, id));
          if (body === null) continue;
          const key = JSON.stringify(body);
          const g = groups.get(key) ?? { body, ids: [] };
          g.ids.push(id);
          groups.set(key, g);
        }
        for (const g of groups.values()) {
          const issued = await this.opts.issuer.issue({
            tenantId: r.tenant_id,
            deviceIds: g.ids,
            body: g.body,
            rolloutId: r.id,
            actor,
          });
          await this.opts.store.markIssued(
            r.id,
            action.wave,
            now,
            issued.map((i) => ({
              deviceId: i.deviceId,
              previousBody: agent
                ? (() => {
                    // What the device ran, without the agent section this rollout added.
                    const { agent: _added, ...base } = g.body;
                    void _added;
                    return base;
                  })()
                : (applied.get(i.deviceId)?.body ?? null),
              previousVersion: applied.get(i.deviceId)?.version ?? null,
              issuedVersion: i.version,
              baselineFps: signals.get(i.deviceId)?.mean_fps ?? null,
              baselineInferenceMs: signals.get(i.deviceId)?.mean_inference_ms ?? null,
              previousAgentVersion: signals.get(i.deviceId)?.agent_version ?? null,
            })),
          );
        }
        if (r.current_wave !== action.wave)
          await this.opts.db
            .updateTable('rollouts')
            .set({ current_wave: action.wave, wave_started_at: now, updated_at: now })
            .where('id', '=', r.id)
            .where('current_wave', '<', action.wave)
            .execute();
        this.log.info({ rollout: r.id, wave: action.wave, devices: action.deviceIds.length }, 'wave issued');
        return true;
      }
      case 'rollback': {
        if (action.deviceIds.length === 0) return true;
        const byId = new Map(rows.map((d) => [d.device_id, d]));
        const { good } = await this.opts.issuer.knownConfigs(r.tenant_id, action.deviceIds);
        const groups = new Map<string, { body: ConfigBody; ids: string[] }>();
        const from = new Map<string, { version: bigint; source: 'last_known_good' | 'ran_before' }>();
        const nothing: string[] = [];
        const agent = agentOf(r);
        for (const id of action.deviceIds) {
          const row = byId.get(id);
          let target = restoreTarget(good.get(id), row);
          // An agent rollout keeps the config the device ran (previous_body): without a known good config, that.
          if (!target && agent && row?.previous_body != null && row.issued_version !== null)
            target = {
              body: row.previous_body,
              version: BigInt(row.previous_version ?? row.issued_version),
              source: 'ran_before',
            };
          const previousAgent = byId.get(id)?.previous_agent_version ?? null;
          // An agent rollout returns the device to the agent version it ran when its wave was issued.
          if (!target || (agent && previousAgent === null)) {
            nothing.push(id);
            continue;
          }
          from.set(id, { version: target.version, source: target.source });
          const body: ConfigBody =
            agent && previousAgent !== null
              ? withAgent(target.body, { version: previousAgent, channel: agent.channel }, r.id)
              : target.body;
          const key = JSON.stringify(body);
          const g = groups.get(key) ?? { body, ids: [] };
          g.ids.push(id);
          groups.set(key, g);
        }
        for (const g of groups.values()) {
          const issued = await this.opts.issuer.issue({
            tenantId: r.tenant_id,
            deviceIds: g.ids,
            body: g.body,
            rolloutId: r.id,
            kind: 'rollback',
            actor,
          });
          await this.opts.store.markRolledBack(
            r.id,
            issued.map((i) => ({
              deviceId: i.deviceId,
              version: i.version,
              fromVersion: from.get(i.deviceId)!.version,
              source: from.get(i.deviceId)!.source,
            })),
          );
        }
        if (nothing.length > 0) {
          await this.opts.store.markNotRestored(r.id, nothing, NO_KNOWN_GOOD);
          this.log.warn(
            { rollout: r.id, devices: nothing.length, first: nothing.slice(0, 10) },
            'devices without a known good config were left as they are',
          );
        }
        this.log.info(
          {
            rollout: r.id,
            devices: action.deviceIds.length,
            restored: from.size,
            not_restored: nothing.length,
          },
          'rolled back',
        );
        return true;
      }
    }
  }

  /** At completion: the devices the gates passed get the rollout's version as their last known good. */
  private async promotePassed(
    r: RolloutRow,
    rows: RolloutDeviceRow[],
    obs: DeviceObservation[],
    now: Date,
  ): Promise<void> {
    const spec = r.spec as unknown as RolloutSpec;
    const passed: Array<{ deviceId: string; version: bigint }> = [];
    obs.forEach((o, i) => {
      const v = rows[i]?.issued_version;
      if (v != null && o.restore === 'none' && outcomeOf(spec, o, now) === 'applied')
        passed.push({ deviceId: o.deviceId, version: BigInt(v) });
    });
    await this.opts.issuer.promoteKnownGood(r.tenant_id, passed);
  }
}

/** The agent version an agent-version rollout moves devices to; null for a config rollout. */
function agentOf(r: RolloutRow): AgentTarget | null {
  return r.agent_version !== null && r.agent_channel !== null
    ? { version: r.agent_version, channel: r.agent_channel }
    : null;
}

const RANK: Readonly<Record<Health, number>> = { unknown: 0, ok: 1, degraded: 2, failing: 3 };
function worse(a: Health, b: Health): boolean {
  return (RANK[a] ?? 0) > (RANK[b] ?? 0);
}
