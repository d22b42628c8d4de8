// Retention by policy against the real cloud: PostgreSQL, the filesystem MediaStore, the API. Policies per
// tenant, site and camera and data class, set through /v1/retention/policies; the retention job (the one the
// cloud runs) deletes by age and by size budget, oldest first; legal holds placed through /v1/holds keep what
// they cover until released; /v1/retention/check lists what is kept past its policy before (and nothing after)
// the job, what is held, and what goes next.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsMediaStore } from '../src/media/store.js';
import type { RetentionReport } from '../src/privacy/check.js';
import { defaultsFromConfig } from '../src/privacy/policies.js';
import { RetentionJob, type RetentionJobRun } from '../src/privacy/retention-job.js';
import { useApiCloud } from './api-fixtures.js';
import {
  liveEvents,
  liveMedia,
  seedEvent,
  seedMedia,
  type SeededEvent,
  type SeededMedia,
} from './support/retention-seed.js';

const dir = mkdtempSync(join(tmpdir(), 'vigil-retention-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const H = 3_600_000;

describe('retention policies applied by the job (age, size, holds) and retention check', () => {
  const api = useApiCloud({ media: { dir } });
  const store = new FsMediaStore(dir);
  const now = new Date();
  const ago = (hours: number): Date => new Date(now.getTime() - hours * H);
  let admin: string;
  let globexAdmin: string;
  let job: RetentionJob;
  const ev: Record<string, SeededEvent> = {};
  const md: Record<string, SeededMedia> = {};

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
  const check = async (): Promise<RetentionReport> => {
    const r = await call('GET', '/v1/retention/check?limit=50', admin);
    expect(r.status).toBe(200);
    return r.body as unknown as RetentionReport;
  };
  /** Runs the job as the leader (the cloud's own job may hold the lock for a moment at start). */
  const run = async (): Promise<RetentionJobRun> => {
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
    await registry.registerDevice({ tenantId: 'acme', siteId: 'yard', deviceId: 'gw-2' });
    await registry.registerDevice({ tenantId: 'globex', siteId: 'plant', deviceId: 'gw-b' });
    admin = await api.token('acme', ['admin']);
    globexAdmin = await api.token('globex', ['admin']);
    job = new RetentionJob({
      db,
      store,
      audit,
      log: pino({ level: 'silent' }),
      metrics: new Registry(),
      // The cloud's config defaults: events 365 days, media 30 days.
      defaults: defaultsFromConfig({ events: { retentionDays: 365 }, media: { retentionDays: 30 } }),
      intervalMs: 60_000,
      now: () => now,
      batchSize: 2, // several batches per pass
    });
    const e = (tenant: string, site: string, device: string, camera: string, h: number, track?: string) =>
      seedEvent(db, { tenant, site, device, camera, at: ago(h), ...(track ? { track } : {}) });
    // Camera gw-1/lobby: 24 h for event metadata (camera policy).
    ev.lobby10h = await e('acme', 'hq', 'gw-1', 'lobby', 10);
    ev.lobby30h = await e('acme', 'hq', 'gw-1', 'lobby', 30);
    ev.lobby50h = await e('acme', 'hq', 'gw-1', 'lobby', 50, 'trk-7'); // held by a track hold
    ev.lobby60h = await e('acme', 'hq', 'gw-1', 'lobby', 60, 'trk-7'); // same track: held too
    // Site hq (other cameras): 5 days (site policy).
    ev.door3d = await e('acme', 'hq', 'gw-1', 'door', 72);
    ev.door10d = await e('acme', 'hq', 'gw-1', 'door', 240); // held by an event hold
    ev.door11d = await e('acme', 'hq', 'gw-1', 'door', 264);
    // Site yard: the tenant policy, 30 days.
    ev.gate20d = await e('acme', 'yard', 'gw-2', 'gate', 480);
    ev.gate40d = await e('acme', 'yard', 'gw-2', 'gate', 960);
    // Another tenant, no policies: the defaults (365 days) keep all of it.
    ev.globex50h = await e('globex', 'plant', 'gw-b', 'lobby', 50);
    ev.globex40d = await e('globex', 'plant', 'gw-b', 'gate', 960);

    // Redacted media of gw-1/lobby under a 3,000-byte camera budget: 5 objects of 1,000 bytes, 1 to 5 h old.
    const m = (tenant: string, site: string, device: string, camera: string, h: number, redacted = true) =>
      seedMedia(db, store, { tenant, site, device, camera, redacted, at: ago(h), bytes: 1000 });
    for (const h of [1, 2, 3, 4, 5]) md[`lobby${h}h`] = await m('acme', 'hq', 'gw-1', 'lobby', h);
    // Personal (unredacted) media of the tenant: 48 h (tenant policy), at both sites.
    md.personal24h = await m('acme', 'hq', 'gw-1', 'lobby', 24, false);
    md.personal72h = await m('acme', 'hq', 'gw-1', 'lobby', 72, false);
    md.personalGate72h = await m('acme', 'yard', 'gw-2', 'gate', 72, false);
    md.globexPersonal72h = await m('globex', 'plant', 'gw-b', 'lobby', 72, false);
  });

  it('policies are set per scope and class through the API (audited), refused when malformed', async () => {
    const set = (body: Record<string, unknown>) => call('POST', '/v1/retention/policies', admin, body);
    const ok = [
      {
        scope: 'camera',
        device_id: 'gw-1',
        camera_id: 'lobby',
        data_class: 'event_metadata',
        max_age_hours: 24,
      },
      { scope: 'site', site_id: 'hq', data_class: 'event_metadata', max_age_days: 5 },
      { scope: 'tenant', data_class: 'event_metadata', max_age_days: 30 },
      {
        scope: 'camera',
        device_id: 'gw-1',
        camera_id: 'lobby',
        data_class: 'redacted_media',
        max_bytes: 3000,
      },
      { scope: 'tenant', data_class: 'personal_media', max_age_hours: 48 },
    ];
    for (const body of ok) expect((await set(body)).status, JSON.stringify(body)).toBe(200);
    const refused: Array<[Record<string, unknown>, number, string]> = [
      [{ scope: 'site', data_class: 'event_metadata', max_age_days: 1 }, 400, 'site_id'],
      [{ scope: 'tenant', site_id: 'hq', data_class: 'event_metadata', max_age_days: 1 }, 400, 'site_id'],
      [{ scope: 'tenant', data_class: 'audit', max_age_days: 1 }, 400, 'data_class'],
      [{ scope: 'tenant', data_class: 'event_metadata' }, 400, 'max_bytes'],
      [
        { scope: 'tenant', data_class: 'event_metadata', max_age_days: 1, max_age_hours: 2 },
        400,
        'max_age_days',
      ],
      [{ scope: 'tenant', data_class: 'event_metadata', max_age_days: 0 }, 400, 'max_age_days'],
      // Another tenant's site and device are 404, like missing ones.
      [{ scope: 'site', site_id: 'plant', data_class: 'event_metadata', max_age_days: 1 }, 404, ''],
      [
        {
          scope: 'camera',
          device_id: 'gw-b',
          camera_id: 'lobby',
          data_class: 'event_metadata',
          max_age_days: 1,
        },
        404,
        '',
      ],
    ];
    for (const [body, status, field] of refused) {
      const r = await set(body);
      expect(r.status, JSON.stringify(body)).toBe(status);
      if (field)
        expect(
          (r.body.errors as Array<{ path: string }>).map((x) => x.path),
          JSON.stringify(body),
        ).toContain(field);
    }
    const list = await call('GET', '/v1/retention/policies', admin);
    expect((list.body.items as unknown[]).length).toBe(5);
    expect(list.body.defaults).toEqual({
      event_metadata: { max_age_hours: 365 * 24 },
      redacted_media: { max_age_hours: 30 * 24 },
      personal_media: { max_age_hours: 30 * 24 },
    });
    // The other tenant sees none of them, and its own set does not touch acme's.
    expect((await call('GET', '/v1/retention/policies', globexAdmin)).body.items).toEqual([]);
    const audited = await api
      .cloud()
      .db.selectFrom('audit_log')
      .select('action')
      .where('tenant_id', '=', 'acme')
      .where('action', '=', 'retention_policy.set')
      .execute();
    expect(audited).toHaveLength(5);
  });

  it('holds on a track, an event and a camera range are placed through the API (audited)', async () => {
    const place = (body: Record<string, unknown>) => call('POST', '/v1/holds', admin, body);
    const track = await place({
      kind: 'track',
      device_id: 'gw-1',
      camera_id: 'lobby',
      track_id: 'trk-7',
      reason: 'incident 2026-118',
    });
    expect(track).toMatchObject({ status: 201, body: { state: 'active', effective: true } });
    const event = await place({ kind: 'event', event_id: ev.door10d!.id, reason: 'police request 55' });
    expect(event.status).toBe(201);
    const range = await place({
      kind: 'camera_range',
      device_id: 'gw-1',
      camera_id: 'lobby',
      from: ago(5.5).toISOString(),
      to: ago(4.5).toISOString(),
      reason: 'insurance claim',
    });
    expect(range.status).toBe(201);
    // Another tenant's event or device cannot be held from here (404 like a missing one).
    expect((await place({ kind: 'event', event_id: ev.globex50h!.id, reason: 'x' })).status).toBe(404);
    expect((await place({ kind: 'device', device_id: 'gw-b', reason: 'x' })).status).toBe(404);
    expect((await place({ kind: 'device', device_id: 'gw-1', reason: '  ' })).status).toBe(400);
    const list = await call('GET', '/v1/holds', admin);
    expect((list.body.items as unknown[]).length).toBe(3);
    expect((await call('GET', '/v1/holds', globexAdmin)).body.items).toEqual([]);
  });

  it('before the job: retention check lists what is kept past its policy, and what is held', async () => {
    const r = await check();
    const cls = (c: string) => r.classes.find((x) => x.data_class === c)!;
    const ids = (xs: Array<{ id: string }>) => xs.map((x) => x.id).sort();
    // Past age and not held: lobby 30 h (camera 24 h), door 11 d (site 5 d), gate 40 d (tenant 30 d).
    expect(ids(cls('event_metadata').kept_past_policy)).toEqual(
      [ev.lobby30h!.id, ev.door11d!.id, ev.gate40d!.id].sort(),
    );
    expect(ids(cls('event_metadata').held)).toEqual(
      [ev.lobby50h!.id, ev.lobby60h!.id, ev.door10d!.id].sort(),
    );
    // Over the lobby budget: 4 h old (the 5 h one is held by the camera range; both count toward the budget).
    expect(ids(cls('redacted_media').kept_past_policy)).toEqual([md.lobby4h!.id]);
    expect(ids(cls('redacted_media').held)).toEqual([md.lobby5h!.id]);
    const budget = cls('redacted_media').size.find((s) => s.scope === 'camera')!;
    expect(budget).toMatchObject({
      device_id: 'gw-1',
      camera_id: 'lobby',
      max_bytes: 3000,
      items: 5,
      bytes: 5000,
    });
    expect(budget).toMatchObject({ over_budget: 1, held: 1 });
    expect(ids(cls('personal_media').kept_past_policy)).toEqual(
      [md.personal72h!.id, md.personalGate72h!.id].sort(),
    );
    expect(r.kept_past_policy).toBe(6);
    expect(r.held_past_policy).toBe(4);
    // Next deletions: what is past its policy first, then by due time (the 10 h lobby event at 24 h).
    const next = cls('event_metadata').next_deletions;
    expect(
      next
        .slice(0, 3)
        .map((x) => x.id)
        .sort(),
    ).toEqual([ev.lobby30h!.id, ev.door11d!.id, ev.gate40d!.id].sort());
    expect(next[3]).toMatchObject({ id: ev.lobby10h!.id, reason: 'age', scope: 'camera' });
    expect(Date.parse(next[3]!.due_at!)).toBe(ev.lobby10h!.at.getTime() + 24 * H);
    // Audit: fixed, with the reason.
    expect(r.audit).toMatchObject({ data_class: 'audit', policy: 'fixed' });
    expect(r.audit.why).toMatch(/hash chain/);
  });

  it('the job deletes by age and by size (oldest first), skips what is held, and check is then clean', async () => {
    const result = await run();
    expect(result.deleted).toEqual({
      event_metadata: { age: 3, size: 0 },
      redacted_media: { age: 0, size: 1 },
      personal_media: { age: 2, size: 0 },
    });
    expect(result.held).toEqual({ event_metadata: 3, redacted_media: 1, personal_media: 0 });
    expect(result.truncated).toBe(false);
    const db = api.cloud().db;
    expect(
      await liveEvents(
        db,
        'acme',
        Object.values(ev)
          .filter((e) => e.tenant === 'acme')
          .map((e) => e.id),
      ),
    ).toEqual(
      [ev.lobby10h, ev.lobby50h, ev.lobby60h, ev.door3d, ev.door10d, ev.gate20d].map((e) => e!.id).sort(),
    );
    expect(await liveEvents(db, 'globex', [ev.globex50h!.id, ev.globex40d!.id])).toHaveLength(2);
    // Media: tombstones, and the bytes are gone from the store; the rest (and the held one) stay.
    expect(
      await liveMedia(
        db,
        'acme',
        Object.values(md).map((m) => m.id),
      ),
    ).toEqual([md.lobby1h, md.lobby2h, md.lobby3h, md.lobby5h, md.personal24h].map((m) => m!.id).sort());
    for (const k of ['lobby4h', 'personal72h', 'personalGate72h'])
      expect(existsSync(join(dir, md[k]!.key)), k).toBe(false);
    for (const k of ['lobby1h', 'lobby5h', 'personal24h', 'globexPersonal72h'])
      expect(existsSync(join(dir, md[k]!.key)), k).toBe(true);
    const after = await check();
    expect(after.kept_past_policy).toBe(0);
    for (const c of after.classes) expect(c.kept_past_policy, c.data_class).toEqual([]);
    expect(after.held_past_policy).toBe(4);
    // A second run finds nothing more.
    const again = await run();
    expect(Object.values(again.deleted).every((c) => c.age === 0 && c.size === 0)).toBe(true);
    // One audit entry per tenant and run, with the counts.
    const entries = await db
      .selectFrom('audit_log')
      .select(['tenant_id', 'detail'])
      .where('action', '=', 'retention.apply')
      .execute();
    expect(entries.map((e) => e.tenant_id)).toEqual(['acme']);
  });

  it('after the holds are released, what they kept goes at the next run', async () => {
    const holds = (await call('GET', '/v1/holds', admin)).body.items as Array<{ id: string }>;
    for (const h of holds) {
      const r = await call('POST', `/v1/holds/${h.id}/release`, admin, { reason: 'case closed' });
      expect(r).toMatchObject({ status: 200, body: { state: 'released', effective: false } });
    }
    // Releasing twice is a conflict; the other tenant cannot see or release them.
    expect((await call('POST', `/v1/holds/${holds[0]!.id}/release`, admin, { reason: 'x' })).status).toBe(
      409,
    );
    expect(
      (await call('POST', `/v1/holds/${holds[0]!.id}/release`, globexAdmin, { reason: 'x' })).status,
    ).toBe(404);
    const result = await run();
    expect(result.deleted.event_metadata.age).toBe(3);
    expect(result.deleted.redacted_media.size).toBe(1);
    expect(result.held).toEqual({ event_metadata: 0, redacted_media: 0, personal_media: 0 });
    const db = api.cloud().db;
    expect(await liveEvents(db, 'acme', [ev.lobby50h!.id, ev.lobby60h!.id, ev.door10d!.id])).toEqual([]);
    expect(await liveMedia(db, 'acme', [md.lobby5h!.id])).toEqual([]);
    expect(existsSync(join(dir, md.lobby5h!.key))).toBe(false);
    const after = await check();
    expect(after).toMatchObject({ kept_past_policy: 0, held_past_policy: 0 });
    const budget = after.classes.find((c) => c.data_class === 'redacted_media')!.size[0]!;
    expect(budget).toMatchObject({ items: 3, bytes: 3000, over_budget: 0 });
    expect((await api.cloud().audit.verify()).firstBroken).toBeUndefined();
  });

  it('deleting a policy hands the scope back to the next one', async () => {
    const del = (body: Record<string, unknown>) => call('POST', '/v1/retention/policies/delete', admin, body);
    const key = { scope: 'camera', device_id: 'gw-1', camera_id: 'lobby', data_class: 'event_metadata' };
    expect((await del(key)).status).toBe(200);
    expect((await del(key)).status).toBe(404);
    const r = await check();
    const lobby = r.classes
      .find((c) => c.data_class === 'event_metadata')!
      .age.find((a) => a.scope === 'site' && a.site_id === 'hq')!;
    // The 10 h lobby event and the 3 d door event are under the site's 5 days now.
    expect(lobby).toMatchObject({ max_age_hours: 120, items: 2, overdue: 0 });
  });
});
