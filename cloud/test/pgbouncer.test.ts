import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useDatabase, usePgBouncer, withDatabase } from '@vigil/testkit';
import {
  createDb,
  ensureDevSigningKey,
  migrateToLatest,
  mintDevToken,
  type CloudApp,
  type DevSigningKey,
} from '../src/index.js';
import { whileHoldingLock } from '../src/storage/leader-lock.js';
import { makeEvent, publishAll, useIngestStack, type TestDevice } from './support/ingest-stack.js';

// PostgreSQL through a real pgbouncer 1.18 in TRANSACTION pooling mode, with a pool of 4 server connections
// per database, so that every cloud connection (two processes: 20) shares them and any session state (a
// session advisory lock, a SET, a named prepared statement) would reach other clients or be lost. 4, not
// fewer: the two leader jobs (rollouts, media retention) each keep one open while they run
// (storage/leader-lock.ts), and their work needs another. Migrations, ingest and API
// requests all go through it; afterwards nothing may be left behind on the server connections.

const gw1: TestDevice = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' };
const gw2: TestDevice = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-2' };
const POOL = 4;

describe('PostgreSQL through pgbouncer (transaction pooling)', () => {
  const bouncer = usePgBouncer({ poolSize: POOL, poolMode: 'transaction' });
  const direct = useDatabase();
  const dbName = () => new URL(direct()).pathname.slice(1);
  const viaBouncer = () => bouncer().url(dbName());
  const stack = useIngestStack({
    devices: [gw1, gw2],
    registered: [gw1, gw2],
    databaseUrl: viaBouncer,
  });
  let admin: pg.Client;
  let keyDir: string;
  let key: DevSigningKey;

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: withDatabase(direct(), 'postgres') });
    await admin.connect();
    keyDir = mkdtempSync(join(tmpdir(), 'vigil-pgb-keys-'));
    key = ensureDevSigningKey(keyDir);
  });
  afterAll(async () => {
    await admin?.end();
    if (keyDir) rmSync(keyDir, { recursive: true, force: true });
  });

  /** Advisory locks held on the test database by anyone (a leaked session lock shows here). */
  const advisoryLocks = async (): Promise<number> =>
    Number(
      (
        await admin.query<{ n: string }>(
          `select count(*) as n from pg_locks l join pg_database d on d.oid = l.database
            where l.locktype = 'advisory' and d.datname = $1`,
          [dbName()],
        )
      ).rows[0]!.n,
    );
  /** Server connections open on the test database (pgbouncer's plus none of ours). */
  const serverConnections = async (): Promise<number> =>
    Number(
      (
        await admin.query<{ n: string }>(
          `select count(*) as n from pg_stat_activity where datname = $1 and backend_type = 'client backend'`,
          [dbName()],
        )
      ).rows[0]!.n,
    );

  it('the cloud migrated through pgbouncer at start; 4 more concurrent runs wait their turn and do nothing', async () => {
    // The stack's cloud already ran the migrations through pgbouncer (startCloud).
    const pools: Kysely<unknown>[] = Array.from(
      { length: 4 },
      () => createDb(viaBouncer(), 3) as unknown as Kysely<unknown>,
    );
    try {
      const applied = await Promise.all(pools.map((db) => migrateToLatest(db)));
      expect(applied).toEqual([[], [], [], []]);
    } finally {
      await Promise.all(pools.map((db) => db.destroy()));
    }
    expect(await advisoryLocks()).toBe(0);
  });

  it('migrations from scratch through pgbouncer: one run applies them, concurrent ones wait, no lock leaks', async () => {
    const { rows } = await admin.query<{ n: string }>(
      `select count(*) as n from pg_database where datname = $1`,
      [`${dbName()}_fresh`],
    );
    if (rows[0]!.n === '0') await admin.query(`create database "${dbName()}_fresh"`);
    const fresh = bouncer().url(`${dbName()}_fresh`);
    const pools = Array.from({ length: 4 }, () => createDb(fresh, 3) as unknown as Kysely<unknown>);
    try {
      const applied = await Promise.all(pools.map((db) => migrateToLatest(db)));
      const counts = applied.map((a) => a.length).sort((a, b) => a - b);
      expect(counts.slice(0, 3)).toEqual([0, 0, 0]);
      expect(counts[3]).toBeGreaterThan(15);
      const locks = await admin.query(
        `select count(*)::int as n from pg_locks l join pg_database d on d.oid = l.database
          where l.locktype = 'advisory' and d.datname = $1`,
        [`${dbName()}_fresh`],
      );
      expect(locks.rows[0]).toEqual({ n: 0 });
    } finally {
      await Promise.all(pools.map((db) => db.destroy()));
      await admin.query(`drop database if exists "${dbName()}_fresh" with (force)`);
    }
  });

  it('ingest stores 400 events through pgbouncer, exactly once', async () => {
    const a = await stack.device(gw1);
    const b = await stack.device(gw2);
    const events = [
      ...Array.from({ length: 200 }, (_, i) => makeEvent(gw1, { trackId: `a${i}` })),
      ...Array.from({ length: 200 }, (_, i) => makeEvent(gw2, { trackId: `b${i}` })),
    ];
    await publishAll(events, 100, (ev) => (ev.deviceId === gw1.deviceId ? a : b).publish(ev));
    await expect.poll(() => stack.rowCount(), { timeout: 30_000 }).toBe(400);
    await expect.poll(() => a.receipted.size + b.receipted.size, { timeout: 30_000 }).toBe(400);
  });

  it('a second cloud process serves the API through the same pgbouncer: lists, idempotent POSTs', async () => {
    const api: CloudApp = await stack.startCloud({
      api: { enabled: true },
      ingest: { enabled: false },
      auth: { issuer: 'vigil-test', audience: 'vigil-api-test', jwksFile: key.jwksFile },
    });
    const token = await mintDevToken({
      key,
      issuer: 'vigil-test',
      audience: 'vigil-api-test',
      tenant: 'acme',
      roles: ['admin'],
      sub: 'admin@acme',
      ttlSeconds: 300,
    });
    const base = `http://127.0.0.1:${api.httpPort}`;
    const get = (path: string, init: RequestInit = {}) =>
      fetch(`${base}${path}`, {
        ...init,
        headers: { authorization: `Bearer ${token}`, ...(init.headers ?? {}) },
      });

    // Lists, paged, while the server connections are shared with ingest: every page answers, nothing repeats.
    const seen = new Set<string>();
    let cursor: string | null = null;
    do {
      const res: Response = await get(
        `/v1/events?limit=150${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
      );
      expect(res.status, await res.clone().text()).toBe(200);
      const page = (await res.json()) as { items: Array<{ event_id: string }>; next_cursor: string | null };
      for (const e of page.items) seen.add(e.event_id);
      cursor = page.next_cursor;
    } while (cursor);
    expect(seen.size).toBe(400);
    const devices = await get('/v1/devices');
    expect(((await devices.json()) as { items: unknown[] }).items).toHaveLength(2);

    // Writes in transactions (idempotency claim, token, audit chain under its transaction lock), 20 at once.
    const post = (idem: string) =>
      get('/v1/enrollment-tokens', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': idem },
        body: JSON.stringify({ site_id: 'hq', ttl_seconds: 600 }),
      });
    const first = await Promise.all(Array.from({ length: 20 }, (_, i) => post(`k-${i}`)));
    expect(first.map((r) => r.status)).toEqual(Array(20).fill(201));
    // The same keys again: each claim is found completed (a token's secret is never replayed: 409 by design),
    // and nothing new is created.
    const again = await Promise.all(Array.from({ length: 20 }, (_, i) => post(`k-${i}`)));
    expect(again.map((r) => r.status)).toEqual(Array(20).fill(409));
    for (const r of again)
      expect(((await r.json()) as { type: string }).type).toBe(
        'urn:vigil:problem:idempotent-result-unavailable',
      );
    const tokens = await sql<{ n: string }>`select count(*) as n from enrollment_tokens`.execute(
      stack.cloud().db,
    );
    expect(Number(tokens.rows[0]!.n)).toBe(20);
  });

  it('the leader lock holds through pgbouncer: one holder at a time, released at the end', async () => {
    const db = stack.cloud().db;
    const KEY = BigInt('7601290244163952499');
    let inside = 0;
    let maxInside = 0;
    const runs = await Promise.all(
      Array.from({ length: 6 }, () =>
        whileHoldingLock(db, KEY, async () => {
          maxInside = Math.max(maxInside, ++inside);
          await new Promise((r) => setTimeout(r, 200));
          inside--;
        }),
      ),
    );
    expect(maxInside).toBe(1);
    expect(runs.filter((r) => r.held).length).toBeGreaterThanOrEqual(1);
    expect(await whileHoldingLock(db, KEY, () => Promise.resolve('again'))).toEqual({
      held: true,
      result: 'again',
    });
  });

  it('afterwards: pgbouncer kept to its pool, and no session state was left on the server connections', async () => {
    expect(await serverConnections()).toBeLessThanOrEqual(POOL);
    // The rollout executor and media retention took their leader locks every second meanwhile.
    expect(await advisoryLocks()).toBe(0);
    const stats = new pg.Client({ connectionString: bouncer().url('pgbouncer') });
    await stats.connect();
    try {
      const config = await stats.query<{ key: string; value: string }>('SHOW CONFIG');
      expect(config.rows.find((r) => r.key === 'pool_mode')?.value).toBe('transaction');
      const pools = await stats.query<{ database: string; cl_active: string; cl_waiting: string }>(
        'SHOW POOLS',
      );
      expect(pools.rows.some((p) => p.database === dbName())).toBe(true);
    } finally {
      await stats.end();
    }
  });
});
