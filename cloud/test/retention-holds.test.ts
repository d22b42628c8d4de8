// Legal holds under the two-admin rule, against the real cloud (PostgreSQL, API, Cedar, the retention job), the
// hold model's pure check (privacy/holds.ts, what erasure calls) and policy resolution, and retention limits
// pushed to the edge in the signed DeviceConfig.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeviceConfig } from '@vigil/proto';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDevConfigSigningKey, mintDevToken } from '../src/index.js';
import { applyEdgeLimits, edgeLimitsFor } from '../src/privacy/edge.js';
import { heldScopes, holdFor, isHeld, type HeldScope } from '../src/privacy/holds.js';
import { resolvePolicy, type RetentionPolicy } from '../src/privacy/policies.js';
import { EventStore } from '../src/events/store.js';
import { PartitionJob } from '../src/events/partitions.js';
import { partitionKeepsEvents, RetentionJob } from '../src/privacy/retention-job.js';
import { AUDIENCE, ISSUER, useApiCloud } from './api-fixtures.js';
import { liveEvents, seedEvent } from './support/retention-seed.js';

const H = 3_600_000;

describe('pure: hold coverage and policy resolution', () => {
  const at = new Date('2026-12-01T10:00:00Z');
  const item = { eventId: 'E1', deviceId: 'gw-1', cameraId: 'lobby', trackId: 't9', at };
  const scopes: HeldScope[] = [
    { id: 'a', kind: 'event', eventId: 'e1' },
    { id: 'b', kind: 'track', deviceId: 'gw-1', cameraId: 'lobby', trackId: 't9' },
    {
      id: 'c',
      kind: 'camera_range',
      deviceId: 'gw-1',
      cameraId: 'door',
      from: at,
      to: new Date(at.getTime() + 1),
    },
    { id: 'd', kind: 'device', deviceId: 'gw-2' },
  ];
  it('each kind covers exactly what it names', () => {
    expect(holdFor(scopes, item)?.id).toBe('a'); // event ids compare case-insensitively (uuid spelling)
    expect(holdFor(scopes.slice(1), item)?.id).toBe('b');
    expect(isHeld(scopes.slice(1), { ...item, trackId: 't8' })).toBe(false);
    expect(isHeld(scopes.slice(1), { ...item, trackId: undefined })).toBe(false);
    expect(holdFor(scopes, { ...item, eventId: 'x', cameraId: 'door' })?.id).toBe('c');
    // [from, to): the end is outside.
    expect(isHeld(scopes, { ...item, eventId: 'x', cameraId: 'door', at: new Date(at.getTime() + 1) })).toBe(
      false,
    );
    expect(holdFor(scopes, { ...item, eventId: 'x', deviceId: 'gw-2' })?.id).toBe('d');
  });

  it('age and size resolve separately from the most specific scope that sets them', () => {
    const p = (over: Partial<RetentionPolicy>): RetentionPolicy => ({
      scope: 'tenant',
      siteId: '',
      deviceId: '',
      cameraId: '',
      dataClass: 'redacted_media',
      maxAgeHours: null,
      maxBytes: null,
      updatedBy: 'x',
      updatedAt: at,
      ...over,
    });
    const policies = [
      p({ maxAgeHours: 720, maxBytes: 10_000_000 }),
      p({ scope: 'site', siteId: 'hq', maxAgeHours: 72 }),
      p({ scope: 'camera', deviceId: 'gw-1', cameraId: 'lobby', maxAgeHours: 2000 }),
      p({ scope: 'camera', deviceId: 'gw-1', cameraId: 'door', maxBytes: 500_000 }),
    ];
    const defaults = { event_metadata: 8760, redacted_media: 720, personal_media: 720 };
    const at_ = (siteId: string, cameraId: string) =>
      resolvePolicy(policies, 'redacted_media', { siteId, deviceId: 'gw-1', cameraId }, defaults);
    expect(at_('hq', 'lobby')).toEqual({
      maxAgeHours: 2000,
      ageScope: 'camera',
      maxBytes: 10_000_000,
      sizeScope: 'tenant',
    });
    expect(at_('hq', 'door')).toEqual({
      maxAgeHours: 72,
      ageScope: 'site',
      maxBytes: 500_000,
      sizeScope: 'camera',
    });
    expect(at_('yard', 'gate')).toEqual({
      maxAgeHours: 720,
      ageScope: 'tenant',
      maxBytes: 10_000_000,
      sizeScope: 'tenant',
    });
    expect(
      resolvePolicy([], 'personal_media', { siteId: 'hq', deviceId: 'd', cameraId: 'c' }, defaults),
    ).toEqual({
      maxAgeHours: 720,
      ageScope: 'default',
      maxBytes: null,
      sizeScope: null,
    });
    // Edge limits: the shortest media age of the device's cameras (within 1 h .. 90 d), the smallest budget.
    expect(edgeLimitsFor(policies, defaults, { siteId: 'hq', deviceId: 'gw-1' }, ['lobby', 'door'])).toEqual({
      maxHours: 72,
      maxBytes: 500_000,
    });
    expect(
      edgeLimitsFor([], { ...defaults, redacted_media: 24 * 365 }, { siteId: 's', deviceId: 'd' }, []),
    ).toEqual({
      maxHours: 720,
    });
    expect(
      applyEdgeLimits({ retention: { edgeMediaMaxHours: 12 } }, { maxHours: 72, maxBytes: 500_000 }),
    ).toEqual({
      retention: { edgeMediaMaxHours: 12, edgeMediaMaxBytes: 500_000 },
    });
  });
});

describe('legal holds: two-admin rule, retention, cross-tenant, edge limits in the signed config', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'vigil-holds-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const signingKey = ensureDevConfigSigningKey(join(tmp, 'keys'));
  let keys: { privateJwkFile: string } | undefined;
  beforeAll(async () => {
    keys = await signingKey;
  });
  const api = useApiCloud({
    get configSigning() {
      return { privateJwkFile: keys!.privateJwkFile };
    },
  });
  const now = new Date();
  let alice: string;
  let bob: string;
  let auditor: string;
  let globex: string;
  let job: RetentionJob;

  const tokenFor = (sub: string, tenant: string, roles: string[]) =>
    mintDevToken({ key: api.key(), issuer: ISSUER, audience: AUDIENCE, tenant, roles, sub, ttlSeconds: 600 });
  const call = async (method: string, path: string, token: string, body?: unknown) => {
    const res = await api.get(path, token, {
      method,
      ...(body === undefined
        ? {}
        : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  };
  const run = async () => {
    for (let i = 0; i < 50; i++) {
      const r = await job.runAsLeader();
      if (r.leader) return r;
      await new Promise((res) => setTimeout(res, 100));
    }
    throw new Error('never got the retention lock');
  };

  beforeAll(async () => {
    const { db, registry, audit } = api.cloud();
    await registry.registerDevice({ tenantId: 'acme', siteId: 'hq', deviceId: 'gw-1' });
    await registry.registerDevice({ tenantId: 'globex', siteId: 'plant', deviceId: 'gw-b' });
    alice = await tokenFor('alice@acme', 'acme', ['admin']);
    bob = await tokenFor('bob@acme', 'acme', ['admin']);
    auditor = await tokenFor('carol@acme', 'acme', ['auditor']);
    globex = await tokenFor('mallory@globex', 'globex', ['admin']);
    job = new RetentionJob({
      db,
      store: undefined,
      audit,
      log: pino({ level: 'silent' }),
      metrics: new Registry(),
      defaults: { event_metadata: 24, redacted_media: null, personal_media: null },
      intervalMs: 60_000,
      now: () => now,
    });
  });

  it('placement and release each wait for a second admin; only an approved hold keeps anything', async () => {
    const db = api.cloud().db;
    // The rule on: at once, by one admin.
    expect(await call('POST', '/v1/privacy/settings', alice, { holds_two_admin: true })).toMatchObject({
      status: 200,
      body: { holds_two_admin: true, two_admin_off_requested_by: null },
    });
    const old = await seedEvent(db, {
      tenant: 'acme',
      site: 'hq',
      device: 'gw-1',
      camera: 'lobby',
      at: new Date(now.getTime() - 48 * H),
    });
    const placed = await call('POST', '/v1/holds', alice, {
      kind: 'device',
      device_id: 'gw-1',
      reason: 'subpoena 7',
    });
    expect(placed).toMatchObject({
      status: 201,
      body: { state: 'place_pending', effective: false, placed_by: 'alice@acme' },
    });
    const id = placed.body.id as string;
    // The requester cannot approve; an auditor cannot approve (403); another tenant's admin sees nothing (404).
    expect(await call('POST', `/v1/holds/${id}/approve`, alice, {})).toMatchObject({
      status: 409,
      body: { type: 'urn:vigil:problem:hold-needs-another-admin' },
    });
    expect((await call('POST', `/v1/holds/${id}/approve`, auditor, {})).status).toBe(403);
    expect((await call('POST', `/v1/holds/${id}/approve`, globex, {})).status).toBe(404);
    expect((await call('GET', `/v1/holds/${id}`, globex)).status).toBe(404);
    expect((await heldScopes(db, 'acme')).map((h) => h.id)).toEqual([]);
    expect((await call('GET', '/v1/holds?state=pending', auditor)).body.items).toHaveLength(1);

    // Not approved yet: a pending hold keeps nothing.
    await run();
    expect(await liveEvents(db, 'acme', [old.id])).toEqual([]);

    expect(
      await call('POST', `/v1/holds/${id}/approve`, bob, { note: 'checked the subpoena' }),
    ).toMatchObject({
      status: 200,
      body: { state: 'active', effective: true, approved_by: 'bob@acme' },
    });
    expect((await heldScopes(db, 'acme')).map((h) => h.id)).toEqual([id]);
    const old2 = await seedEvent(db, {
      tenant: 'acme',
      site: 'hq',
      device: 'gw-1',
      camera: 'lobby',
      at: new Date(now.getTime() - 47 * H),
    });
    expect((await run()).held.event_metadata).toBe(1);
    expect(await liveEvents(db, 'acme', [old2.id])).toEqual([old2.id]);

    // Release requested: still holding until bob approves.
    expect(await call('POST', `/v1/holds/${id}/release`, alice, { reason: 'case settled' })).toMatchObject({
      status: 200,
      body: { state: 'release_pending', effective: true, release_requested_by: 'alice@acme' },
    });
    expect((await call('POST', `/v1/holds/${id}/release`, bob, { reason: 'again' })).status).toBe(409);
    await run();
    expect(await liveEvents(db, 'acme', [old2.id])).toEqual([old2.id]);
    expect((await call('POST', `/v1/holds/${id}/approve`, alice, {})).status).toBe(409);
    expect(await call('POST', `/v1/holds/${id}/approve`, bob, {})).toMatchObject({
      status: 200,
      body: { state: 'released', effective: false, released_by: 'bob@acme', release_reason: 'case settled' },
    });
    await run();
    expect(await liveEvents(db, 'acme', [old2.id])).toEqual([]);

    // Every step is on the audit log, in order.
    const audited = await db
      .selectFrom('audit_log')
      .select(['action', 'actor', 'outcome'])
      .where('tenant_id', '=', 'acme')
      .where('resource', '=', `legal_hold:acme/${id}`)
      .orderBy('seq')
      .execute();
    expect(audited.map((a) => `${a.action} ${a.actor}`)).toEqual([
      'legal_hold.place alice@acme',
      'legal_hold.approve bob@acme',
      'legal_hold.release alice@acme',
      'legal_hold.approve bob@acme',
    ]);
    // The auditor's attempt is recorded as denied.
    const denied = await db
      .selectFrom('audit_log')
      .select('action')
      .where('actor', '=', 'carol@acme')
      .where('outcome', '=', 'denied')
      .execute();
    expect(denied.map((d) => d.action)).toEqual(['legal_hold.write']);
  });

  it('turning the rule off takes two admins as well; a pending placement is withdrawn by a release', async () => {
    expect(await call('POST', '/v1/privacy/settings', alice, { holds_two_admin: false })).toMatchObject({
      body: { holds_two_admin: true, two_admin_off_requested_by: 'alice@acme' },
    });
    expect(await call('POST', '/v1/privacy/settings', alice, { holds_two_admin: false })).toMatchObject({
      body: { holds_two_admin: true },
    });
    const pending = await call('POST', '/v1/holds', alice, {
      kind: 'device',
      device_id: 'gw-1',
      reason: 'r',
    });
    expect(pending.body.state).toBe('place_pending');
    expect(
      await call('POST', `/v1/holds/${pending.body.id as string}/release`, alice, { reason: 'mistake' }),
    ).toMatchObject({
      body: { state: 'released' },
    });
    expect(await call('POST', '/v1/privacy/settings', bob, { holds_two_admin: false })).toMatchObject({
      body: { holds_two_admin: false, two_admin_off_requested_by: null },
    });
    // Off: a hold is active at once.
    const direct = await call('POST', '/v1/holds', alice, {
      kind: 'device',
      device_id: 'gw-1',
      reason: 'r2',
    });
    expect(direct.body.state).toBe('active');
    expect((await call('GET', '/v1/privacy/settings', globex)).body).toEqual({
      holds_two_admin: false,
      two_admin_off_requested_by: null,
    });
  });

  it('a day partition past events.retentionDays is kept while it holds a held event, dropped after release', async () => {
    const db = api.cloud().db;
    const at = new Date(now.getTime() - 400 * 24 * H);
    const day = at.toISOString().slice(0, 10);
    // gw-9: no device hold of the tests above covers it.
    const held = await seedEvent(db, { tenant: 'acme', site: 'hq', device: 'gw-9', camera: 'yard', at });
    const placed = await call('POST', '/v1/holds', alice, {
      kind: 'event',
      event_id: held.id,
      reason: 'appeal',
    });
    expect(placed.body.state).toBe('active');
    const defaults = { event_metadata: 365 * 24, redacted_media: null, personal_media: null };
    const metrics = new Registry();
    const partitions = new PartitionJob(new EventStore(db), pino({ level: 'silent' }), metrics, {
      retentionDays: 365,
      now: () => now,
      keepsEvents: (d, t) => partitionKeepsEvents(db, defaults, d, t),
    });
    const days = async () => new EventStore(db).partitionDays();
    await partitions.runOnce();
    expect(await days()).toContain(day);
    expect(await liveEvents(db, 'acme', [held.id])).toEqual([held.id]);
    expect(
      (await metrics.getSingleMetricAsString('vigil_cloud_partitions_drop_skipped_total')).trim(),
    ).toMatch(/ 1$/);
    await call('POST', `/v1/holds/${placed.body.id as string}/release`, alice, { reason: 'appeal decided' });
    await partitions.runOnce();
    expect(await days()).not.toContain(day);
  });

  it('the device config is signed with the edge media limits the policies ask for', async () => {
    const doc = {
      cameras: [
        { id: 'lobby', url: 'rtsp://10.0.0.5/a', modelName: 'm' },
        { id: 'door', url: 'rtsp://10.0.0.5/b', modelName: 'm' },
      ],
      models: [{ name: 'm', type: 'yolox', sha256: 'ab'.repeat(32) }],
      retention: { edgeMediaMaxHours: 100 },
    };
    expect((await call('PUT', '/v1/configs/device/gw-1', alice, doc)).status).toBe(200);
    const policy = (b: Record<string, unknown>) => call('POST', '/v1/retention/policies', alice, b);
    expect(
      (
        await policy({
          scope: 'camera',
          device_id: 'gw-1',
          camera_id: 'door',
          data_class: 'personal_media',
          max_age_hours: 36,
        })
      ).status,
    ).toBe(200);
    expect(
      (await policy({ scope: 'site', site_id: 'hq', data_class: 'redacted_media', max_bytes: 2_000_000 }))
        .status,
    ).toBe(200);
    expect((await call('POST', '/v1/devices/gw-1/config/issue', alice, {})).status).toBe(201);
    const row = await api
      .cloud()
      .db.selectFrom('device_configs')
      .select(['jws', 'body'])
      .where('tenant_id', '=', 'acme')
      .where('device_id', '=', 'gw-1')
      .orderBy('version', 'desc')
      .executeTakeFirstOrThrow();
    expect(decodeProtectedHeader(row.jws).alg).toBe('ES256');
    const payload = Buffer.from(row.jws.split('.')[1]!, 'base64url');
    const cfg = DeviceConfig.decode(payload);
    // 36 h (door's personal media) beats the document's 100 h; the site's budget caps the bytes.
    expect(cfg.retention).toMatchObject({ edgeMediaMaxHours: 36, edgeMediaMaxBytes: 2_000_000n });
    expect((row.body as { retention: unknown }).retention).toEqual({
      edgeMediaMaxHours: 36,
      edgeMediaMaxBytes: 2_000_000,
    });
    // decodeJwt would refuse a protobuf payload: the config is not a JWT (kept as a guard on the format).
    expect(() => decodeJwt(row.jws)).toThrow();
  });
});
