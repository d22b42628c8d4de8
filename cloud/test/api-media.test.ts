import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LegalHolds } from '../src/media/holds.js';
import { MediaRepository } from '../src/media/repository.js';
import { RETENTION_LOCK, RetentionJob } from '../src/privacy/retention-job.js';
import { FsMediaStore, mediaKeyFor } from '../src/media/store.js';
import { PROBLEM_JSON, useApiCloud, uuidV7 } from './api-fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'vigil-media-api-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Seeded {
  id: string;
  tenant: string;
  site: string;
  bytes: Buffer;
  sha256: string;
  key: string;
}

/** A media object as ingest stores it: the file in the store, the row in the index. */
async function seed(
  repo: MediaRepository,
  store: FsMediaStore,
  m: { tenant: string; site?: string; redacted: boolean; capturedAt?: Date },
): Promise<Seeded> {
  const capturedAt = m.capturedAt ?? new Date();
  const id = uuidV7(capturedAt.getTime());
  const bytes = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(2048)]);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const key = mediaKeyFor({ tenantId: m.tenant, mediaId: id, capturedAt, contentType: 'image/jpeg', sha256 });
  await store.put(key, bytes);
  const result = await repo.insert({
    tenantId: m.tenant,
    mediaId: id,
    siteId: m.site ?? 'hq',
    deviceId: 'gw-1',
    cameraId: 'lobby',
    eventId: uuidV7(capturedAt.getTime()),
    contentType: 'image/jpeg',
    sha256,
    sizeBytes: bytes.length,
    redacted: m.redacted,
    capturedAt,
    storedAt: new Date(),
    storageKey: key,
  });
  expect(result).toBe('inserted');
  return { id, tenant: m.tenant, site: m.site ?? 'hq', bytes, sha256, key };
}

describe('media API: GET /v1/media/:id, POST /v1/media/:id/erase', () => {
  const api = useApiCloud({ media: { dir } });
  const store = new FsMediaStore(dir);
  let repo: MediaRepository;
  let redacted: Seeded;
  let personal: Seeded;
  let otherSite: Seeded;
  let globexMedia: Seeded;
  let admin: string;
  let operator: string;
  let viewer: string;
  let auditor: string;
  let globexAdmin: string;

  beforeAll(async () => {
    repo = new MediaRepository(api.cloud().db);
    redacted = await seed(repo, store, { tenant: 'acme', redacted: true });
    personal = await seed(repo, store, { tenant: 'acme', redacted: false });
    otherSite = await seed(repo, store, { tenant: 'acme', site: 'warehouse', redacted: true });
    globexMedia = await seed(repo, store, { tenant: 'globex', redacted: true });
    admin = await api.token('acme', ['admin']);
    operator = await api.token('acme', ['operator']);
    viewer = await api.token('acme', ['viewer']);
    auditor = await api.token('acme', ['auditor']);
    globexAdmin = await api.token('globex', ['admin']);
  });

  // The retention job of the product (privacy/retention-job.ts) with the config defaults of a 30-day media
  // retention and no policy rows: what the media-only job used to do.
  const zero = {
    event_metadata: { age: 0, size: 0 },
    redacted_media: { age: 0, size: 0 },
    personal_media: { age: 0, size: 0 },
  };
  const retentionJob = (now: Date) =>
    new RetentionJob({
      db: api.cloud().db,
      store,
      audit: api.cloud().audit,
      log: pino({ level: 'silent' }),
      metrics: new Registry(),
      defaults: { event_metadata: null, redacted_media: 30 * 24, personal_media: 30 * 24 },
      intervalMs: 60_000,
      now: () => now,
      batchSize: 1, // several batches
    });

  const auditRows = (action: string, resource: string) =>
    api
      .cloud()
      .db.selectFrom('audit_log')
      .selectAll()
      .where('action', '=', action)
      .where('resource', '=', resource)
      .orderBy('seq')
      .execute();

  it('serves the bytes to an admin with their digest, and records the read on the audit log first', async () => {
    const res = await api.get(`/v1/media/${redacted.id}`, admin);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/jpeg');
    expect(res.headers.get('etag')).toBe(`"${redacted.sha256}"`);
    expect(res.headers.get('repr-digest')).toBe(
      `sha-256=:${Buffer.from(redacted.sha256, 'hex').toString('base64')}:`,
    );
    expect(res.headers.get('cache-control')).toContain('no-store');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(Buffer.from(await res.arrayBuffer()).equals(redacted.bytes)).toBe(true);
    const rows = await auditRows('media.read', `media:acme/${redacted.id}`);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      actor: 'user@acme',
      actor_kind: 'user',
      outcome: 'allowed',
      tenant_id: 'acme',
    });
    expect(rows[0]!.detail).toMatchObject({ sha256: redacted.sha256, camera: 'lobby', data_class: 'media' });
  });

  it('lets an operator see redacted snapshots but not unredacted ones (personal data: 404, audited as denied)', async () => {
    expect((await api.get(`/v1/media/${redacted.id}`, operator)).status).toBe(200);
    const res = await api.get(`/v1/media/${personal.id}`, operator);
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toMatch(PROBLEM_JSON);
    const denied = await auditRows('media.read', `media:acme/${personal.id}`);
    expect(denied.map((r) => r.outcome)).toEqual(['denied']);
    expect(denied[0]!.detail).toMatchObject({ data_class: 'personal' });
    // the admin may
    const ok = await api.get(`/v1/media/${personal.id}`, admin);
    expect(ok.status).toBe(200);
    expect(Buffer.from(await ok.arrayBuffer()).equals(personal.bytes)).toBe(true);
  });

  it('refuses roles without a media grant (403) before looking anything up', async () => {
    for (const token of [viewer, auditor]) {
      const res = await api.get(`/v1/media/${redacted.id}`, token);
      expect(res.status).toBe(403);
      expect(res.headers.get('content-type')).toMatch(PROBLEM_JSON);
    }
    expect((await api.get(`/v1/media/${redacted.id}`)).status).toBe(401);
  });

  it('answers another tenant’s id, another site’s object and a missing id alike (404, same body)', async () => {
    const missing = await api.get(`/v1/media/${uuidV7(Date.now())}`, admin);
    const cross = await api.get(`/v1/media/${globexMedia.id}`, admin);
    const scoped = await api.get(
      `/v1/media/${otherSite.id}`,
      await api.token('acme', ['operator'], { sites: ['hq'] }),
    );
    expect([missing.status, cross.status, scoped.status]).toEqual([404, 404, 404]);
    const body = async (r: Response) => {
      const j = (await r.json()) as Record<string, unknown>;
      delete j.instance;
      return j;
    };
    const m = await body(missing);
    expect(await body(cross)).toEqual(m);
    expect(await body(scoped)).toEqual(m);
    // globex's admin reads its own
    expect((await api.get(`/v1/media/${globexMedia.id}`, globexAdmin)).status).toBe(200);
    // and the site-scoped operator its site's
    const hq = await api.get(
      `/v1/media/${redacted.id}`,
      await api.token('acme', ['operator'], { sites: ['hq'] }),
    );
    expect(hq.status).toBe(200);
  });

  it('refuses a malformed id (400) and other methods (405)', async () => {
    expect((await api.get('/v1/media/not-a-uuid', admin)).status).toBe(400);
    expect((await api.get(`/v1/media/${redacted.id}`, admin, { method: 'DELETE' })).status).toBe(405);
  });

  it('does not serve the bytes when the read cannot be audited (503)', async () => {
    const db = api.cloud().db;
    await sql`create function vigil_test_fail_media_read() returns trigger language plpgsql as $$
      begin if new.action = 'media.read' then raise exception 'audit store down (test)'; end if; return new; end $$`.execute(
      db,
    );
    await sql`create trigger vigil_test_fail_media_read before insert on audit_log for each row execute function vigil_test_fail_media_read()`.execute(
      db,
    );
    try {
      const res = await api.get(`/v1/media/${redacted.id}`, admin);
      expect(res.status).toBe(503);
      expect(res.headers.get('content-type')).toMatch(PROBLEM_JSON);
      expect(res.headers.get('retry-after')).toBe('5');
      const text = await res.text();
      // the failed append is counted (the detail stays in the server log)
      const metrics = await (await fetch(`${api.base()}/metrics`)).text();
      expect(metrics).toMatch(/^vigil_cloud_audit_append_failures_total\S* [1-9]/m);
      expect(Buffer.from(text).includes(redacted.bytes.subarray(0, 64))).toBe(false);
    } finally {
      await sql`drop trigger vigil_test_fail_media_read on audit_log`.execute(db);
      await sql`drop function vigil_test_fail_media_read()`.execute(db);
    }
  });

  it('erases: admin only, reason required, bytes deleted, tombstone answers 410, audited; twice is already_deleted', async () => {
    const target = await seed(repo, store, { tenant: 'acme', redacted: true });
    const post = (token: string, body: unknown, key = randomBytes(8).toString('hex')) =>
      api.get(`/v1/media/${target.id}/erase`, token, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': key },
        body: JSON.stringify(body),
      });
    expect((await post(operator, { reason: 'x' })).status).toBe(403);
    expect((await post(globexAdmin, { reason: 'x' })).status).toBe(404);
    expect((await post(admin, {})).status).toBe(400);
    expect(existsSync(join(dir, target.key))).toBe(true);

    const res = await post(admin, { reason: 'data subject request #42' });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      media_id: target.id,
      result: 'erased',
      deleted_reason: 'erasure',
    });
    expect(existsSync(join(dir, target.key))).toBe(false);
    const row = await repo.get('acme', target.id);
    expect(row).toMatchObject({ deleted_reason: 'erasure', storage_key: null });

    const gone = await api.get(`/v1/media/${target.id}`, admin);
    expect(gone.status).toBe(410);
    expect(((await gone.json()) as { type: string }).type).toBe('urn:vigil:problem:media-gone');

    const again = await post(admin, { reason: 'again' });
    expect(await again.json()).toMatchObject({ result: 'already_deleted', deleted_reason: 'erasure' });

    const audit = await auditRows('media.erase', `media:acme/${target.id}`);
    expect(audit.map((r) => r.outcome)).toEqual(['denied', 'allowed']); // the operator's attempt, the erasure
    expect(audit[1]!.detail).toMatchObject({ reason: 'data subject request #42', sha256: target.sha256 });
    // and the chain still verifies
    expect((await api.cloud().audit.verify()).firstBroken).toBeUndefined();
  });

  it('retention tombstones and deletes media past retention, leaves the rest, one audit entry per tenant', async () => {
    const db = api.cloud().db;
    const now = new Date();
    const old = await seed(repo, store, {
      tenant: 'acme',
      redacted: true,
      capturedAt: new Date(now.getTime() - 40 * 86_400_000),
    });
    const oldGlobex = await seed(repo, store, {
      tenant: 'globex',
      redacted: true,
      capturedAt: new Date(now.getTime() - 31 * 86_400_000),
    });
    const fresh = await seed(repo, store, {
      tenant: 'acme',
      redacted: true,
      capturedAt: new Date(now.getTime() - 29 * 86_400_000),
    });
    const job = retentionJob(now);
    // Another process holding the leader lock: this one does nothing.
    const held = await db.connection().execute(async (conn) => {
      await sql`select pg_advisory_lock(${RETENTION_LOCK})`.execute(conn);
      try {
        return await job.runAsLeader();
      } finally {
        await sql`select pg_advisory_unlock(${RETENTION_LOCK})`.execute(conn);
      }
    });
    expect(held).toMatchObject({ leader: false, deleted: zero, storeErrors: 0, truncated: false });
    expect(existsSync(join(dir, old.key))).toBe(true);

    const run = await job.runAsLeader();
    expect(run).toMatchObject({
      leader: true,
      deleted: { ...zero, redacted_media: { age: 2, size: 0 } },
      storeErrors: 0,
      truncated: false,
    });
    expect(existsSync(join(dir, old.key))).toBe(false);
    expect(existsSync(join(dir, oldGlobex.key))).toBe(false);
    expect(readFileSync(join(dir, fresh.key)).equals(fresh.bytes)).toBe(true);
    expect(await repo.get('acme', old.id)).toMatchObject({ deleted_reason: 'retention', storage_key: null });
    expect(await repo.get('acme', fresh.id)).toMatchObject({ deleted_at: null });
    expect((await api.get(`/v1/media/${old.id}`, admin)).status).toBe(410);
    const entries = await db
      .selectFrom('audit_log')
      .selectAll()
      .where('action', '=', 'retention.apply')
      .orderBy('seq')
      .execute();
    type Detail = { deleted: { redacted_media: { age: number } } };
    expect(
      entries.map((e) => [e.tenant_id, e.actor, (e.detail as Detail).deleted.redacted_media.age]),
    ).toEqual([
      ['acme', 'system', 1],
      ['globex', 'system', 1],
    ]);
    // nothing left to do
    expect(await job.runAsLeader()).toMatchObject({ leader: true, deleted: zero, truncated: false });
  });

  it('legal hold: retention and erasure skip held media, then take it after release; place/release audited', async () => {
    const db = api.cloud().db;
    const now = new Date();
    const daysAgo = (d: number) => new Date(now.getTime() - d * 86_400_000);
    // 40 and 45 days old (past a 30-day retention), on camera lobby of gw-1; a hold covers [46d, 42d) ago.
    const inRange = await seed(repo, store, { tenant: 'acme', redacted: true, capturedAt: daysAgo(45) });
    const outside = await seed(repo, store, { tenant: 'acme', redacted: true, capturedAt: daysAgo(40) });
    const holds = new LegalHolds(db, api.cloud().audit);
    const by = { actor: 'user:legal@acme', actorKind: 'user' as const };
    await expect(holds.place('acme', { kind: 'device', deviceId: 'gw-1' }, '  ', by)).rejects.toMatchObject({
      code: 'HOLD_REASON_REQUIRED',
    });
    const holdId = await holds.place(
      'acme',
      { kind: 'camera_range', deviceId: 'gw-1', cameraId: 'lobby', from: daysAgo(46), to: daysAgo(42) },
      'litigation hold, case 2026-17',
      by,
    );
    const job = retentionJob(now);
    const first = await job.runAsLeader();
    expect(first.leader).toBe(true);
    expect(await repo.get('acme', outside.id)).toMatchObject({ deleted_reason: 'retention' });
    expect(await repo.get('acme', inRange.id)).toMatchObject({ deleted_at: null });
    expect(existsSync(join(dir, inRange.key))).toBe(true);

    // Erasure of the held object is refused (409) and the refusal is audited; the bytes stay.
    const erase = await api.get(`/v1/media/${inRange.id}/erase`, admin, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': randomBytes(8).toString('hex') },
      body: JSON.stringify({ reason: 'data subject request #43' }),
    });
    expect(erase.status).toBe(409);
    expect(((await erase.json()) as { type: string }).type).toBe('urn:vigil:problem:media-held');
    expect(existsSync(join(dir, inRange.key))).toBe(true);
    const denied = await auditRows('media.erase', `media:acme/${inRange.id}`);
    expect(denied.map((r) => [r.outcome, (r.detail as { denied?: string }).denied])).toEqual([
      ['denied', 'legal_hold'],
    ]);

    await expect(holds.release('acme', holdId, '', by)).rejects.toMatchObject({
      code: 'HOLD_REASON_REQUIRED',
    });
    await expect(holds.release('globex', holdId, 'x', by)).rejects.toMatchObject({ code: 'HOLD_NOT_FOUND' });
    await holds.release('acme', holdId, 'case closed', by);
    const second = await job.runAsLeader();
    expect(second.deleted.redacted_media.age).toBe(1);
    expect(await repo.get('acme', inRange.id)).toMatchObject({
      deleted_reason: 'retention',
      storage_key: null,
    });
    expect(existsSync(join(dir, inRange.key))).toBe(false);

    const placed = await auditRows('legal_hold.place', `legal_hold:acme/${holdId}`);
    const released = await auditRows('legal_hold.release', `legal_hold:acme/${holdId}`);
    expect(placed.map((r) => (r.detail as { reason: string }).reason)).toEqual([
      'litigation hold, case 2026-17',
    ]);
    expect(released.map((r) => (r.detail as { reason: string }).reason)).toEqual(['case closed']);
    expect((await api.cloud().audit.verify()).firstBroken).toBeUndefined();
  });
});
