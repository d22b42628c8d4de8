import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Database } from './tables.js';

export interface ReplicaReadsOptions {
  primary: Kysely<Database>;
  replica: Kysely<Database>;
  /** Config database.replicaMaxLagSeconds: the staleness bound of a read served by the replica. */
  maxLagSeconds: number;
  /** Config database.replicaLagCheckIntervalMs. */
  checkIntervalMs: number;
  log: Logger;
  metrics: Registry;
  now?: () => Date;
}

/** One measurement: how far behind the primary the replica was when it was taken. */
export interface LagSample {
  /** Seconds; 0 when the replica had replayed everything the primary had written; null: unknown. */
  lagSeconds: number | null;
  /** Cloud clock time of the measurement. */
  at: Date;
  /** Why the replica cannot be used at all (unreachable, not a standby), if so. */
  error?: string;
}

export type ReadTarget = 'replica' | 'primary';

/** Runs a read-heavy query on the replica when it is fresh enough, else on the primary (ReplicaReads.read). */
export type ReadHeavy = <T>(query: (db: Kysely<Database>) => Promise<T>) => Promise<T>;

/**
 * Routes read-heavy API queries (events and devices lists) to a streaming replica while it is fresh enough.
 *
 * The lag is measured every checkIntervalMs: the primary's current WAL position first, then on the replica
 * whether its replayed position has reached it (lag 0: it holds every transaction committed before the
 * measurement) and, if not, now() - pg_last_xact_replay_timestamp() (the replica reflects the primary as of
 * its last replayed commit). A replay timestamp alone would call an idle primary's up-to-date replica stale.
 * Lag only grows between measurements by the time elapsed, so a read goes to the replica only while
 * `measured lag + time since the measurement <= maxLagSeconds`: the stated staleness bound holds for every
 * replica read, and anything else (lagging, unmeasured, unreachable, a promoted or misconfigured server) reads
 * the primary. Reads that must see the caller's own writes never come here.
 */
export class ReplicaReads {
  private sample: LagSample | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private readonly now: () => Date;
  private readonly reads: Counter<'target' | 'reason'>;
  private readonly lag: Gauge;

  constructor(private readonly opts: ReplicaReadsOptions) {
    this.now = opts.now ?? (() => new Date());
    this.reads = new Counter({
      name: 'vigil_cloud_db_replica_reads_total',
      help: 'Read-heavy API queries by where they went: target="replica", or "primary" with the reason the replica was not used (lagging, unmeasured, unavailable)',
      labelNames: ['target', 'reason'],
      registers: [opts.metrics],
    });
    this.lag = new Gauge({
      name: 'vigil_cloud_db_replica_lag_seconds',
      help: 'The streaming replica lag at the last measurement (-1: unknown or unreachable)',
      registers: [opts.metrics],
    });
    this.lag.set(-1);
  }

  start(): void {
    const loop = (): void => {
      if (this.stopped) return;
      this.running = this.measure()
        .then(() => undefined)
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(loop, this.opts.checkIntervalMs);
        });
    };
    loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** Measures the lag now (also what the periodic check runs). Never throws. */
  async measure(): Promise<LagSample> {
    const at = this.now();
    try {
      const primary = await sql<{ lsn: string }>`select pg_current_wal_lsn()::text as lsn`.execute(
        this.opts.primary,
      );
      const lsn = primary.rows[0]!.lsn;
      const { rows } = await sql<{ standby: boolean; caught_up: boolean | null; lag: number | null }>`
        select pg_is_in_recovery() as standby,
               pg_last_wal_replay_lsn() >= ${lsn}::pg_lsn as caught_up,
               extract(epoch from now() - pg_last_xact_replay_timestamp())::float8 as lag`.execute(
        this.opts.replica,
      );
      const r = rows[0]!;
      this.sample = !r.standby
        ? { lagSeconds: null, at, error: 'not a standby (pg_is_in_recovery() is false)' }
        : { lagSeconds: r.caught_up ? 0 : r.lag === null ? null : Math.max(0, Number(r.lag)), at };
    } catch (err) {
      this.sample = { lagSeconds: null, at, error: (err as Error).message };
    }
    if (this.sample.error)
      this.opts.log.warn({ err: this.sample.error }, 'replica not usable; reading the primary');
    this.lag.set(this.sample.lagSeconds ?? -1);
    return this.sample;
  }

  /** Where a read made now goes, and why. */
  target(): { target: ReadTarget; reason: string } {
    const s = this.sample;
    if (!s) return { target: 'primary', reason: 'unmeasured' };
    if (s.error !== undefined) return { target: 'primary', reason: 'unavailable' };
    if (s.lagSeconds === null) return { target: 'primary', reason: 'unmeasured' };
    const age = Math.max(0, (this.now().getTime() - s.at.getTime()) / 1000);
    return s.lagSeconds + age <= this.opts.maxLagSeconds
      ? { target: 'replica', reason: 'fresh' }
      : { target: 'primary', reason: 'lagging' };
  }

  /**
   * Runs a read-heavy query where target() says (counted). A query that fails on the replica (it went away
   * between two measurements) runs again on the primary, and the replica is not used until the next
   * measurement finds it well.
   */
  async read<T>(query: (db: Kysely<Database>) => Promise<T>): Promise<T> {
    const { target, reason } = this.target();
    if (target === 'primary') {
      this.reads.inc({ target, reason });
      return query(this.opts.primary);
    }
    try {
      const result = await query(this.opts.replica);
      this.reads.inc({ target, reason });
      return result;
    } catch (err) {
      this.sample = { lagSeconds: null, at: this.now(), error: (err as Error).message };
      this.opts.log.warn({ err }, 'replica read failed; reading the primary');
      this.reads.inc({ target: 'primary', reason: 'unavailable' });
      return query(this.opts.primary);
    }
  }
}
