// The web console's events page, first page, over a tenant with 1,000,000 events (issue 15: < 300 ms on this
// machine). Not run by the tests. Prints ONE JSON document on stdout; progress on stderr.
//
//   node --conditions=@vigil/source --import tsx cloud/bench/console.bench.ts [--events 1000000] [--requests 200]
//
// What is measured: GET /console/events over loopback HTTP, end to end on the server: the session lookup, the
// Cedar `events:read` decision, the keyset query of the newest 50 events (occurred_at desc, event_id desc) and
// the server-rendered, escaped HTML, as the browser's first request gets it (not the thumbnails: the data set
// has no media). Variants: no filter, one site, one label, one device. Sequential requests after --warmup ones;
// p50/p95/p99/max per variant. The data set (COPYed once, kept in --database) is the API load bench's
// (bench/api-load/dataset.ts: 4 sites x 4 devices x 4 cameras, 5 labels, over --days daily partitions).
import type { AddressInfo } from 'node:net';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { AlertStore } from '../src/alerts/store.js';
import { WebhookStore } from '../src/integrations/store.js';
import express from 'express';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { AuditLog } from '../src/audit/audit-log.js';
import { createAuthorizerFromConfig } from '../src/auth/engine.js';
import { parseCloudConfig } from '../src/config/load.js';
import { OidcClient } from '../src/console/oidc.js';
import { createConsoleRouter } from '../src/console/router.js';
import { sessionCookieName } from '../src/console/security.js';
import { SessionStore } from '../src/console/session.js';
import { DeviceRevoker } from '../src/fleet/revocation.js';
import { MediaRepository } from '../src/media/repository.js';
import { createDb } from '../src/storage/db.js';
import { migrateToLatest } from '../src/storage/migrate.js';
import { DEVICES_PER_SITE, LABELS, SITES, ensureDataset, type DatasetSpec } from './api-load/dataset.js';
import { distribution, log } from './support.js';

const { values: args } = parseArgs({
  options: {
    events: { type: 'string', default: '1000000' },
    days: { type: 'string', default: '30' },
    requests: { type: 'string', default: '200' },
    warmup: { type: 'string', default: '20' },
    database: { type: 'string', default: 'vigil_console_bench' },
  },
});

async function database(name: string): Promise<string> {
  const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`bad database name ${name}`);
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const found = await admin.query('select 1 from pg_database where datname = $1', [name]);
    if (found.rowCount === 0)
      await admin.query(`CREATE DATABASE "${name}" TEMPLATE template0 ENCODING 'UTF8'`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

async function main(): Promise<void> {
  const url = await database(args.database);
  const db = createDb(url, 4);
  await migrateToLatest(db as unknown as Kysely<unknown>);
  const days = Number(args.days);
  const startMs =
    Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate()) -
    (days - 1) * 86_400_000;
  const spec: DatasetSpec = { tenant: 'acme', events: Number(args.events), days, startMs, seed: 15 };
  const loaded = await ensureDataset(url, spec, log);
  log(`data set: ${loaded.rows} events (${loaded.loaded ? `loaded in ${loaded.seconds} s` : 'kept'})`);
  await sql`analyze events`.execute(db);

  const metrics = new Registry();
  const quiet = pino({ level: 'silent' });
  const config = parseCloudConfig({
    database: { url },
    nats: { servers: ['tls://localhost:1'], tls: { caFile: 'x', certFile: 'x', keyFile: 'x' } },
    // Only authz, api and fleet are read here; the API's key file is never opened.
    api: { enabled: false },
  });
  const audit = new AuditLog(db, quiet, metrics);
  const sessions = new SessionStore(
    db,
    { ttlMs: 3_600_000, maxSessions: 10, maxPerUser: 10, maxPending: 10 },
    Date.now,
  );
  const session = await sessions.create(
    { subject: 'bench@acme', tenant: 'acme', roles: ['admin'] },
    undefined,
  );
  const app = express();
  app.use(
    '/console',
    createConsoleRouter({
      db,
      authorizer: createAuthorizerFromConfig(config.authz, quiet, metrics),
      log: quiet,
      metrics,
      audit,
      now: () => new Date(),
      maxPageSize: config.api.maxPageSize,
      offlineAfterSeconds: config.fleet.offlineAfterSeconds,
      sessions,
      // Never contacted: the session is made here, no login happens.
      oidc: new OidcClient({
        issuer: 'http://127.0.0.1:1',
        clientId: 'bench',
        redirectUrl: 'http://127.0.0.1/console/auth/callback',
        scopes: ['openid'],
      }),
      cookie: { secure: false },
      origin: 'http://127.0.0.1',
      media: { repository: new MediaRepository(db), store: undefined },
      revoker: new DeviceRevoker(db, undefined, audit, quiet),
      alerts: { store: new AlertStore(db), senderDomain: 'bench.example' },
      webhooks: {
        store: new WebhookStore(db),
        policy: { allowInsecureHttp: false, allowPrivateNetworks: false },
      },
    }),
  );
  const server = createServer(app);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const cookie = `${sessionCookieName({ secure: false })}=${session.id}`;
  const variants: Record<string, string> = {
    all: '/console/events',
    site: `/console/events?site=${SITES[1]}`,
    label: `/console/events?label=${LABELS[2]}`,
    device: `/console/events?device=gw-${SITES.length * DEVICES_PER_SITE}`,
  };
  const results: Record<string, unknown> = {};
  for (const [name, path] of Object.entries(variants)) {
    const times: number[] = [];
    let rows = 0;
    let bytes = 0;
    for (let i = 0; i < Number(args.warmup) + Number(args.requests); i++) {
      const t0 = performance.now();
      const res = await fetch(`${base}${path}`, { headers: { cookie } });
      const text = await res.text();
      const ms = performance.now() - t0;
      if (res.status !== 200) throw new Error(`${path}: HTTP ${res.status}: ${text.slice(0, 300)}`);
      if (i >= Number(args.warmup)) times.push(ms);
      rows = (text.match(/<tr data-event=/g) ?? []).length;
      bytes = text.length;
    }
    results[name] = { path, rows, bytes, ms: distribution(times) };
    log(`${name}: ${JSON.stringify(results[name])}`);
  }
  server.close();
  await db.destroy();
  console.log(
    JSON.stringify({ bench: 'console-events-first-page', events: loaded.rows, days, results }, null, 2),
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
