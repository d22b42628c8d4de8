// Console sessions in PostgreSQL (console/session.ts, migration 0030): what two API processes share. Real
// PostgreSQL, an injected clock; two stores on one database stand for two processes here (the browser test
// logs in through one cloud and uses the session on another).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { useDatabase } from '@vigil/testkit';
import express from 'express';
import type { Kysely } from 'kysely';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { AlertStore } from '../src/alerts/store.js';
import { AuditLog } from '../src/audit/audit-log.js';
import { createCedarAuthorizer } from '../src/auth/cedar.js';
import { createConsoleRouter } from '../src/console/router.js';
import { DeviceRevoker } from '../src/fleet/revocation.js';
import { WebhookStore } from '../src/integrations/store.js';
import { MediaRepository } from '../src/media/repository.js';
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

  it('the development login (no provider) makes a session like an OIDC login; a foreign Origin is refused', async () => {
    const quiet = pino({ level: 'silent' });
    const metrics = new Registry();
    const audit = new AuditLog(db, quiet, metrics);
    const app = express();
    app.use(
      '/console',
      createConsoleRouter({
        db,
        authorizer: createCedarAuthorizer({ log: quiet, metrics }),
        log: quiet,
        metrics,
        audit,
        now: () => new Date(),
        maxPageSize: 100,
        offlineAfterSeconds: 60,
        sessions: new SessionStore(db, { ...opts, ttlMs: 3_600_000 }, Date.now),
        oidc: undefined,
        devLoginTenant: 'dev',
        cookie: { secure: false },
        origin: 'http://127.0.0.1',
        media: { repository: new MediaRepository(db), store: undefined },
        revoker: new DeviceRevoker(db, undefined, audit, quiet),
        alerts: { store: new AlertStore(db), senderDomain: 'test.example' },
        webhooks: {
          store: new WebhookStore(db),
          policy: { allowInsecureHttp: false, allowPrivateNetworks: false },
        },
      }),
    );
    const server: Server = createServer(app);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      // Without a provider, the login goes to the development login.
      const login = await fetch(`${base}/console/login`, { redirect: 'manual' });
      expect(login.headers.get('location')).toBe('/console/dev-login');
      expect(await (await fetch(`${base}/console/dev-login`)).text()).toContain('name="role"');
      const post = (origin: string | undefined) =>
        fetch(`${base}/console/dev-login`, {
          method: 'POST',
          redirect: 'manual',
          headers: { 'content-type': 'application/x-www-form-urlencoded', ...(origin ? { origin } : {}) },
          body: 'role=operator',
        });
      expect((await post('http://evil.example')).status).toBe(403);
      expect((await post(undefined)).status).toBe(403);
      const ok = await post('http://127.0.0.1');
      expect(ok.status).toBe(303);
      const cookie = ok.headers.get('set-cookie')!.split(';')[0]!;
      expect(cookie).toMatch(/^vigil_console=[A-Za-z0-9_-]{43}$/);
      const page = await fetch(`${base}/console/events`, { headers: { cookie }, redirect: 'manual' });
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('operator@dev');
      expect(await new SessionStore(db, opts, Date.now).countFor('dev', 'operator@dev')).toBe(1);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
