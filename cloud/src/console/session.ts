import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Principal } from '../auth/principal.js';

/**
 * Console sessions, held in this process's memory (bounded: the oldest goes first past `maxSessions`). The
 * cookie carries a random 256-bit id only; the principal and the CSRF token stay here. A restart logs every
 * user out, and behind a load balancer a session lives on one process: sticky routing or one console process
 * (a shared store is future work, said in the README).
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

/** Constant-time comparison of two tokens (different lengths are simply unequal). */
export function sameToken(a: string, b: string): boolean {
  const x = createHash('sha256').update(a).digest();
  const y = createHash('sha256').update(b).digest();
  return timingSafeEqual(x, y) && a.length === b.length;
}

/** How long the browser may take at the identity provider. */
export const LOGIN_TTL_MS = 10 * 60_000;

export class SessionStore {
  /** Insertion order = age: Map iteration gives the oldest first. */
  private readonly sessions = new Map<string, Session>();
  private readonly pending = new Map<string, PendingLogin>();

  constructor(
    private readonly opts: { ttlMs: number; maxSessions: number; maxPending: number },
    private readonly now: () => number,
  ) {}

  create(principal: Principal, idToken: string | undefined): Session {
    this.sweep();
    while (this.sessions.size >= this.opts.maxSessions) {
      const oldest = this.sessions.keys().next().value;
      if (oldest === undefined) break;
      this.sessions.delete(oldest);
    }
    const at = this.now();
    const s: Session = {
      id: token(),
      principal,
      csrf: token(),
      createdAt: at,
      expiresAt: at + this.opts.ttlMs,
      idToken,
    };
    this.sessions.set(s.id, s);
    return s;
  }

  /** The live session with this id, or undefined (unknown, expired: an expired one is forgotten). */
  get(id: string | undefined): Session | undefined {
    if (id === undefined || id.length > 64) return undefined;
    const s = this.sessions.get(id);
    if (s === undefined) return undefined;
    if (s.expiresAt <= this.now()) {
      this.sessions.delete(id);
      return undefined;
    }
    return s;
  }

  delete(id: string): void {
    this.sessions.delete(id);
  }

  get size(): number {
    return this.sessions.size;
  }

  beginLogin(returnTo: string): PendingLogin {
    for (const [k, p] of this.pending) if (p.expiresAt <= this.now()) this.pending.delete(k);
    while (this.pending.size >= this.opts.maxPending) {
      const oldest = this.pending.keys().next().value;
      if (oldest === undefined) break;
      this.pending.delete(oldest);
    }
    const p: PendingLogin = {
      state: token(),
      nonce: token(),
      verifier: token(),
      returnTo,
      expiresAt: this.now() + LOGIN_TTL_MS,
    };
    this.pending.set(p.state, p);
    return p;
  }

  /** Takes (once) the login whose state this is; undefined when unknown or expired. */
  takeLogin(state: string | undefined): PendingLogin | undefined {
    if (state === undefined || state.length > 64) return undefined;
    const p = this.pending.get(state);
    this.pending.delete(state);
    return p && p.expiresAt > this.now() ? p : undefined;
  }

  private sweep(): void {
    const at = this.now();
    for (const [k, s] of this.sessions) if (s.expiresAt <= at) this.sessions.delete(k);
  }
}
