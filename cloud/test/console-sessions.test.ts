// Console sessions in PostgreSQL (console/session.ts, migration 0030): what two API processes share. Real
// PostgreSQL, an injected clock; two stores on one database stand for two processes here (the browser test
// logs in through one cloud and uses the session on another).
import { useDatabase } from '@vigil/testkit';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb } from '../src/index.js';
import { LOGIN_TTL_MS, SessionStore, tokenHash } from '../src/console/session.js';
import { migrateToLatest } from '../src/storage/migrate.js';
import type { Database } from '../src/storage/tables.js';

describe('console sessions (PostgreSQL, injected clock)', () => {
  const dbUrl = useDatabase();
  let db: Kysely<Database>;
  beforeAll(async () => {
    db = createDb(dbUrl(), 4);
    await migrateToLatest(db as Kysely<unknown>);
  });
  afterAll(async () => {
    await db?.destroy();
  });
  let now = 1_000_000_000_000;
  const clock = () => now;
  const opts = { ttlMs: 60_000, maxSessions: 100, maxPerUser: 2, maxPending: 2 };
  const user = (subject: string, tenant = 't1') => ({ subject, tenant, roles: ['viewer'], sites: ['hq'] });

  it('are shared between stores, expire at their TTL (deleted), and are deleted by logout', async () => {
    const a = new SessionStore(db, opts, clock);
    const b = new SessionStore(db, opts, clock);
    const s = await a.create(user('u1'), 'id-token');
    expect(s.id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(s.csrf).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(s.csrf).not.toBe(s.id);
    // Process B reads what process A wrote: principal, CSRF token, expiry.
    expect(await b.get(s.id)).toEqual(s);
    // The table holds the id's hash, never the id.
    const rows = await db
      .selectFrom('console_sessions')
      .select(['id_hash', 'tenant_id', 'subject'])
      .execute();
    expect(rows).toContainEqual({ id_hash: tokenHash(s.id), tenant_id: 't1', subject: 'u1' });
    expect(JSON.stringify(rows)).not.toContain(s.id);
    now += 59_999;
    expect((await b.get(s.id))?.id).toBe(s.id);
    now += 1;
    expect(await b.get(s.id)).toBeUndefined();
    expect(await a.countFor('t1', 'u1')).toBe(0); // deleted when met expired
    const t = await a.create(user('u1'), undefined);
    expect((await b.get(t.id))?.idToken).toBeUndefined();
    await b.delete(t.id);
    expect(await a.get(t.id)).toBeUndefined();
    expect(await a.get(undefined)).toBeUndefined();
    expect(await a.get('x'.repeat(65))).toBeUndefined();
  });

  it('keeps at most maxPerUser sessions per user (the oldest go), other users untouched', async () => {
    const a = new SessionStore(db, opts, clock);
    const other = await a.create(user('u2', 't2'), undefined);
    const first = await a.create(user('u3'), undefined);
    now += 1;
    const second = await a.create(user('u3'), undefined);
    now += 1;
    const third = await a.create(user('u3'), undefined);
    expect(await a.countFor('t1', 'u3')).toBe(2);
    expect(await a.get(first.id)).toBeUndefined();
    expect((await a.get(second.id))?.id).toBe(second.id);
    expect((await a.get(third.id))?.id).toBe(third.id);
    // Same subject in another tenant is another user.
    expect((await a.get(other.id))?.id).toBe(other.id);
    // Expired rows of anyone are deleted at the next login.
    now += opts.ttlMs;
    await a.create(user('u4'), undefined);
    expect(await a.countFor('t2', 'u2')).toBe(0);
  });

  it('hands out a pending login once, on any store, and not after its TTL; logins in flight are bounded', async () => {
    const a = new SessionStore(db, opts, clock);
    const b = new SessionStore(db, opts, clock);
    const p = await a.beginLogin('/console/events');
    expect(p.verifier).toMatch(/^[A-Za-z0-9_-]{43}$/); // RFC 7636: 43-128 unreserved characters
    expect(await b.takeLogin(p.state)).toEqual(p);
    expect(await a.takeLogin(p.state)).toBeUndefined();
    const q = await a.beginLogin('/console');
    now += LOGIN_TTL_MS;
    expect(await b.takeLogin(q.state)).toBeUndefined();
    const r1 = await a.beginLogin('/console');
    now += 1;
    const r2 = await a.beginLogin('/console');
    now += 1;
    const r3 = await a.beginLogin('/console');
    expect(await b.takeLogin(r1.state)).toBeUndefined();
    expect((await b.takeLogin(r2.state))?.state).toBe(r2.state);
    expect((await b.takeLogin(r3.state))?.state).toBe(r3.state);
  });
});
