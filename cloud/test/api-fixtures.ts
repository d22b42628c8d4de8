import { connect, type NatsConnection } from '@nats-io/transport-node';
import { sql, type Kysely } from 'kysely';
import { pino } from 'pino';
import { afterAll, beforeAll } from 'vitest';
import { natsConfig, useDatabase, useNats, usePki } from '@vigil/testkit';
import {
  ensureDevSigningKey,
  mintDevToken,
  parseCloudConfig,
  startCloud,
  type CloudApp,
  type CloudDeps,
  type DevSigningKey,
} from '../src/index.js';
import type { Database } from '../src/storage/tables.js';
import type { CloudConfig } from '../src/config/schema.js';

export { uuidV7 } from '@vigil/testkit';

export interface SeedEvent {
  event_id: string;
  tenant_id: string;
  device_id: string;
  camera_id: string;
  label: string;
  /** Exact occurred_at, microseconds: `YYYY-MM-DDTHH:MM:SS.ffffffZ` (sorts like the timestamp). */
  at: string;
}

export interface TestCloud {
  cloud: () => CloudApp;
  /** The parsed config the cloud started with (a second process of the same deployment starts from it). */
  config: () => CloudConfig;
  base: () => string;
  key: () => DevSigningKey;
  /** A valid dev token (issuer/audience as configured) for `tenant` with `roles` (and `sites`: site-scoped). */
  token: (
    tenant: string,
    roles?: string[],
    extra?: { ttlSeconds?: number; now?: Date; sites?: string[] },
  ) => Promise<string>;
  get: (path: string, token?: string, init?: RequestInit) => Promise<Response>;
  /** A new NATS connection (the cloud's service certificate; this test server authorizes no one per user). */
  connectNats: () => Promise<NatsConnection>;
}

export const ISSUER = 'vigil-test';
export const AUDIENCE = 'vigil-api-test';

/**
 * The real cloud (startCloud) for one test file: its own nats-server (mTLS + JetStream), PostgreSQL
 * database, dev PKI and dev signing key, with the API enabled and pointed at the dev JWKS. `deps` are passed
 * to startCloud (e.g. an injected clock, `now`).
 */
export function useApiCloud(
  overrides: Record<string, unknown> = {},
  deps: Omit<CloudDeps, 'logger'> = {},
): TestCloud {
  const pki = usePki({ services: ['cloud'] });
  const nats = useNats({
    config: (ctx) =>
      natsConfig({
        tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
      })(ctx),
  });
  const dbUrl = useDatabase();
  let cloud: CloudApp | undefined;
  let config: CloudConfig | undefined;
  let key: DevSigningKey | undefined;

  beforeAll(async () => {
    key = ensureDevSigningKey(pki().dir);
    const svc = pki().services.cloud!;
    config = parseCloudConfig({
      http: { port: 0 },
      database: { url: dbUrl() },
      nats: {
        servers: [`tls://localhost:${nats().port}`],
        tls: { caFile: pki().caCert, certFile: svc.cert, keyFile: svc.key },
      },
      log: { level: 'silent' },
      ...overrides,
      // `auth` overrides are merged: the key file is only known here.
      auth: {
        issuer: ISSUER,
        audience: AUDIENCE,
        jwksFile: key.jwksFile,
        ...(overrides.auth as Record<string, unknown> | undefined),
      },
    });
    cloud = await startCloud(config, { logger: pino({ level: 'silent' }), ...deps });
  });
  afterAll(async () => {
    await cloud?.stop();
  });

  const t: TestCloud = {
    cloud: () => cloud!,
    config: () => config!,
    base: () => `http://127.0.0.1:${cloud!.httpPort}`,
    key: () => key!,
    token: (tenant, roles = ['viewer'], extra = {}) =>
      mintDevToken({
        key: key!,
        issuer: ISSUER,
        audience: AUDIENCE,
        tenant,
        roles,
        sub: `user@${tenant}`,
        ttlSeconds: extra.ttlSeconds ?? 300,
        ...(extra.now ? { now: extra.now } : {}),
        ...(extra.sites ? { sites: extra.sites } : {}),
      }),
    get: (path, token, init = {}) =>
      fetch(`${t.base()}${path}`, {
        ...init,
        headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(init.headers ?? {}) },
      }),
    connectNats: () => {
      const svc = pki().services.cloud!;
      return connect({
        servers: [`tls://localhost:${nats().port}`],
        tls: { caFile: pki().caCert, certFile: svc.cert, keyFile: svc.key },
      });
    },
  };
  return t;
}

/** Inserts events straight into PostgreSQL (partitions ensured first), like ingest would. */
export async function insertEvents(db: Kysely<Database>, events: readonly SeedEvent[]): Promise<void> {
  for (const day of new Set(events.map((e) => e.at.slice(0, 10))))
    await sql`select vigil_ensure_event_partition(${day}::date)`.execute(db);
  await db
    .insertInto('events')
    .values(
      events.map((e, i) => ({
        event_id: e.event_id,
        occurred_at: sql<Date>`${e.at}::timestamptz`,
        tenant_id: e.tenant_id,
        site_id: 'hq',
        device_id: e.device_id,
        camera_id: e.camera_id,
        track_id: `t${i}`,
        phase: i % 2 === 0 ? 'start' : 'end',
        label: e.label,
        score: 0.5,
        box_x: 0.1,
        box_y: 0.2,
        box_w: 0.3,
        box_h: 0.4,
        zones: i % 5 === 0 ? ['door'] : [],
        trigger_zone: null,
        model_name: 'yolox',
        model_sha256: 'ab'.repeat(32),
        snapshot_media_id: null,
        snapshot_sha256: null,
        snapshot_bytes: null,
        priority: 2,
        attributes: JSON.stringify({ 'acme.seq': String(i) }),
        payload: Buffer.from([i & 0xff]),
      })),
    )
    .execute();
}

/** Newest first, the API's order: occurred_at desc, then event_id desc. */
export function newestFirst(events: readonly SeedEvent[]): SeedEvent[] {
  const cmp = (x: string, y: string): number => (x < y ? -1 : x > y ? 1 : 0);
  return [...events].sort((a, b) => cmp(b.at, a.at) || cmp(b.event_id, a.event_id));
}

export const PROBLEM_JSON = /^application\/problem\+json/;
