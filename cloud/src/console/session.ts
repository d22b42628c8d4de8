import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Principal } from '../auth/principal.js';
import type { Database } from '../storage/tables.js';

/**
 * Console sessions and logins in flight, in PostgreSQL (tables console_sessions, console_logins: 0030), so
 * that every API process behind a load balancer serves every login: a login begun on one process finishes on
 * another, and a session made on one is used on all. The cookie carries a random 256-bit id only; the table
 * holds its SHA-256 (a database read or backup yields no usable cookie), the principal, the CSRF token and the
 * expiry. Expired rows are deleted when met and at every login; logout deletes; a user keeps at most
 * `maxPerUser` sessions (the oldest deleted first), and all users at most `maxSessions`.
 */
export interface Session {
  readonly id: string;
  readonly principal: Principal;
  /** Synchronizer token of every form of this session (CSRF); never in a cookie. */
  readonly csrf: string;
  readonly createdAt: number;
  readonly expiresAt: number;
  /** The provider's ID token, for RP-initiated logout (never sent to the browser). */
  readonly idToken: string | undefined;
}

/** A login in flight: what the callback must match (state) and prove (PKCE verifier, nonce). */
export interface PendingLogin {
  readonly state: string;
  readonly nonce: string;
  readonly verifier: string;
  readonly returnTo: string;
  readonly expiresAt: number;
}

const token = (): string => randomBytes(32).toString('base64url');
/** What the table keys a cookie id or a login state by. */
export const tokenHash = (t: string): string => createHash('sha256').update(t).digest('hex');

/** Constant-time comparison of two tokens (different lengths are simply unequal). */
export function sameToken(a: string, b: string): boolean {
  const x = createHash('sha256').update(a).digest();
  const y = createHash('sha256').update(b).digest();
  return timingSafeEqual(x, y) && a.length === b.length;
}

/** How long the browser may take at the identity provider. */
export const LOGIN_TTL_MS = 10 * 60_000;

/** Our tokens are 43 characters (256 bits, base64url); anything longer is not looked up. */
const MAX_TOKEN_LENGTH = 64;

export interface SessionStoreOptions {
  ttlMs: number;
  /** Sessions of all users together; past it the oldest go first. */
  maxSessions: number;
  /** Sessions of one user (tenant and subject); past it that user's oldest go first. */
  maxPerUser: number;
  /** Logins in flight; past it the oldest go first. */
  maxPending: number;
}

export class SessionStore {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly opts: SessionStoreOptions,
    private readonly now: () => number,
  ) {}

  async create(principal: Principal, idToken: string | undefined): Promise<Session> {
    const at = this.now();
    const s: Session = {
      id: token(),
      principal,
      csrf: token(),
      createdAt: at,
      expiresAt: at + this.opts.ttlMs,
      idToken,
    };
    await this.db.transaction().execute(async (tx) => {
      await tx.deleteFrom('console_sessions').where('expires_at', '<=', new Date(at)).execute();
      await tx
        .insertInto('console_sessions')
        .values({
          id_hash: tokenHash(s.id),
          tenant_id: principal.tenant,
          subject: principal.subject,
          principal: JSON.stringify(principal),
          csrf: s.csrf,
          id_token: idToken ?? null,
          created_at: new Date(at),
          expires_at: new Date(s.expiresAt),
        })
        .execute();
      // This user's oldest beyond the bound (the (tenant_id, subject, created_at) index), then everyone's.
      await tx
        .deleteFrom('console_sessions')
        .where('id_hash', 'in', (eb) =>
          eb
            .selectFrom('console_sessions')
            .select('id_hash')
            .where('tenant_id', '=', principal.tenant)
            .where('subject', '=', principal.subject)
            .orderBy('created_at', 'desc')
            .orderBy('id_hash')
            .offset(this.opts.maxPerUser),
        )
        .execute();
      await tx
        .deleteFrom('console_sessions')
        .where('id_hash', 'in', (eb) =>
          eb
            .selectFrom('console_sessions')
            .select('id_hash')
            .orderBy('created_at', 'desc')
            .orderBy('id_hash')
            .offset(this.opts.maxSessions),
        )
        .execute();
    });
    return s;
  }

  /** The live session with this id, or undefined (unknown, expired: an expired one is deleted). */
  async get(id: string | undefined): Promise<Session | undefined> {
    if (id === undefined || id.length > MAX_TOKEN_LENGTH) return undefined;
    const hash = tokenHash(id);
    const row = await this.db
      .selectFrom('console_sessions')
      .selectAll()
      .where('id_hash', '=', hash)
      .executeTakeFirst();
    if (row === undefined) return undefined;
    if (row.expires_at.getTime() <= this.now()) {
      await this.db.deleteFrom('console_sessions').where('id_hash', '=', hash).execute();
      return undefined;
    }
    return {
      id,
      principal: row.principal as Principal,
      csrf: row.csrf,
      createdAt: row.created_at.getTime(),
      expiresAt: row.expires_at.getTime(),
      idToken: row.id_token ?? undefined,
    };
  }

  async delete(id: string): Promise<void> {
    await this.db.deleteFrom('console_sessions').where('id_hash', '=', tokenHash(id)).execute();
  }

  /** Sessions of one user (tests, the bound). */
  async countFor(tenant: string, subject: string): Promise<number> {
    const r = await this.db
      .selectFrom('console_sessions')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('tenant_id', '=', tenant)
      .where('subject', '=', subject)
      .executeTakeFirstOrThrow();
    return Number(r.n);
  }

  async beginLogin(returnTo: string): Promise<PendingLogin> {
    const at = this.now();
    const p: PendingLogin = {
      state: token(),
      nonce: token(),
      verifier: token(),
      returnTo,
      expiresAt: at + LOGIN_TTL_MS,
    };
    await this.db.transaction().execute(async (tx) => {
      await tx.deleteFrom('console_logins').where('expires_at', '<=', new Date(at)).execute();
      await tx
        .insertInto('console_logins')
        .values({
          state_hash: tokenHash(p.state),
          nonce: p.nonce,
          verifier: p.verifier,
          return_to: returnTo,
          expires_at: new Date(p.expiresAt),
        })
        .execute();
      await tx
        .deleteFrom('console_logins')
        .where('state_hash', 'in', (eb) =>
          eb
            .selectFrom('console_logins')
            .select('state_hash')
            .orderBy('expires_at', 'desc')
            .orderBy('state_hash')
            .offset(this.opts.maxPending),
        )
        .execute();
    });
    return p;
  }

  /** Takes (once: the row is deleted) the login whose state this is; undefined when unknown or expired. */
  async takeLogin(state: string | undefined): Promise<PendingLogin | undefined> {
    if (state === undefined || state.length > MAX_TOKEN_LENGTH) return undefined;
    const row = await this.db
      .deleteFrom('console_logins')
      .where('state_hash', '=', tokenHash(state))
      .returningAll()
      .executeTakeFirst();
    if (row === undefined || row.expires_at.getTime() <= this.now()) return undefined;
    return {
      state,
      nonce: row.nonce,
      verifier: row.verifier,
      returnTo: row.return_to,
      expiresAt: row.expires_at.getTime(),
    };
  }
}
