import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { VigilError } from '../lib/errors.js';
import type { Database } from '../storage/tables.js';

/** What scheduled work asks before each pass: is this process the leader right now? */
export interface LeaderGate {
  isLeader(): boolean;
  /** The fencing token of the current term while leader, else undefined. */
  fencingToken(): bigint | undefined;
}

/** A lease operation failed (database unreachable, statement timeout): the elector retries on its next tick. */
export class LeaseError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('LEASE_UNAVAILABLE', message, true, options);
  }
}

export interface LeaseTerm {
  holder: string;
  token: bigint;
}

/**
 * The lease row's SQL. One statement each, race-safe (the row lock of the upsert serializes contenders), and
 * judged by the database clock (`now()`), the only clock every cloud process shares: a process with a skewed
 * clock can neither steal a live lease nor keep an expired one.
 */
export class LeaseStore {
  constructor(private readonly db: Kysely<Database>) {}

  /**
   * Takes the lease when it is free or expired, or renews it when `holder` has it. The token stays the same
   * across renewals of a live lease and grows by one otherwise (a new holder, or a holder whose lease lapsed:
   * someone else may have held it meanwhile). Returns the term, or null when another holder's lease is live.
   */
  async acquire(name: string, holder: string, ttlMs: number): Promise<LeaseTerm | null> {
    const ttl = sql`make_interval(secs => ${ttlMs / 1000})`;
    const { rows } = await sql<{ holder: string; token: string }>`
      insert into scheduler_leases as l (name, holder, token, acquired_at, renewed_at, expires_at)
      values (${name}, ${holder}, 1, now(), now(), now() + ${ttl})
      on conflict (name) do update set
        holder = excluded.holder,
        token = case when l.holder = excluded.holder and l.expires_at > now() then l.token else l.token + 1 end,
        acquired_at = case when l.holder = excluded.holder and l.expires_at > now() then l.acquired_at else now() end,
        renewed_at = now(),
        expires_at = excluded.expires_at
      where l.holder = excluded.holder or l.expires_at <= now()
      returning l.holder, l.token`.execute(this.db);
    const row = rows[0];
    return row ? { holder: row.holder, token: BigInt(row.token) } : null;
  }

  /** Ends `holder`'s term now (a clean stop), so that a standby takes over at its next tick, not after the ttl. */
  async release(name: string, holder: string, token: bigint): Promise<boolean> {
    const r = await sql`
      update scheduler_leases set expires_at = now()
      where name = ${name} and holder = ${holder} and token = ${token} and expires_at > now()`.execute(
      this.db,
    );
    return (r.numAffectedRows ?? 0n) > 0n;
  }

  /** The current row (for /readyz, tests and operators), expired or not. */
  async current(
    name: string,
  ): Promise<{ holder: string; token: bigint; expiresAt: Date; live: boolean } | undefined> {
    const { rows } = await sql<{ holder: string; token: string; expires_at: Date; live: boolean }>`
      select holder, token, expires_at, expires_at > now() as live from scheduler_leases where name = ${name}`.execute(
      this.db,
    );
    const r = rows[0];
    return r
      ? { holder: r.holder, token: BigInt(r.token), expiresAt: r.expires_at, live: r.live }
      : undefined;
  }
}

export interface LeaderLeaseOptions {
  db: Kysely<Database>;
  /** Lease name: one leader per name (`scheduler`). */
  name: string;
  ttlMs: number;
  /** How often the leader renews and a standby tries to take over; must be well under ttlMs. */
  renewMs: number;
  log: Logger;
  metrics: Registry;
  /** Default `<hostname>/<pid>/<random>`: unique per process start (a restarted process is a new holder). */
  holder?: string;
  /** Monotonic milliseconds (default performance.now): a wall-clock jump must not extend a term. */
  monotonic?: () => number;
  onChange?: (leader: boolean, token: bigint | undefined) => void;
}

/**
 * Leader election over a PostgreSQL lease row (scheduler_leases, migration 0024). Every `renewMs` the leader
 * renews and each standby tries to take over; a holder that dies (kill -9) stops renewing, its row expires
 * `ttlMs` after its last renewal, and the next standby tick takes it with the token + 1.
 *
 * The leader counts itself leader only until `ttlMs - ttlMs/10` after it *sent* its last successful renewal
 * (monotonic clock): the row's expiry was set from a later instant on the database, so the process steps down
 * before anyone can take over, even when it cannot reach the database to learn that it lost the lease.
 */
export class LeaderLease implements LeaderGate {
  readonly holder: string;
  private readonly store: LeaseStore;
  private readonly monotonic: () => number;
  private term: LeaseTerm | undefined;
  private validUntil = -Infinity;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private lastError: string | undefined;
  private lastAttemptOk = false;
  private readonly transitions: Counter<'to'>;
  private readonly errors: Counter;
  private readonly isLeaderGauge: Gauge;

  constructor(private readonly opts: LeaderLeaseOptions) {
    if (!(opts.renewMs > 0 && opts.renewMs * 2 < opts.ttlMs))
      throw new LeaseError(
        `renewMs (${opts.renewMs}) must be positive and under half of ttlMs (${opts.ttlMs})`,
      );
    this.holder = opts.holder ?? `${hostname()}/${process.pid}/${randomBytes(4).toString('hex')}`;
    this.store = new LeaseStore(opts.db);
    this.monotonic = opts.monotonic ?? (() => performance.now());
    this.transitions = new Counter({
      name: 'vigil_cloud_scheduler_leader_transitions_total',
      help: 'This process becoming leader (to="leader") or stepping down (to="standby") of a lease',
      labelNames: ['to'],
      registers: [opts.metrics],
    });
    this.errors = new Counter({
      name: 'vigil_cloud_scheduler_lease_errors_total',
      help: 'Lease acquire/renew attempts that failed (the database did not answer)',
      registers: [opts.metrics],
    });
    this.isLeaderGauge = new Gauge({
      name: 'vigil_cloud_scheduler_leader',
      help: '1 while this process holds the scheduler lease',
      registers: [opts.metrics],
      collect: () => this.isLeaderGauge.set(this.isLeader() ? 1 : 0),
    });
  }

  isLeader(): boolean {
    return this.term !== undefined && this.monotonic() < this.validUntil;
  }

  fencingToken(): bigint | undefined {
    return this.isLeader() ? this.term?.token : undefined;
  }

  /** For /readyz: the last attempt reached the database (leader or standby, both are healthy). */
  status(): { leader: boolean; holder: string; token: string | undefined; ok: boolean; error?: string } {
    return {
      leader: this.isLeader(),
      holder: this.holder,
      token: this.fencingToken()?.toString(),
      ok: this.lastAttemptOk,
      ...(this.lastError ? { error: this.lastError } : {}),
    };
  }

  /** One attempt now (awaited: a lone process leads from its first second), then one every renewMs. */
  async start(): Promise<void> {
    await this.tick();
    const loop = (): void => {
      if (this.stopped) return;
      this.running = this.tick().finally(() => {
        if (!this.stopped) this.timer = setTimeout(loop, this.opts.renewMs);
      });
    };
    this.timer = setTimeout(loop, this.opts.renewMs);
  }

  /** Stops renewing and releases a held lease so that a standby takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    const term = this.term;
    if (term && this.isLeader())
      await this.store
        .release(this.opts.name, this.holder, term.token)
        .catch((err: unknown) =>
          this.opts.log.warn({ err, lease: this.opts.name }, 'lease release failed; it expires on its own'),
        );
    this.setTerm(undefined, -Infinity);
  }

  /** One acquire-or-renew attempt. Never throws. */
  async tick(): Promise<void> {
    const sentAt = this.monotonic();
    try {
      const term = await this.store.acquire(this.opts.name, this.holder, this.opts.ttlMs);
      this.lastAttemptOk = true;
      this.lastError = undefined;
      if (this.stopped) return;
      this.setTerm(term ?? undefined, term ? sentAt + this.opts.ttlMs - this.opts.ttlMs / 10 : -Infinity);
    } catch (err) {
      this.lastAttemptOk = false;
      this.lastError = (err as Error).message;
      this.errors.inc();
      // Still leader until validUntil: a database blip shorter than the ttl costs nothing.
      this.opts.log.warn({ err, lease: this.opts.name, leader: this.isLeader() }, 'lease renewal failed');
      if (!this.isLeader()) this.setTerm(undefined, -Infinity);
    }
  }

  private setTerm(term: LeaseTerm | undefined, validUntil: number): void {
    const was = this.term?.token;
    this.term = term;
    this.validUntil = validUntil;
    const now = term?.token;
    if (was === now) return;
    if (now !== undefined) {
      this.transitions.inc({ to: 'leader' });
      this.opts.log.info(
        { lease: this.opts.name, holder: this.holder, token: String(now) },
        'lease acquired: leader',
      );
    } else {
      this.transitions.inc({ to: 'standby' });
      this.opts.log.info({ lease: this.opts.name, holder: this.holder }, 'lease lost or released: standby');
    }
    this.opts.onChange?.(now !== undefined, now);
  }
}
