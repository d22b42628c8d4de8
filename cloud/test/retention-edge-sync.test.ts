// A retention policy change reaches the devices without a rollout (issue 19, privacy/edge-sync.ts), against the
// real cloud (API, PostgreSQL, the scheduler's job behind its lease) and the real config delivery: each device
// whose edge media limits the change moves gets a new version of its config, signed and pushed on its cfg subject
// over NATS (verified here with the public JWKS and decoded as the agent decodes it); the others get nothing. A
// loosened or deleted policy gives back the limits the config asked for. The pass is bounded and resumable (a
// cursor and counters per tenant; a change during a pass restarts it), and a legal hold or an erasure request in
// progress is left exactly as it was.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  ConfigState,
  ConfigStatus,
  DeviceConfig,
  DeviceHealth,
  SignedConfig,
  subjectFor,
} from '@vigil/proto';
import { compactVerify, createLocalJWKSet } from 'jose';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDevConfigSigningKey, mintDevToken } from '../src/index.js';
import { FsMediaStore } from '../src/media/store.js';
import { EdgeRetentionSync, planEdgeReissue } from '../src/privacy/edge-sync.js';
import { ErasureJob } from '../src/privacy/erasure-job.js';
import { ErasureStore } from '../src/privacy/erasure-store.js';
import { RetentionPolicies, type RetentionPolicy } from '../src/privacy/policies.js';
import { AUDIENCE, ISSUER, useApiCloud } from './api-fixtures.js';
import { seedObjects } from './support/privacy.js';

const H = 3_600_000;
const silent = pino({ level: 'silent' });

describe('pure: which devices a policy change re-issues', () => {
  const policy = (p: Partial<RetentionPolicy>): RetentionPolicy => ({
    scope: 'site',
    siteId: 'hq',
    deviceId: '',
    cameraId: '',
    dataClass: 'personal_media',
    maxAgeHours: null,
    maxBytes: null,
    updatedBy: 'x',
    updatedAt: new Date(),
    ...p,
  });
  const defaults = { event_metadata: null, redacted_media: null, personal_media: null };
  const latest = (
    deviceId: string,
    siteId: string,
    signed: number | undefined,
    asked: number | undefined,
  ) => ({
    deviceId,
    siteId,
    body: {
      cameras: [{ id: 'c1', url: 'rtsp://h/c1' }],
      retention: signed === undefined ? undefined : { edgeMediaMaxHours: signed, eventDays: 9 },
    },
    requestedRetention: asked === undefined ? null : { edgeMediaMaxHours: asked, eventDays: 9 },
    rolloutId: 'r1',
    kind: 'rollout' as const,
  });

  it('re-issues only the devices whose signed limits differ, with the body as asked (rollout and kind kept)', () => {
    const plan = planEdgeReissue(
      [latest('a', 'hq', 100, 100), latest('b', 'yard', 100, 100), latest('c', 'hq', 24, 100)],
      [policy({ maxAgeHours: 24 })],
      defaults,
    );
    // a (hq) is capped to 24; b is elsewhere; c already runs 24.
    expect(plan.map((p) => [p.deviceId, p.from.edgeMediaMaxHours, p.to.edgeMediaMaxHours])).toEqual([
      ['a', 100, 24],
    ]);
    expect(plan[0]).toMatchObject({
      rolloutId: 'r1',
      kind: 'rollout',
      body: { retention: { edgeMediaMaxHours: 100, eventDays: 9 } },
    });
  });

  it('a loosened or removed policy gives back what the config asked for, never more', () => {
    expect(
      planEdgeReissue([latest('a', 'hq', 24, 100)], [policy({ maxAgeHours: 500 })], defaults).map((p) => [
        p.from.edgeMediaMaxHours,
        p.to.edgeMediaMaxHours,
      ]),
    ).toEqual([[24, 100]]);
    // Asked for nothing: the limit goes away entirely when nothing caps it.
    expect(planEdgeReissue([latest('a', 'hq', 24, undefined)], [], defaults)[0]?.to).toEqual({
      edgeMediaMaxHours: undefined,
      edgeMediaMaxBytes: undefined,
    });
    // A size budget is capped the same way.
    expect(
      planEdgeReissue([latest('a', 'hq', 100, 100)], [policy({ maxBytes: 3_000_000 })], defaults)[0]?.to,
    ).toEqual({ edgeMediaMaxHours: 100, edgeMediaMaxBytes: 3_000_000 });
  });
});

describe('retention policy changes re-issue device configs (edge limits) through config OTA', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'vigil-edge-sync-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const storeDir = join(tmp, 'media');
  const signingKey = ensureDevConfigSigningKey(join(tmp, 'keys'));
  let keys: { privateJwkFile: string; jwksFile: string } | undefined;
  beforeAll(async () => {
    keys = await signingKey;
  });
  const api = useApiCloud({
    get configSigning() {
      return { privateJwkFile: keys!.privateJwkFile };
    },
    media: { dir: storeDir, retentionDays: 30 },
    // The jobs run when nudged (an API change) and at start; an hour's poll keeps the direct-use steps below
    // (a pending erasure, a pass driven batch by batch) from being picked up behind the test's back.
    privacy: { erasure: { pollIntervalSeconds: 3600 }, edgeSync: { pollIntervalSeconds: 3600 } },
  });
  let admin: string;
  let nc: NatsConnection;
  const pushed: SignedConfig[] = [];
  const devices = ['gw-1', 'gw-2', 'gw-3', 'gw-4'];

  const call = async (method: string, path: string, body?: unknown) => {
    const res = await api.get(path, admin, {
      method,
      ...(body === undefined
        ? {}
        : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  };
  const verify = async (signed: SignedConfig): Promise<DeviceConfig> => {
    const jwks = api.cloud().configs.publicJwks!;
    const { payload } = await compactVerify(
      signed.jws,
      createLocalJWKSet(JSON.parse(jwks) as Parameters<typeof createLocalJWKSet>[0]),
    );
    return DeviceConfig.decode(payload);
  };
  /** The newest config pushed to each device (after `since` pushes), verified and decoded. */
  const pushedSince = async (since: number): Promise<Map<string, DeviceConfig>> => {
    const out = new Map<string, DeviceConfig>();
    for (const s of pushed.slice(since)) {
      const cfg = await verify(s);
      out.set(cfg.deviceId, cfg);
    }
    return out;
  };
  const versions = async () => {
    const rows = await api
      .cloud()
      .db.selectFrom('device_config_state')
      .select(['device_id', 'desired_version'])
      .where('tenant_id', '=', 'acme')
      .orderBy('device_id')
      .execute();
    return Object.fromEntries(rows.map((r) => [r.device_id, Number(r.desired_version)]));
  };
  const sync = () =>
    api
      .cloud()
      .db.selectFrom('edge_retention_syncs')
      .selectAll()
      .where('tenant_id', '=', 'acme')
      .executeTakeFirst();
  const waitDone = async (generation: number) => {
    await expect
      .poll(async () => {
        const s = await sync();
        return s && Number(s.generation) === generation ? s.state : undefined;
      })
      .toBe('done');
    return (await sync())!;
  };

  beforeAll(async () => {
    const { registry } = api.cloud();
    await registry.registerDevice({ tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' });
    await registry.registerDevice({ tenantId: 'acme', siteId: 'hq', deviceId: 'gw-2' });
    await registry.registerDevice({ tenantId: 'acme', siteId: 'yard', deviceId: 'gw-3' });
    await registry.registerDevice({ tenantId: 'acme', siteId: 'hq', deviceId: 'gw-4' }); // never issued a config
    admin = await mintDevToken({
      key: api.key(),
      issuer: ISSUER,
      audience: AUDIENCE,
      tenant: 'acme',
      roles: ['admin'],
      sub: 'alice@acme',
      ttlSeconds: 600,
    });
    nc = await api.connectNats();
    for (const d of devices)
      nc.subscribe(subjectFor('acme', d, 'cfg'), {
        callback: (_err, msg) => {
          pushed.push(SignedConfig.decode(msg.data));
        },
      });
    await nc.flush();
    const doc = {
      cameras: [{ id: 'lobby', url: 'rtsp://10.0.0.5/a', modelName: 'm' }],
      models: [{ name: 'm', type: 'yolox', sha256: 'ab'.repeat(32) }],
      retention: { edgeMediaMaxHours: 100, eventDays: 30 },
    };
    expect((await call('PUT', '/v1/configs/tenant/acme', doc)).status).toBe(200);
    for (const d of devices.slice(0, 3))
      expect((await call('POST', `/v1/devices/${d}/config/issue`, {})).status).toBe(201);
  });
  afterAll(async () => {
    await nc?.close();
  });

  it('issued configs carry the asked-for limit (no policy caps it yet)', async () => {
    expect(await versions()).toEqual({ 'gw-1': 1, 'gw-2': 1, 'gw-3': 1 });
    await expect.poll(() => pushed.length).toBe(3);
    const got = await pushedSince(0);
    for (const d of ['gw-1', 'gw-2', 'gw-3']) expect(got.get(d)?.retention?.edgeMediaMaxHours).toBe(100);
  });

  it('a stricter site policy re-issues exactly the site’s configured devices, pushed and signed; audited', async () => {
    const before = pushed.length;
    const set = await call('POST', '/v1/retention/policies', {
      scope: 'site',
      site_id: 'hq',
      data_class: 'personal_media',
      max_age_hours: 24,
    });
    expect(set.status).toBe(200);
    const done = await waitDone(1);
    expect(done).toMatchObject({ devices_checked: 4, devices_reissued: 2, devices_failed: 0 });
    // gw-3 is at another site; gw-4 never had a config (it gets the cap with its first one).
    expect(await versions()).toEqual({ 'gw-1': 2, 'gw-2': 2, 'gw-3': 1 });
    await expect.poll(() => pushed.length).toBe(before + 2);
    const got = await pushedSince(before);
    expect([...got.keys()].sort()).toEqual(['gw-1', 'gw-2']);
    for (const cfg of got.values()) {
      expect(cfg.version).toBe(2n);
      expect(cfg.retention).toMatchObject({ edgeMediaMaxHours: 24, eventDays: 30 });
      expect(cfg.cameras.map((c) => c.id)).toEqual(['lobby']); // the same body otherwise
    }
    const db = api.cloud().db;
    const rows = await db
      .selectFrom('device_configs')
      .select(['device_id', 'issued_by', 'kind', 'requested_retention'])
      .where('tenant_id', '=', 'acme')
      .where('version', '=', '2')
      .orderBy('device_id')
      .execute();
    expect(rows).toEqual([
      {
        device_id: 'gw-1',
        issued_by: 'system:retention',
        kind: 'direct',
        requested_retention: { edgeMediaMaxHours: 100, eventDays: 30 },
      },
      {
        device_id: 'gw-2',
        issued_by: 'system:retention',
        kind: 'direct',
        requested_retention: { edgeMediaMaxHours: 100, eventDays: 30 },
      },
    ]);
    const audit = await db
      .selectFrom('audit_log')
      .select(['action', 'actor', 'actor_kind', 'detail'])
      .where('tenant_id', '=', 'acme')
      .where('actor', '=', 'system:retention')
      .orderBy('seq')
      .execute();
    expect(audit.map((a) => a.action)).toEqual(['config.issue', 'retention.edge_sync']);
    expect(audit[0]).toMatchObject({
      actor_kind: 'system',
      detail: { devices: 2, reason: 'retention_policy_change' },
    });
    expect(audit[1]?.detail).toMatchObject({ devices_checked: 4, devices_reissued: 2, devices_failed: 0 });
    // What a rollback or an agent rollout would issue again is the body as asked for (re-capped when issued),
    // not the capped one: a later loosening is not frozen into the device's known good config.
    const configs = api.cloud().configs;
    await configs.recordStatus(
      'acme',
      'gw-1',
      ConfigStatus.fromPartial({
        tenantId: 'acme',
        deviceId: 'gw-1',
        version: 2n,
        appliedVersion: 2n,
        state: ConfigState.CONFIG_STATE_APPLIED,
        health: DeviceHealth.DEVICE_HEALTH_OK,
        reportedAt: new Date(),
      }),
    );
    const known = await configs.knownConfigs('acme', ['gw-1']);
    expect(known.good.get('gw-1')).toMatchObject({
      version: 2n,
      body: { retention: { edgeMediaMaxHours: 100, eventDays: 30 } },
    });
    expect(known.applied.get('gw-1')?.body.retention).toEqual({ edgeMediaMaxHours: 100, eventDays: 30 });
  });

  it('loosening past the asked-for limit gives back the asked-for one; deleting it changes nothing more', async () => {
    const before = pushed.length;
    expect(
      (
        await call('POST', '/v1/retention/policies', {
          scope: 'site',
          site_id: 'hq',
          data_class: 'personal_media',
          max_age_hours: 500,
        })
      ).status,
    ).toBe(200);
    expect(await waitDone(2)).toMatchObject({ devices_reissued: 2 });
    await expect.poll(() => pushed.length).toBe(before + 2);
    for (const cfg of (await pushedSince(before)).values())
      expect(cfg.retention?.edgeMediaMaxHours).toBe(100);
    expect(await versions()).toEqual({ 'gw-1': 3, 'gw-2': 3, 'gw-3': 1 });

    const del = await call('POST', '/v1/retention/policies/delete', {
      scope: 'site',
      site_id: 'hq',
      data_class: 'personal_media',
    });
    expect(del.status).toBe(200);
    expect(await waitDone(3)).toMatchObject({ devices_checked: 4, devices_reissued: 0 });
    expect(await versions()).toEqual({ 'gw-1': 3, 'gw-2': 3, 'gw-3': 1 });
    // An event-metadata policy does not touch the devices' media limits: no pass at all.
    expect(
      (
        await call('POST', '/v1/retention/policies', {
          scope: 'tenant',
          data_class: 'event_metadata',
          max_age_hours: 48,
        })
      ).status,
    ).toBe(200);
    expect(Number((await sync())!.generation)).toBe(3);
  });

  it('bounded and resumable: batch by batch with counts; a change mid-pass restarts it; holds and erasures untouched', async () => {
    const { db, audit } = api.cloud();
    // An active hold on gw-1 and an erasure of gw-2's camera, one batch in (running, cursor set).
    const now = Date.now();
    await seedObjects(
      db,
      storeDir,
      [0, 1, 2, 3].map((i) => ({
        tenant: 'acme',
        site: 'hq',
        device: i < 2 ? 'gw-1' : 'gw-2',
        camera: 'lobby',
        track: `t${i}`,
        at: new Date(now - (i + 1) * 60_000),
      })),
    );
    const hold = await call('POST', '/v1/holds', { kind: 'device', device_id: 'gw-1', reason: 'case 12' });
    expect(hold.body.state).toBe('active');
    const erasure = await new ErasureStore(db, audit, () => new Date()).create(
      'acme',
      {
        kind: 'camera',
        device_id: 'gw-2',
        camera_id: 'lobby',
        from: new Date(now - H).toISOString(),
        to: new Date(now).toISOString(),
      },
      'DSR-7',
      'alice@acme',
    );
    const eraser = new ErasureJob({
      db,
      store: new FsMediaStore(storeDir),
      audit,
      log: silent,
      metrics: new Registry(),
      batchSize: 1,
      pollIntervalMs: 3_600_000,
    });
    expect((await eraser.runBatch(erasure.id)).more).toBe(true);
    const snapshot = async () => ({
      hold: await db.selectFrom('legal_holds').selectAll().where('tenant_id', '=', 'acme').execute(),
      erasure: await db.selectFrom('erasure_requests').selectAll().where('id', '=', erasure.id).execute(),
      media: await db
        .selectFrom('media')
        .select(['media_id', 'deleted_at', 'storage_key'])
        .where('tenant_id', '=', 'acme')
        .orderBy('media_id')
        .execute(),
    });
    const before = await snapshot();
    expect(before.erasure[0]).toMatchObject({ state: 'running', media_erased: 1 });

    // The policy changes without the API's nudge; a runner of our own drives the pass, 1 device per batch.
    const policies = new RetentionPolicies(db, audit);
    const key = {
      scope: 'tenant' as const,
      siteId: '',
      deviceId: '',
      cameraId: '',
      dataClass: 'redacted_media' as const,
    };
    await policies.set('acme', key, { maxAgeHours: 12, maxBytes: null }, { actor: 'bob', actorKind: 'user' });
    const job = new EdgeRetentionSync({
      db,
      issuer: api.cloud().configs,
      audit,
      log: silent,
      metrics: new Registry(),
      defaults: { event_metadata: null, redacted_media: 720, personal_media: 720 },
      batchSize: 1,
      pollIntervalMs: 3_600_000,
    });
    expect(await job.runBatch('acme')).toEqual({ checked: 1, reissued: 1, failed: 0, more: true });
    expect(await sync()).toMatchObject({ state: 'running', cursor_device: 'gw-1', devices_checked: 1 });
    // Another change before the pass ends: the pass restarts from the first device, with the newest policy.
    await policies.set('acme', key, { maxAgeHours: 6, maxBytes: null }, { actor: 'bob', actorKind: 'user' });
    expect(await sync()).toMatchObject({ state: 'pending', cursor_device: null, devices_checked: 0 });
    const results = [];
    for (let i = 0; i < 10; i++) {
      const r = await job.runBatch('acme');
      results.push(r);
      if (!r.more) break;
    }
    // 4 devices, one per batch, then the end; gw-4 has no config to re-issue.
    expect(results.map((r) => r.reissued)).toEqual([1, 1, 1, 0, 0]);
    expect(await sync()).toMatchObject({
      state: 'done',
      devices_checked: 4,
      devices_reissued: 3,
      batches: 4,
    });
    expect(await versions()).toEqual({ 'gw-1': 5, 'gw-2': 4, 'gw-3': 2 });
    const last = await db
      .selectFrom('device_configs')
      .select(['device_id', 'body'])
      .distinctOn('device_id')
      .where('tenant_id', '=', 'acme')
      .orderBy('device_id')
      .orderBy('version', 'desc')
      .execute();
    for (const r of last)
      expect((r.body as { retention: { edgeMediaMaxHours: number } }).retention.edgeMediaMaxHours).toBe(6);
    // Nothing of the hold, the erasure or the media changed.
    expect(await snapshot()).toEqual(before);
  });
});
