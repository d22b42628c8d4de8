// The parts of the webhook worker that make it keep up (issue 18, "webhook delivery rate"): group batching of
// its PostgreSQL work (and the batched store calls, on a real PostgreSQL), the per-receiver limit, cached DNS
// answers, and keep-alive connections that still only go to the address checked for each request (local
// servers; no outside network).
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Kysely } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { useDatabase } from '@vigil/testkit';
import { createDb, migrateToLatest } from '../src/index.js';
import type { Database } from '../src/storage/tables.js';
import { WebhookStore } from '../src/integrations/store.js';
import { uuidV7 } from './api-fixtures.js';
import { GroupBatcher, KeyedLimiter } from '../src/integrations/batching.js';
import { ConnectionPool, postJson } from '../src/integrations/http-client.js';
import { cachedResolver, type Resolver } from '../src/integrations/ssrf.js';

/** A promise and its resolver. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('GroupBatcher', () => {
  it('flushes a lone item at once, groups the items that arrive during a flush, keeps order per item', async () => {
    const flushes: number[][] = [];
    const gates: Array<ReturnType<typeof deferred<void>>> = [];
    const b = new GroupBatcher<number, string>(
      async (items) => {
        flushes.push(items);
        const gate = deferred<void>();
        gates.push(gate);
        await gate.promise;
        return items.map((i) => `r${i}`);
      },
      { maxBatch: 3, maxInFlight: 1 },
    );
    const first = b.submit(1);
    await tick();
    expect(flushes).toEqual([[1]]); // not held back waiting for company
    const rest = [2, 3, 4, 5].map((i) => b.submit(i));
    await tick();
    expect(flushes).toHaveLength(1); // one flush in flight at most
    expect(b.waiting).toBe(4);
    gates[0]!.resolve();
    expect(await first).toBe('r1');
    await tick();
    expect(flushes[1]).toEqual([2, 3, 4]); // up to maxBatch together
    gates[1]!.resolve();
    await tick();
    expect(flushes[2]).toEqual([5]);
    gates[2]!.resolve();
    expect(await Promise.all(rest)).toEqual(['r2', 'r3', 'r4', 'r5']);
  });

  it('a failed flush fails its own items only; the next flush still runs', async () => {
    let calls = 0;
    const gate = deferred<void>();
    const b = new GroupBatcher<number, number>(
      async (items) => {
        calls++;
        if (calls === 1) {
          await gate.promise;
          throw new Error('database down');
        }
        return items.map((i) => i * 10);
      },
      { maxBatch: 10, maxInFlight: 1 },
    );
    const a = b.submit(1);
    const later = [b.submit(2), b.submit(3)];
    gate.resolve();
    await expect(a).rejects.toThrow('database down');
    expect(await Promise.all(later)).toEqual([20, 30]);
  });

  it('runs up to maxInFlight flushes at once, and refuses a flush that returns the wrong count', async () => {
    let running = 0;
    let most = 0;
    const b = new GroupBatcher<number, number>(
      async (items) => {
        running++;
        most = Math.max(most, running);
        await tick();
        running--;
        return items;
      },
      { maxBatch: 1, maxInFlight: 2 },
    );
    expect(await Promise.all([1, 2, 3, 4, 5].map((i) => b.submit(i)))).toEqual([1, 2, 3, 4, 5]);
    expect(most).toBe(2);
    const wrong = new GroupBatcher<number, number>(() => Promise.resolve([]), {
      maxBatch: 4,
      maxInFlight: 1,
    });
    await expect(wrong.submit(1)).rejects.toThrow('0 results for 1 items');
  });
});

describe('KeyedLimiter', () => {
  it('at most `limit` holders per key, the others in FIFO order; keys are independent; idle keys are forgotten', async () => {
    const l = new KeyedLimiter(2);
    const a1 = await l.acquire('a');
    const a2 = await l.acquire('a');
    const order: number[] = [];
    const w3 = l.acquire('a').then((r) => (order.push(3), r));
    const w4 = l.acquire('a').then((r) => (order.push(4), r));
    const b1 = await l.acquire('b'); // another receiver is not held up by a's queue
    expect(l.state('a')).toEqual({ holders: 2, waiting: 2 });
    a1();
    a1(); // a second release of the same slot does nothing
    const r3 = await w3;
    expect(order).toEqual([3]);
    expect(l.state('a')).toEqual({ holders: 2, waiting: 1 });
    a2();
    const r4 = await w4;
    expect(order).toEqual([3, 4]);
    r3();
    r4();
    b1();
    expect(l.size).toBe(0);
  });
});

describe('cachedResolver', () => {
  it('shares one look-up per name for ttlMs (concurrent callers too), then asks again; failures are not kept', async () => {
    let t = 0;
    const asked: string[] = [];
    let fail = false;
    const inner: Resolver = (name) => {
      asked.push(name);
      if (fail) return Promise.reject(new Error('ENOTFOUND'));
      return Promise.resolve([{ address: '203.0.113.7', family: 4 }]);
    };
    const r = cachedResolver(inner, { ttlMs: 1000, maxEntries: 2, now: () => t });
    await Promise.all([r('a.example'), r('a.example')]);
    t = 999;
    expect(await r('a.example')).toEqual([{ address: '203.0.113.7', family: 4 }]);
    expect(asked).toEqual(['a.example']);
    t = 1000;
    await r('a.example');
    expect(asked).toEqual(['a.example', 'a.example']);
    fail = true;
    await expect(r('b.example')).rejects.toThrow('ENOTFOUND');
    fail = false;
    await r('b.example'); // asked again: the failure was not kept
    expect(asked.filter((n) => n === 'b.example')).toHaveLength(2);
    await r('c.example'); // a third name: the oldest entry (a.example) goes
    await r('a.example');
    expect(asked.filter((n) => n === 'a.example')).toHaveLength(3);
  });
});

describe('keep-alive delivery connections (ConnectionPool)', () => {
  let a: Server;
  let b: Server;
  let port: number;
  const connections = { a: 0, b: 0 };
  const hits = { a: 0, b: 0 };
  const local = { allowInsecureHttp: true, allowPrivateNetworks: true, timeoutMs: 5_000 };
  let answer = '127.0.0.1';
  // A name that exists nowhere: only this resolver knows it, and its answer changes (DNS rebinding).
  const dns: Resolver = () => Promise.resolve([{ address: answer, family: 4 }]);
  const pools: ConnectionPool[] = [];
  const newPool = (): ConnectionPool => {
    const p = new ConnectionPool({ maxSocketsPerEndpoint: 4 });
    pools.push(p);
    return p;
  };

  const serve = (name: 'a' | 'b'): Server => {
    const s = createServer((req, res) => {
      hits[name]++;
      req.resume();
      req.on('end', () => {
        res.writeHead(204);
        res.end();
      });
    });
    s.on('connection', () => connections[name]++);
    s.keepAliveTimeout = 30_000;
    return s;
  };

  beforeAll(async () => {
    a = serve('a');
    b = serve('b');
    await new Promise<void>((r) => a.listen(0, '127.0.0.1', r));
    port = (a.address() as AddressInfo).port;
    // The same port on another loopback address: what a rebound name would lead to.
    await new Promise<void>((r) => b.listen(port, '127.0.0.2', r));
  });
  afterEach(() => {
    for (const p of pools.splice(0)) p.destroy();
  });
  afterAll(async () => {
    for (const s of [a, b]) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  });

  const post = (pool: ConnectionPool | undefined, host = '127.0.0.1') =>
    postJson(
      new URL(`http://${host}:${port}/hook`),
      '{}',
      { 'content-type': 'application/json' },
      {
        ...local,
        resolve: dns,
        pool,
      },
    );

  it('reuses one connection for requests in a row; without a pool each request connects anew', async () => {
    const before = connections.a;
    const pool = newPool();
    for (let i = 0; i < 5; i++) expect(await post(pool)).toMatchObject({ kind: 'response', status: 204 });
    expect(connections.a - before).toBe(1);
    const mid = connections.a;
    for (let i = 0; i < 3; i++)
      expect(await post(undefined)).toMatchObject({ kind: 'response', status: 204 });
    expect(connections.a - mid).toBe(3);
  });

  it('opens at most maxSocketsPerEndpoint connections to one endpoint', async () => {
    const before = connections.a;
    const pool = newPool();
    const results = await Promise.all(Array.from({ length: 20 }, () => post(pool)));
    expect(results.every((r) => r.kind === 'response' && r.status === 204)).toBe(true);
    expect(connections.a - before).toBeLessThanOrEqual(4);
  });

  it('a kept connection is never used for a request whose check resolved the name elsewhere (DNS rebinding)', async () => {
    const pool = newPool();
    answer = '127.0.0.1';
    const beforeA = hits.a;
    expect(await post(pool, 'hooks.vigil.invalid')).toMatchObject({ kind: 'response', status: 204 });
    expect(hits.a - beforeA).toBe(1);
    // The name now resolves to another address: the next request goes there, on a connection of its own.
    answer = '127.0.0.2';
    const beforeB = hits.b;
    const connB = connections.b;
    expect(await post(pool, 'hooks.vigil.invalid')).toMatchObject({ kind: 'response', status: 204 });
    expect(hits.b - beforeB).toBe(1);
    expect(hits.a - beforeA).toBe(1);
    expect(connections.b - connB).toBe(1);
    // And a private answer is refused before any connection, kept or not.
    answer = '127.0.0.1';
    expect(
      await postJson(
        new URL(`http://hooks.vigil.invalid:${port}/hook`),
        '{}',
        {},
        {
          ...local,
          allowPrivateNetworks: false,
          resolve: dns,
          pool,
        },
      ),
    ).toMatchObject({ kind: 'refused' });
    expect(hits.a - beforeA).toBe(1);
    expect(pool.size).toBe(2);
  });
});

describe('a kept connection the receiver closed as the request left', () => {
  let server: TcpServer;
  let port: number;
  let conns = 0;
  let requests = 0;

  beforeAll(async () => {
    // Answers the first request of each connection (keep-alive), and drops the connection at the second one:
    // what a receiver whose idle timeout fires as our request arrives looks like.
    server = createTcpServer((socket: Socket) => {
      conns++;
      let seen = 0;
      let buf = '';
      socket.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        while (buf.includes('\r\n\r\n{}')) {
          buf = buf.slice(buf.indexOf('\r\n\r\n{}') + 6);
          requests++;
          seen++;
          if (seen === 1) socket.write('HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n');
          else socket.destroy();
        }
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('is sent once more on a fresh connection instead of failing the attempt', async () => {
    const pool = new ConnectionPool({ maxSocketsPerEndpoint: 1 });
    try {
      const opts = { allowInsecureHttp: true, allowPrivateNetworks: true, timeoutMs: 5_000, pool };
      const url = new URL(`http://127.0.0.1:${port}/hook`);
      const headers = { 'content-type': 'application/json' };
      expect(await postJson(url, '{}', headers, opts)).toMatchObject({ kind: 'response', status: 204 });
      expect(await postJson(url, '{}', headers, opts)).toMatchObject({ kind: 'response', status: 204 });
      expect(conns).toBe(2);
      expect(requests).toBe(3); // the second request twice: dropped on the kept connection, answered on the new
    } finally {
      pool.destroy();
    }
  });
});

// The worker's batched reads and writes against a real PostgreSQL: what each job sees must be what the
// per-job store.get + store.progress gave, whatever else is in the batch.
describe('WebhookStore.lookupJobs / recordMany / record (one statement per batch)', () => {
  const dbUrl = useDatabase();
  let db: Kysely<Database>;
  let store: WebhookStore;
  beforeAll(async () => {
    db = createDb(dbUrl());
    await migrateToLatest(db as Kysely<unknown>);
    store = new WebhookStore(db);
  });
  afterAll(() => db.destroy());

  const hookOf = (tenantId: string) =>
    store.create({
      tenantId,
      url: 'https://hooks.example/x',
      filter: {},
      description: undefined,
      createdBy: 't',
    });
  const rec = (
    webhookId: string,
    tenantId: string,
    eventId: string,
    attempt: number,
    state: 'delivered' | 'retrying' | 'dead',
  ) => ({
    webhookId,
    tenantId,
    eventId,
    attempt,
    state,
    httpStatus: state === 'delivered' ? 200 : 500,
    error: state === 'delivered' ? null : 'x'.repeat(600),
    durationMs: 3,
  });

  it('answers per job, in order: webhook of that tenant only, attempts so far, delivered or not; junk ids find nothing', async () => {
    const a = await hookOf('acme');
    const g = await hookOf('globex');
    const [e1, e2, e3] = [uuidV7(Date.now()), uuidV7(Date.now() + 1), uuidV7(Date.now() + 2)];
    await store.recordMany([
      rec(a.id, 'acme', e1, 1, 'retrying'),
      rec(a.id, 'acme', e1, 2, 'delivered'),
      rec(a.id, 'acme', e2, 1, 'retrying'),
      rec(g.id, 'globex', e3, 1, 'retrying'),
    ]);
    const got = await store.lookupJobs([
      { tenantId: 'acme', webhookId: a.id, eventId: e1 },
      { tenantId: 'acme', webhookId: a.id, eventId: e2 },
      { tenantId: 'acme', webhookId: a.id, eventId: e3 }, // no attempt yet
      { tenantId: 'acme', webhookId: g.id, eventId: e3 }, // globex's webhook named by an acme job
      { tenantId: 'globex', webhookId: g.id, eventId: e3 },
      { tenantId: 'acme', webhookId: 'not-a-uuid', eventId: e1 },
      { tenantId: 'acme', webhookId: a.id.toUpperCase(), eventId: e1.toUpperCase() },
    ]);
    expect(got.map((s) => [s.hook?.id, s.attempts, s.delivered])).toEqual([
      [a.id, 2, true],
      [a.id, 1, false],
      [a.id, 0, false],
      [undefined, 0, false],
      [g.id, 1, false],
      [undefined, 0, false],
      [a.id, 2, true],
    ]);
    const rows = await store.listDeliveries('acme', a.id, 10);
    expect(rows).toHaveLength(3);
    expect(rows.every((r) => r.error === null || r.error.length === 500)).toBe(true);
    expect(await store.lookupJobs([])).toEqual([]);
  });

  it('record() writes the row recordMany() writes for the same attempt', async () => {
    const a = await hookOf('acme');
    const [e1, e2] = [uuidV7(Date.now()), uuidV7(Date.now() + 1)];
    await store.record(rec(a.id, 'acme', e1, 1, 'retrying'));
    await store.recordMany([rec(a.id, 'acme', e2, 1, 'retrying')]);
    const rows = await store.listDeliveries('acme', a.id, 10);
    const shape = (r: (typeof rows)[number]) => [
      r.webhook_id,
      r.tenant_id,
      r.attempt,
      r.state,
      r.http_status,
      r.error,
      r.duration_ms,
    ];
    expect(rows.map((r) => r.event_id).sort()).toEqual([e1, e2].sort());
    expect(shape(rows[0]!)).toEqual(shape(rows[1]!));
    expect(rows[0]!.error).toHaveLength(500);
    expect(await store.progress(a.id, e1)).toEqual({ attempts: 1, delivered: false });
  });
});
